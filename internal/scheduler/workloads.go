package scheduler

import (
	"context"
	"errors"
	"fmt"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	persysv1 "github.com/persys-dev/compute/api/persys/v1"
	"github.com/persys-dev/compute/internal/failpoint"
	"github.com/persys-dev/compute/internal/hostaccess/specaccess"
	"github.com/persys-dev/compute/internal/model"
	"github.com/persys-dev/compute/internal/principal"
	"github.com/persys-dev/compute/internal/store"
)

// keepsDynamicPorts refuses a new spec for a placed workload that asks
// for another number of dynamic ports than its node gave it: the ports
// are chosen once, at placement, and an update is applied where the
// workload runs.
func (s *Scheduler) keepsDynamicPorts(name string, spec *persysv1.WorkloadSpec) error {
	r, ok := s.cache.Read(name)
	a := r.Assignment
	if !ok || a.GetNodeId() == "" {
		return nil
	}
	if have, want := len(a.GetDynamicHostPorts()), len(specaccess.DynamicPorts(spec)); have != want {
		return status.Errorf(codes.InvalidArgument, "spec.container.ports: the workload holds %d dynamic ports on node %s and the new spec asks for %d; "+
			"their number cannot change while it is placed (delete it and apply again)", have, a.GetNodeId(), want)
	}
	return nil
}

// applyWorkload creates the workload or, when its spec or labels changed,
// writes a new revision; an identical apply changes nothing.
func (s *Scheduler) applyWorkload(ctx context.Context, who principal.Principal, req *persysv1.ApplyRequest) (*persysv1.Workload, string, error) {
	name := req.GetName()
	if err := s.secrets.EnsureGenerated(ctx, who, name, req.GetSpec()); err != nil {
		return nil, "", err
	}
	now := timestamppb.New(s.cfg.Now())
	// create writes the workload if its key is absent (the transaction
	// compares that), so it needs no read first: ErrExists sends the
	// caller to the read-modify-write path.
	create := func() (*persysv1.Workload, error) {
		w := &persysv1.Workload{Name: name, Uid: newUID(), Labels: req.GetLabels(), Spec: req.GetSpec(),
			Revision: 1, CreatedAt: now, UpdatedAt: now, AppliedBy: who.Name, AppliedRole: string(who.Role),
			Owner: req.GetOwner()} // set only by the service controller
		newRev, err := s.createWorkload(ctx, w)
		if err != nil {
			return nil, err
		}
		failpoint.Inject(failpoint.SchedulerAfterWorkloadWrite)
		s.cacheWorkload(w, newRev)
		s.log.Info("workload created", "workload", name, "revision", 1, "by", principal.CN(ctx))
		s.events.Add(model.EventCreated, &persysv1.Event{Workload: name, Revision: 1, Message: "created by " + principal.CN(ctx)})
		return w, nil
	}
	if !s.cache.Has(name) {
		// Most likely new: skip the read.
		w, err := create()
		if err == nil {
			return w, "created", nil
		}
		if !errors.Is(err, store.ErrExists) {
			return nil, "", err
		}
	}
	for attempt := 0; attempt < 5; attempt++ {
		cur, rev, err := s.store.GetWorkload(ctx, name)
		switch {
		case errors.Is(err, store.ErrNotFound):
			w, err := create()
			if errors.Is(err, store.ErrExists) {
				continue
			}
			if err != nil {
				return nil, "", err
			}
			return w, "created", nil
		case err != nil:
			return nil, "", err
		}
		if cur.GetDeleting() {
			return nil, "", status.Errorf(codes.FailedPrecondition, "workload %q is being deleted; apply again once it is gone", name)
		}
		if err := s.keepsDynamicPorts(name, req.GetSpec()); err != nil {
			return nil, "", err
		}
		if proto.Equal(cur.GetSpec(), req.GetSpec()) && equalLabels(cur.GetLabels(), req.GetLabels()) {
			return cur, "unchanged", nil
		}
		next := proto.Clone(cur).(*persysv1.Workload)
		next.Labels, next.UpdatedAt = req.GetLabels(), now
		if !proto.Equal(cur.GetSpec(), req.GetSpec()) {
			next.Spec = req.GetSpec()
			next.Revision = cur.GetRevision() + 1
			next.AppliedBy, next.AppliedRole = who.Name, string(who.Role)
		}
		newRev, err := s.store.UpdateWorkload(ctx, next, rev)
		if errors.Is(err, store.ErrConflict) {
			continue
		}
		if err != nil {
			return nil, "", err
		}
		s.cacheWorkload(next, newRev)
		s.log.Info("workload updated", "workload", name, "revision", next.GetRevision(), "by", principal.CN(ctx))
		s.events.Add(model.EventUpdated, &persysv1.Event{Workload: name, Revision: next.GetRevision(),
			Message: fmt.Sprintf("revision %d by %s", next.GetRevision(), principal.CN(ctx))})
		return next, "updated", nil
	}
	return nil, "", fmt.Errorf("apply %q: %w: too many concurrent changes", name, store.ErrConflict)
}

// deleteWorkload marks the workload for deletion; the reconciler removes it
// from its node and then deletes its keys.
func (s *Scheduler) deleteWorkload(ctx context.Context, name string) error {
	for attempt := 0; attempt < 5; attempt++ {
		cur, rev, err := s.store.GetWorkload(ctx, name)
		if err != nil {
			return err
		}
		if cur.GetDeleting() {
			return nil
		}
		next := proto.Clone(cur).(*persysv1.Workload)
		next.Deleting = true
		next.UpdatedAt = timestamppb.New(s.cfg.Now())
		newRev, err := s.store.UpdateWorkload(ctx, next, rev)
		if errors.Is(err, store.ErrConflict) {
			continue
		}
		if err != nil {
			return err
		}
		s.cacheWorkload(next, newRev)
		s.log.Info("workload deleting", "workload", name, "by", principal.CN(ctx))
		s.events.Add(model.EventDeleteRequested, &persysv1.Event{Workload: name, Message: "delete requested by " + principal.CN(ctx)})
		return nil
	}
	return fmt.Errorf("delete %q: %w: too many concurrent changes", name, store.ErrConflict)
}

// cacheWorkload records our own write at once (the watch echo is ignored
// as not newer) and queues the workload, so nothing waits for the watch.
func (s *Scheduler) cacheWorkload(w *persysv1.Workload, rev int64) {
	if s.cache.WorkloadWritten(w, rev) {
		s.queue.Add(w.GetName())
	}
}

func equalLabels(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if bv, ok := b[k]; !ok || bv != v {
			return false
		}
	}
	return true
}

// viewOf is what describe shows of a workload (with its last events when
// withEvents and ctx is not nil); nil when there is none.
func (s *Scheduler) viewOf(name string, withEvents bool, ctx context.Context) *persysv1.WorkloadView {
	v := s.cache.WorkloadView(name)
	if v == nil {
		return nil
	}
	if withEvents && ctx != nil {
		if evs, err := s.store.ListEvents(ctx, name, 20); err == nil {
			v.Events = evs
		}
	}
	return v
}
