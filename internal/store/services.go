package store

// Services: desired state at services/<name>, the controller's observed
// progress at serviceprogress/<name>, and the kept template revisions at
// servicerevisions/<name>/<number, 20 digits>.

import (
	"context"
	"fmt"
	"slices"
	"strings"

	persysv1 "github.com/persys-dev/compute/api/persys/v1"
	"go.etcd.io/etcd/api/v3/mvccpb"
	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/protobuf/proto"
)

const (
	dirServices         = "services/"
	dirServiceProgress  = "serviceprogress/"
	dirServiceRevisions = "servicerevisions/"
)

func (s *Store) serviceKey(name string) string         { return s.dir(dirServices) + name }
func (s *Store) serviceProgressKey(name string) string { return s.dir(dirServiceProgress) + name }
func (s *Store) serviceRevisionsDir(name string) string {
	return s.dir(dirServiceRevisions) + name + "/"
}
func (s *Store) serviceRevisionKey(name string, n uint64) string {
	return fmt.Sprintf("%s%020d", s.serviceRevisionsDir(name), n)
}

func validateService(svc *persysv1.Service) error {
	if svc == nil {
		return fmt.Errorf("store: service: %w: nil", ErrInvalid)
	}
	if err := ValidateName("service name", svc.GetName()); err != nil {
		return err
	}
	if svc.GetUid() == "" {
		return fmt.Errorf("store: service %q uid: %w: empty", svc.GetName(), ErrInvalid)
	}
	return nil
}

// GetService returns the service and its mod revision.
func (s *Store) GetService(ctx context.Context, name string) (*persysv1.Service, int64, error) {
	if err := ValidateName("service name", name); err != nil {
		return nil, 0, err
	}
	svc := &persysv1.Service{}
	rev, err := s.getProto(ctx, "service", name, s.serviceKey(name), svc)
	if err != nil {
		return nil, 0, err
	}
	return svc, rev, nil
}

// CreateService stores a new service; ErrExists when one of that name is
// present.
func (s *Store) CreateService(ctx context.Context, svc *persysv1.Service) (int64, error) {
	if err := validateService(svc); err != nil {
		return 0, err
	}
	val, err := marshal("service", svc)
	if err != nil {
		return 0, err
	}
	key := s.serviceKey(svc.GetName())
	resp, err := s.cli.Txn(ctx).
		If(clientv3.Compare(clientv3.CreateRevision(key), "=", 0)).
		Then(clientv3.OpPut(key, val)).
		Commit()
	if err != nil {
		return 0, fmt.Errorf("store: create service %q: %w", svc.GetName(), err)
	}
	if !resp.Succeeded {
		return 0, fmt.Errorf("store: create service %q: %w", svc.GetName(), ErrExists)
	}
	return resp.Header.Revision, nil
}

// UpdateService replaces the service if its mod revision is still
// expectRev; ErrConflict if it changed, ErrNotFound if it is gone.
func (s *Store) UpdateService(ctx context.Context, svc *persysv1.Service, expectRev int64) (int64, error) {
	if err := validateService(svc); err != nil {
		return 0, err
	}
	if err := validateRev("expectRev", expectRev); err != nil {
		return 0, err
	}
	val, err := marshal("service", svc)
	if err != nil {
		return 0, err
	}
	key := s.serviceKey(svc.GetName())
	resp, err := s.cli.Txn(ctx).
		If(clientv3.Compare(clientv3.ModRevision(key), "=", expectRev)).
		Then(clientv3.OpPut(key, val)).
		Else(clientv3.OpGet(key, clientv3.WithKeysOnly())).
		Commit()
	if err != nil {
		return 0, fmt.Errorf("store: update service %q: %w", svc.GetName(), err)
	}
	if !resp.Succeeded {
		return 0, casFailure("update", "service", svc.GetName(), resp, expectRev)
	}
	return resp.Header.Revision, nil
}

// ListServices returns every service, sorted by name, and the revision
// of the read (to watch from).
func (s *Store) ListServices(ctx context.Context) ([]*persysv1.Service, int64, error) {
	var (
		out []*persysv1.Service
		rev int64
	)
	err := s.rangeAll(ctx, s.dir(dirServices), &rev, func(kv *mvccpb.KeyValue) {
		svc := &persysv1.Service{}
		if err := proto.Unmarshal(kv.Value, svc); err != nil {
			s.log.Warn("skipping undecodable service", "key", string(kv.Key), "err", err)
			return
		}
		out = append(out, svc)
	})
	if err != nil {
		return nil, 0, err
	}
	slices.SortFunc(out, func(a, b *persysv1.Service) int { return strings.Compare(a.GetName(), b.GetName()) })
	return out, rev, nil
}

