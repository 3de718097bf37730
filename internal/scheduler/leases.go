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
// them all busy leaves its node for its next one.
const leaseExtenders = 16

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
		<-s.leaseSlots
	}
}
