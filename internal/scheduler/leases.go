package scheduler

import (
	"context"
	"errors"
	"time"

	"github.com/persys-dev/compute/internal/store"
)

// leaseExtenders bounds the node lease extensions under way at once:
// when a cluster grows past a step, every node asks for one on its next
// heartbeat, and each costs four etcd requests. A heartbeat that finds
// them all busy, or Config.LeaseExtensionRate spent, leaves its node for
// its next one.
const leaseExtenders = 16

// leaseOutgrown tells whether a node whose lease has ttl should move to
// the longer want: only once its heartbeats would come at least twice as
// often as the rate target asks. A node formed with a small cluster then
// costs at most twice its share of heartbeats until moved, instead of a
// move at every 1.5x the cluster grows: on 5,000 nodes forming at once
// with three etcd members, those moves were half of all raft proposals;
// placements went from 1,168-1,385/s to 1,628-1,864/s without them (n=3,
// alternating), while the heartbeats they would have saved were 12 %.
func leaseOutgrown(ttl, want time.Duration) bool {
	return want >= 2*ttl
}

// extendLease moves node id from its lease to a longer one of ttl in the
// background (store.ExtendNodeLease), once at a time per node, and writes
// the node's record with the new lease so that a leader after this one
// renews it. A node that registered again meanwhile keeps its new lease.
func (s *Scheduler) extendLease(id string, lease int64, ttl time.Duration) {
	select {
	case s.leaseSlots <- struct{}{}:
	default:
		return
	}
	// A token is spent only on a move that starts: a node whose move is
	// under way gives it back.
	pace := s.leasePace.Reserve()
	if !pace.OK() || pace.Delay() > 0 {
		pace.Cancel()
		<-s.leaseSlots
		return
	}
	started := s.goOnce(s.leaseInflight, id, func(runCtx context.Context) {
		defer func() { <-s.leaseSlots }()
		ctx, cancel := context.WithTimeout(runCtx, s.cfg.ApplyTimeout)
		defer cancel()
		next, err := s.store.ExtendNodeLease(ctx, id, lease, ttl)
		if errors.Is(err, store.ErrConflict) {
			return // it registered again, or its lease expired
		}
		if err != nil {
			s.log.Warn("extend node lease", "node", id, "ttl", ttl.String(), "err", err)
			return
		}
		rec, ok := s.cache.LeaseExtended(id, lease, next, ttl)
		if !ok {
			return
		}
		rev, err := s.store.PutNode(ctx, rec)
		if err != nil {
			s.log.Warn("record extended node lease", "node", id, "err", err)
			return
		}
		s.cache.NodeWritten(id, rev)
		s.metrics.leaseExtensions.Inc()
		s.log.Debug("node lease extended", "node", id, "ttl", ttl.String())
	})
	if !started {
		pace.Cancel()
		<-s.leaseSlots
	}
}