// DeleteServiceKeys removes the service, its progress and its revisions
// in one transaction, if the service's mod revision is still expectRev.
func (s *Store) DeleteServiceKeys(ctx context.Context, name string, expectRev int64) error {
	if err := ValidateName("service name", name); err != nil {
		return err
	}
	if err := validateRev("expectRev", expectRev); err != nil {
		return err
	}
	key := s.serviceKey(name)
	resp, err := s.cli.Txn(ctx).
		If(clientv3.Compare(clientv3.ModRevision(key), "=", expectRev)).
		Then(
			clientv3.OpDelete(key),
			clientv3.OpDelete(s.serviceProgressKey(name)),
			clientv3.OpDelete(s.serviceRevisionsDir(name), clientv3.WithPrefix()),
		).
		Else(clientv3.OpGet(key, clientv3.WithKeysOnly())).
		Commit()
	if err != nil {
		return fmt.Errorf("store: delete service %q: %w", name, err)
	}
	if !resp.Succeeded {
		return casFailure("delete", "service", name, resp, expectRev)
	}
	return nil
}

// GetServiceProgress returns the service's progress; a NotFoundError
// before the controller first wrote it.
func (s *Store) GetServiceProgress(ctx context.Context, name string) (*persysv1.ServiceProgress, error) {
	if err := ValidateName("service name", name); err != nil {
		return nil, err
	}
	p := &persysv1.ServiceProgress{}
	if _, err := s.getProto(ctx, "progress of service", name, s.serviceProgressKey(name), p); err != nil {
		return nil, err
	}
	return p, nil
}

// ListServiceProgress returns the progress of every service the
// controller wrote one for, in key order.
func (s *Store) ListServiceProgress(ctx context.Context) ([]*persysv1.ServiceProgress, error) {
	var (
		out []*persysv1.ServiceProgress
		rev int64
	)
	err := s.rangeAll(ctx, s.dir(dirServiceProgress), &rev, func(kv *mvccpb.KeyValue) {
		p := &persysv1.ServiceProgress{}
		if err := proto.Unmarshal(kv.Value, p); err != nil {
			s.log.Warn("skipping undecodable service progress", "key", string(kv.Key), "err", err)
			return
		}
		out = append(out, p)
	})
	return out, err
}

// PutServiceProgress writes p while services/<p.Name> is the one created
// with uid p.Uid (ErrNotFound otherwise), as PutStatus does for workloads.
func (s *Store) PutServiceProgress(ctx context.Context, p *persysv1.ServiceProgress) error {
	if p == nil || p.GetUid() == "" {
		return fmt.Errorf("store: service progress: %w: nil or without uid", ErrInvalid)
	}
	if err := ValidateName("service name", p.GetName()); err != nil {
		return err
	}
	val, err := marshal("service progress", p)
	if err != nil {
		return err
	}
	// One read gives the uid and the create revision the write is
	// conditioned on (the controller writes progress on most steps).
	resp, err := s.cli.Get(ctx, s.serviceKey(p.GetName()))
	if err != nil {
		return fmt.Errorf("store: put progress of service %q: %w", p.GetName(), err)
	}
	if len(resp.Kvs) == 0 {
		return notFound("service", p.GetName())
	}
	svc := &persysv1.Service{}
	if err := proto.Unmarshal(resp.Kvs[0].Value, svc); err != nil {
		return fmt.Errorf("store: put progress of service %q: decode the service: %w", p.GetName(), err)
	}
	if svc.GetUid() != p.GetUid() {
		return fmt.Errorf("store: put progress of service %q: uid %q is not %q: %w", p.GetName(), svc.GetUid(), p.GetUid(), ErrNotFound)
	}
	tr, err := s.cli.Txn(ctx).
		If(clientv3.Compare(clientv3.CreateRevision(s.serviceKey(p.GetName())), "=", resp.Kvs[0].CreateRevision)).
		Then(clientv3.OpPut(s.serviceProgressKey(p.GetName()), val)).
		Commit()
	if err != nil {
		return fmt.Errorf("store: put progress of service %q: %w", p.GetName(), err)
	}
	if !tr.Succeeded {
		return fmt.Errorf("store: put progress of service %q: re-created meanwhile: %w", p.GetName(), ErrConflict)
	}
	return nil
}

