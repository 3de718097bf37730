package store

import (
	"context"
	"fmt"

	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/protobuf/proto"

	persysv1 "github.com/persys-dev/compute/api/persys/v1"
)

// PutRetry records the retry engine's state of a workload, only while the
// workload key exists (a retry record never outlives its workload).
func (s *Store) PutRetry(ctx context.Context, r *persysv1.RetryState) error {
	if r == nil {
		return fmt.Errorf("store: retry: %w: nil", ErrInvalid)
	}
	if err := ValidateName("retry name", r.GetName()); err != nil {
		return err
	}
	val, err := proto.Marshal(r)
	if err != nil {
		return fmt.Errorf("store: encode retry %q: %w", r.GetName(), err)
	}
	wkey := s.workloadKey(r.GetName())
	resp, err := s.cli.Txn(ctx).
		If(clientv3.Compare(clientv3.Version(wkey), ">", 0)).
		Then(clientv3.OpPut(s.retryKey(r.GetName()), string(val))).
		Commit()
	if err != nil {
		return fmt.Errorf("store: put retry %q: %w", r.GetName(), err)
	}
	if !resp.Succeeded {
		return fmt.Errorf("store: put retry %q: workload: %w", r.GetName(), ErrNotFound)
	}
	return nil
}

// DeleteRetry removes a workload's retry record; removing none succeeds.
func (s *Store) DeleteRetry(ctx context.Context, name string) error {
	if err := ValidateName("retry name", name); err != nil {
		return err
	}
	if _, err := s.cli.Delete(ctx, s.retryKey(name)); err != nil {
		return fmt.Errorf("store: delete retry %q: %w", name, err)
	}
	return nil
}

// GetRetry returns a workload's retry record, or ErrNotFound.
func (s *Store) GetRetry(ctx context.Context, name string) (*persysv1.RetryState, error) {
	if err := ValidateName("retry name", name); err != nil {
		return nil, err
	}
	r := &persysv1.RetryState{}
	if _, err := s.getProto(ctx, "retry of workload", name, s.retryKey(name), r); err != nil {
		return nil, err
	}
	return r, nil
}
