package fedstore

import (
	"context"
	"encoding/json"
	"fmt"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/persys-dev/compute/internal/federation/fedapi"
)

// Workload is a federated workload as stored: the member manifest (JSON,
// without the placement block), its placement, the federation revision
// (bumped on every change of either), the current decision, what was
// last sent, and the members that refused it.
type Workload struct {
	Name      string           `json:"name"`
	Manifest  json.RawMessage  `json:"manifest"`
	Placement fedapi.Placement `json:"placement"`
	Revision  int64            `json:"revision"`
	Decision  fedapi.Decision  `json:"decision"`
	// Sent is the decision the chosen member last accepted; equal to
	// Decision once the member has it.
	Sent     fedapi.Decision  `json:"sent"`
	Refusals []fedapi.Refusal `json:"refusals,omitempty"`
	// History lists every decision, oldest first.
	History []fedapi.Decision `json:"history,omitempty"`
	// Deleting: the user deleted it; it goes once the member has.
	Deleting bool `json:"deleting,omitempty"`
	// Stale lists members that may still hold a copy to delete.
	Stale []string `json:"stale,omitempty"`
}

func (s *Store) workloadKey(name string) string { return s.prefix + "/workloads/" + name }

// GetWorkload returns a workload and its mod revision (for PutWorkload).
func (s *Store) GetWorkload(ctx context.Context, name string) (Workload, int64, error) {
	resp, err := s.cli.Get(ctx, s.workloadKey(name))
	if err != nil {
		return Workload{}, 0, fmt.Errorf("fedstore: get workload %q: %w", name, err)
	}
	if len(resp.Kvs) == 0 {
		return Workload{}, 0, fmt.Errorf("workload %q: %w", name, ErrNotFound)
	}
	var w Workload
	if err := json.Unmarshal(resp.Kvs[0].Value, &w); err != nil {
		return Workload{}, 0, fmt.Errorf("fedstore: decode workload %q: %w", name, err)
	}
	return w, resp.Kvs[0].ModRevision, nil
}

// PutWorkload writes w if its key is still at expectRev (0: absent) and
// returns the new mod revision; ErrConflict when it moved.
func (s *Store) PutWorkload(ctx context.Context, w Workload, expectRev int64) (int64, error) {
	val, err := json.Marshal(w)
	if err != nil {
		return 0, fmt.Errorf("fedstore: encode workload %q: %w", w.Name, err)
	}
	k := s.workloadKey(w.Name)
	resp, err := s.cli.Txn(ctx).
		If(clientv3.Compare(clientv3.ModRevision(k), "=", expectRev)).
		Then(clientv3.OpPut(k, string(val))).
		Commit()
	if err != nil {
		return 0, fmt.Errorf("fedstore: put workload %q: %w", w.Name, err)
	}
	if !resp.Succeeded {
		return 0, fmt.Errorf("workload %q: %w", w.Name, ErrConflict)
	}
	return resp.Header.Revision, nil
}

// DeleteWorkload removes a workload if its key is still at expectRev.
func (s *Store) DeleteWorkload(ctx context.Context, name string, expectRev int64) error {
	k := s.workloadKey(name)
	resp, err := s.cli.Txn(ctx).
		If(clientv3.Compare(clientv3.ModRevision(k), "=", expectRev)).
		Then(clientv3.OpDelete(k)).
		Commit()
	if err != nil {
		return fmt.Errorf("fedstore: delete workload %q: %w", name, err)
	}
	if !resp.Succeeded {
		return fmt.Errorf("workload %q: %w", name, ErrConflict)
	}
	return nil
}

// ListWorkloads returns every workload with its mod revision, by name.
func (s *Store) ListWorkloads(ctx context.Context) ([]Workload, []int64, error) {
	resp, err := s.cli.Get(ctx, s.prefix+"/workloads/", clientv3.WithPrefix(), clientv3.WithSort(clientv3.SortByKey, clientv3.SortAscend))
	if err != nil {
		return nil, nil, fmt.Errorf("fedstore: list workloads: %w", err)
	}
	ws, revs := make([]Workload, 0, len(resp.Kvs)), make([]int64, 0, len(resp.Kvs))
	for _, kv := range resp.Kvs {
		var w Workload
		if err := json.Unmarshal(kv.Value, &w); err != nil {
			return nil, nil, fmt.Errorf("fedstore: decode workload %s: %w", kv.Key, err)
		}
		ws, revs = append(ws, w), append(revs, kv.ModRevision)
	}
	return ws, revs, nil
}