// ListServiceRevisions returns the kept revisions of a service, oldest
// first.
func (s *Store) ListServiceRevisions(ctx context.Context, name string) ([]*persysv1.ServiceRevision, error) {
	if err := ValidateName("service name", name); err != nil {
		return nil, err
	}
	var (
		out []*persysv1.ServiceRevision
		rev int64
	)
	err := s.rangeAll(ctx, s.serviceRevisionsDir(name), &rev, func(kv *mvccpb.KeyValue) {
		r := &persysv1.ServiceRevision{}
		if err := proto.Unmarshal(kv.Value, r); err != nil {
			s.log.Warn("skipping undecodable service revision", "key", string(kv.Key), "err", err)
			return
		}
		out = append(out, r)
	})
	return out, err
}

// PutServiceRevision stores r and removes the oldest revisions beyond
// keep, except protect (the revisions a rollback may still need).
func (s *Store) PutServiceRevision(ctx context.Context, r *persysv1.ServiceRevision, keep int, protect ...uint64) error {
	if r == nil || r.GetNumber() == 0 {
		return fmt.Errorf("store: service revision: %w: nil or number 0", ErrInvalid)
	}
	if err := ValidateName("service name", r.GetService()); err != nil {
		return err
	}
	val, err := marshal("service revision", r)
	if err != nil {
		return err
	}
	if _, err := s.cli.Put(ctx, s.serviceRevisionKey(r.GetService(), r.GetNumber()), val); err != nil {
		return fmt.Errorf("store: put revision %d of service %q: %w", r.GetNumber(), r.GetService(), err)
	}
	all, err := s.ListServiceRevisions(ctx, r.GetService())
	if err != nil {
		return err
	}
	var ops []clientv3.Op
	for i := 0; i < len(all)-keep; i++ {
		if n := all[i].GetNumber(); !slices.Contains(protect, n) && n != r.GetNumber() {
			ops = append(ops, clientv3.OpDelete(s.serviceRevisionKey(r.GetService(), n)))
		}
	}
	if len(ops) > 0 {
		if _, err := s.cli.Txn(ctx).Then(ops...).Commit(); err != nil {
			return fmt.Errorf("store: prune revisions of service %q: %w", r.GetService(), err)
		}
	}
	return nil
}

// WatchServiceChanges sends the name of a service whenever its key
// changes, from revision rev on. (Its replicas' changes reach the service
// controller from the scheduler's cache, which it reads them from.) The
// channel closes when ctx ends or the watch fails; the caller lists again
// and watches anew.
func (s *Store) WatchServiceChanges(ctx context.Context, rev int64) <-chan string {
	out := make(chan string, watchBufferSize)
	wch := s.cli.Watch(clientv3.WithRequireLeader(ctx), s.dir(dirServices), clientv3.WithPrefix(), clientv3.WithRev(rev+1))
	go func() {
		defer close(out)
		for resp := range wch {
			if resp.Err() != nil {
				return
			}
			for _, ev := range resp.Events {
				select {
				case out <- strings.TrimPrefix(string(ev.Kv.Key), s.dir(dirServices)):
				case <-ctx.Done():
					return
				}
			}
		}
	}()
	return out
}

// ServiceOfReplica returns the service a replica name belongs to by its
// shape, <service>-<8 hex>-<digits>; "" when the name has another shape.
func ServiceOfReplica(name string) string {
	i := strings.LastIndexByte(name, '-')
	if i < 0 || !allIn(name[i+1:], "0123456789") {
		return ""
	}
	j := strings.LastIndexByte(name[:i], '-')
	if j <= 0 || i-j-1 != 8 || !allIn(name[j+1:i], "0123456789abcdef") {
		return ""
	}
	return name[:j]
}

func allIn(s, chars string) bool {
	if s == "" {
		return false
	}
	for _, r := range s {
		if !strings.ContainsRune(chars, r) {
			return false
		}
	}
	return true
}
