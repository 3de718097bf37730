package fedstore

import (
	"context"
	"encoding/json"
	"fmt"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/persys-dev/compute/internal/federation/fedapi"
)

// Service is a federated service as stored: the member manifest (JSON,
// without the placement block), its replicas and placement, the
// federation revision (bumped on every change of either), the current
// division of its replicas among members, which division each member
// last took, and every division made, oldest first.
type Service struct {
	Name      string                   `json:"name"`
	Manifest  json.RawMessage          `json:"manifest"`
	Replicas  int                      `json:"replicas"`
	Placement fedapi.Placement         `json:"placement"`
	Revision  int64                    `json:"revision"`
	Decision  fedapi.ServiceDecision   `json:"decision"`
	History   []fedapi.ServiceDecision `json:"history,omitempty"`
	// Sent maps a member to the decision (Seq) whose share it took; a
	// member listed here and given no share holds a copy to delete.
	Sent map[string]int64 `json:"sent,omitempty"`
	// Caps: members whose placement said no node fits part of their
	// share, with what they hold at most (offload); each holds for the
	// revision it names.
	Caps map[string]fedapi.ServiceCap `json:"caps,omitempty"`
	// Deleting: the user deleted it; it goes once every member has.
	Deleting bool `json:"deleting,omitempty"`
}

func (s *Store) serviceKey(name string) string { return s.prefix + "/services/" + name }

// GetService returns a service and its mod revision (for PutService).
func (s *Store) GetService(ctx context.Context, name string) (Service, int64, error) {
	resp, err := s.cli.Get(ctx, s.serviceKey(name))
	if err != nil {
		return Service{}, 0, fmt.Errorf("fedstore: get service %q: %w", name, err)
	}
	if len(resp.Kvs) == 0 {
		return Service{}, 0, fmt.Errorf("service %q: %w", name, ErrNotFound)
	}
	var v Service
	if err := json.Unmarshal(resp.Kvs[0].Value, &v); err != nil {
		return Service{}, 0, fmt.Errorf("fedstore: decode service %q: %w", name, err)
	}
	return v, resp.Kvs[0].ModRevision, nil
}

// PutService writes v if its key is still at expectRev (0: absent) and
// returns the new mod revision; ErrConflict when it moved.
func (s *Store) PutService(ctx context.Context, v Service, expectRev int64) (int64, error) {
	val, err := json.Marshal(v)
	if err != nil {
		return 0, fmt.Errorf("fedstore: encode service %q: %w", v.Name, err)
	}
	k := s.serviceKey(v.Name)
	resp, err := s.cli.Txn(ctx).
		If(clientv3.Compare(clientv3.ModRevision(k), "=", expectRev)).
		Then(clientv3.OpPut(k, string(val))).
		Commit()
	if err != nil {
		return 0, fmt.Errorf("fedstore: put service %q: %w", v.Name, err)
	}
	if !resp.Succeeded {
		return 0, fmt.Errorf("service %q: %w", v.Name, ErrConflict)
	}
	return resp.Header.Revision, nil
}

// DeleteService removes a service if its key is still at expectRev.
func (s *Store) DeleteService(ctx context.Context, name string, expectRev int64) error {
	k := s.serviceKey(name)
	resp, err := s.cli.Txn(ctx).
		If(clientv3.Compare(clientv3.ModRevision(k), "=", expectRev)).
		Then(clientv3.OpDelete(k)).
		Commit()
	if err != nil {
		return fmt.Errorf("fedstore: delete service %q: %w", name, err)
	}
	if !resp.Succeeded {
		return fmt.Errorf("service %q: %w", name, ErrConflict)
	}
	return nil
}

// ListServices returns every service with its mod revision, by name.
func (s *Store) ListServices(ctx context.Context) ([]Service, []int64, error) {
	resp, err := s.cli.Get(ctx, s.prefix+"/services/", clientv3.WithPrefix(), clientv3.WithSort(clientv3.SortByKey, clientv3.SortAscend))
	if err != nil {
		return nil, nil, fmt.Errorf("fedstore: list services: %w", err)
	}
	vs, revs := make([]Service, 0, len(resp.Kvs)), make([]int64, 0, len(resp.Kvs))
	for _, kv := range resp.Kvs {
		var v Service
		if err := json.Unmarshal(kv.Value, &v); err != nil {
			return nil, nil, fmt.Errorf("fedstore: decode service %s: %w", kv.Key, err)
		}
		vs, revs = append(vs, v), append(revs, kv.ModRevision)
	}
	return vs, revs, nil
}
