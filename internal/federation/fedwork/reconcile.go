package fedwork

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/persys-dev/compute/internal/federation/fedapi"
	"github.com/persys-dev/compute/internal/federation/fedplace"
	"github.com/persys-dev/compute/internal/federation/fedstore"
)

// Run reconciles every interval until ctx ends.
func (s *Service) Run(ctx context.Context, interval time.Duration) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		if err := s.Reconcile(ctx); err != nil && ctx.Err() == nil {
			s.cfg.Logger.Warn("federated workloads round failed", "err", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// Reconcile makes one pass over the federated workloads: it finishes
// deletes, removes stale copies from members that are reachable again,
// moves a workload whose member was unreachable past its failover grace,
// sends decisions a member has not taken yet, and, with offload, moves a
// workload its member has no room for.
func (s *Service) Reconcile(ctx context.Context) error {
	ws, revs, err := s.cfg.Store.ListWorkloads(ctx)
	if err != nil {
		return err
	}
	healths, err := s.cfg.Store.Healths(ctx)
	if err != nil {
		return err
	}
	members, err := Members(ctx, s.cfg.Store)
	if err != nil {
		return err
	}
	var errs []error
	for i, w := range ws {
		if err := s.reconcileOne(ctx, w, revs[i], healths, members); err != nil && !errors.Is(err, fedstore.ErrConflict) {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

func (s *Service) reconcileOne(ctx context.Context, w fedstore.Workload, rev int64, healths map[string]fedapi.Health, members fedplace.Members) error {
	ready := func(c string) bool { return healths[c].State == fedapi.StateReady }
	if w.Deleting {
		return s.finishDelete(ctx, w, rev)
	}
	for _, c := range w.Stale {
		if c == w.Decision.Cluster || !ready(c) {
			continue
		}
		if err := s.deleteAt(ctx, c, w.Name); err != nil {
			return err
		}
		if err := s.update(ctx, w.Name, func(cur *fedstore.Workload) bool {
			n := len(cur.Stale)
			cur.Stale = slices.DeleteFunc(cur.Stale, func(x string) bool { return x == c })
			return len(cur.Stale) != n
		}); err != nil {
			return err
		}
		s.cfg.Logger.Info("stale copy deleted", "workload", w.Name, "cluster", c)
	}
	if fedplace.FailoverDue(w.Placement, healths[w.Decision.Cluster], s.cfg.Now()) {
		return s.failover(ctx, w, healths, members)
	}
	if !w.Sent.Same(w.Decision) {
		if !ready(w.Decision.Cluster) {
			return nil
		}
		_, err := s.send(ctx, w)
		return err
	}
	if !w.Placement.Offload || !ready(w.Decision.Cluster) {
		return nil
	}
	return s.offload(ctx, w, healths, members)
}

// offload moves w to the next cluster when its member reports that no
// node fits it.
func (s *Service) offload(ctx context.Context, w fedstore.Workload, healths map[string]fedapi.Health, members fedplace.Members) error {
	v, err := s.memberView(ctx, w.Decision.Cluster, w.Name, false)
	if err != nil {
		return err
	}
	why, refused := fedplace.CapacityRefusal(v)
	if !refused {
		return nil
	}
	from := w.Decision.Cluster
	var moved fedstore.Workload
	err = s.update(ctx, w.Name, func(cur *fedstore.Workload) bool {
		if !cur.Decision.Same(w.Decision) {
			return false
		}
		cur.Refusals = append(cur.Refusals, fedapi.Refusal{Cluster: from, Revision: cur.Revision, Reason: why, At: s.cfg.Now()})
		c, reason, ok := fedplace.Choose(fedplace.Resolve(cur.Placement, members), cur.Revision, healths, cur.Refusals)
		if !ok {
			// Nowhere else: it waits on its member, which places it
			// when room frees up; the refusal is recorded once.
			cur.Refusals = cur.Refusals[:len(cur.Refusals)-1]
			return false
		}
		s.setDecision(cur, fedapi.Decision{Cluster: c, Revision: cur.Revision, Reason: "offloaded from " + from + " (" + why + "); " + reason, At: s.cfg.Now()})
		moved = *cur
		return true
	})
	if err != nil || moved.Name == "" {
		return err
	}
	s.event(ctx, fedapi.EventOffloaded, moved, "offloaded from "+from+" to "+moved.Decision.Cluster+": "+why)
	// Send at once; the stale copy on from goes next round (or now).
	if _, err := s.send(ctx, moved); err != nil {
		return err
	}
	return s.deleteAt(ctx, from, w.Name)
}

// failover moves w off a member not reached for longer than the grace;
// the copy there stays listed as stale until the member is back.
func (s *Service) failover(ctx context.Context, w fedstore.Workload, healths map[string]fedapi.Health, members fedplace.Members) error {
	from := w.Decision.Cluster
	h := healths[from]
	var moved fedstore.Workload
	err := s.update(ctx, w.Name, func(cur *fedstore.Workload) bool {
		if !cur.Decision.Same(w.Decision) {
			return false
		}
		c, reason, ok := fedplace.Choose(fedplace.Resolve(cur.Placement, members), cur.Revision, healths, cur.Refusals)
		if !ok {
			return false // nowhere to go: wait for a member
		}
		why := fmt.Sprintf("failover from %s (%s, last contact %s, grace %s)", from, h.State, h.LastContact.UTC().Format(time.RFC3339), cur.Placement.Failover.Grace)
		s.setDecision(cur, fedapi.Decision{Cluster: c, Revision: cur.Revision, Reason: why + "; " + reason, At: s.cfg.Now()})
		moved = *cur
		return true
	})
	if err != nil || moved.Name == "" {
		return err
	}
	s.event(ctx, fedapi.EventFailover, moved, "failed over from "+from+" to "+moved.Decision.Cluster)
	_, err = s.send(ctx, moved)
	return err
}
