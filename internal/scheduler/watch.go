package scheduler

import (
	"context"
	"time"

	"github.com/cenkalti/backoff/v5"

	"github.com/persys-dev/compute/api/persys/contract"
	persysv1 "github.com/persys-dev/compute/api/persys/v1"
	"github.com/persys-dev/compute/internal/model"
	"github.com/persys-dev/compute/internal/nodechannel"
	"github.com/persys-dev/compute/internal/scheduler/statecache"
	"github.com/persys-dev/compute/internal/store"
)

// watchLoop applies etcd changes to the cache. When the watch ends (a
// compaction overtook it, or the connection broke) it reloads a snapshot and
// watches again from there, so the cache never misses a change.
func (s *Scheduler) watchLoop(ctx context.Context, rev int64) error {
	for {
		ch := s.store.WatchSkipping(ctx, rev, s.knownChange)
		for c := range ch {
			if c.Kind == store.KindResync {
				break
			}
			s.applyChange(ctx, c)
		}
		if ctx.Err() != nil {
			return nil
		}
		s.log.Warn("etcd watch ended; reloading state")
		var err error
		retry := retryBackoff(time.Second, 10*time.Second)
		for {
			rev, err = s.load(ctx)
			if err == nil {
				break
			}
			wait := retry.NextBackOff()
			s.log.Error("reload after watch failure", "err", err, "retry_in", wait.Round(time.Millisecond).String())
			if !sleepCtx(ctx, wait) {
				return nil
			}
		}
	}
}

// knownChange tells the watch which puts the cache holds already: the
// echoes of this scheduler's own writes, recorded when they returned.
func (s *Scheduler) knownChange(kind store.Kind, key string, rev int64) bool {
	switch kind {
	case store.KindWorkload:
		return s.cache.HoldsAt(key, statecache.KeySpec, rev)
	case store.KindStatus:
		return s.cache.HoldsAt(key, statecache.KeyStatus, rev)
	case store.KindAssignment:
		return s.cache.HoldsAt(key, statecache.KeyAssignment, rev)
	}
	return false
}

func (s *Scheduler) applyChange(ctx context.Context, c store.Change) {
	switch c.Kind {
	case store.KindWorkload:
		if s.cache.WorkloadChanged(c.Key, c.Workload, c.ModRevision, c.Deleted) {
			s.queue.Add(c.Key)
		}
	case store.KindStatus:
		s.cache.StatusChanged(c.Key, c.Status, c.ModRevision, c.Deleted)
	case store.KindAssignment:
		if s.cache.AssignmentChanged(c.Key, c.Assignment, c.ModRevision, c.Deleted) {
			s.queue.Add(c.Key)
		}
	case store.KindNode:
		s.cache.NodeChanged(c.Key, c.Node, c.ModRevision, c.Deleted)
	case store.KindNodeLease:
		s.setAlive(ctx, c.Key, !c.Deleted)
	}
}

// setAlive records a node's liveness; losing it marks the node NotReady in
// etcd (one write per transition) and re-reconciles its workloads; gaining
// it re-reconciles them and the pending ones.
func (s *Scheduler) setAlive(ctx context.Context, id string, alive bool) {
	l := s.cache.SetAlive(id, alive)
	if !l.Known {
		return
	}
	// Only a loss is recorded here. A lease appears when a node registers,
	// and registration writes the whole record itself: writing the cached
	// copy here as well would race with it and could leave a stale or bare
	// record (no address, capabilities or lease) in etcd.
	if l.Record != nil && !alive {
		s.recordNodeLost(ctx, l.Record)
	}
	if l.Was != alive {
		if alive {
			s.log.Info("node ready", "node", id)
			s.events.Add(model.EventNodeReady, &persysv1.Event{NodeId: id, Message: "node lease acquired"})
		} else {
			s.log.Warn("node lost", "node", id)
			s.agents().nodeLost(id)
			// A revoked node's stream ends here too; a node that is alive
			// reconnects and registers again.
			s.nodes.Close(id, nodechannel.ReasonNodeLost)
			s.metrics.nodeLosses.Inc()
			s.events.Add(model.EventNodeLost, &persysv1.Event{NodeId: id, Reason: persysv1.FailureReason_FAILURE_REASON_NODE_LOST,
				Message: "node lease expired"})
		}
	}
	if l.Was != alive || !alive {
		// A lease bound again while alive (a registration, which queues
		// them itself, or an extension) changes nothing for them.
		for _, n := range l.Assigned {
			s.queue.Add(n)
		}
	}
	if alive && !l.Was {
		s.queuePending()
	}
}

// nodeLossWriters bounds the NotReady records written at once.
const nodeLossWriters = 16

// recordNodeLost writes a lost node's NotReady record in the background.
// Written inline, the losses of 500 nodes at once held this watch for
// seconds (one etcd write each), and with it the reschedule of all their
// workloads. The record is for display: liveness is the lease.
func (s *Scheduler) recordNodeLost(ctx context.Context, node *persysv1.Node) {
	s.background.Add(1)
	go func() {
		defer s.background.Done()
		select {
		case s.nodeLossSem <- struct{}{}:
		case <-ctx.Done():
			return
		}
		defer func() { <-s.nodeLossSem }()
		rev, err := s.store.PutNode(ctx, node)
		if err != nil && ctx.Err() == nil {
			s.log.Error("record node state", "node", node.GetId(), "state", contract.Name(node.GetState()), "err", err)
		}
		s.cache.NodeWritten(node.GetId(), rev)
	}()
}

// retryBackoff is the pause schedule of a retry loop: from initial,
// growing up to maxWait, each pause randomized by ±50%.
func retryBackoff(initial, maxWait time.Duration) *backoff.ExponentialBackOff {
	b := backoff.NewExponentialBackOff()
	b.InitialInterval, b.MaxInterval, b.RandomizationFactor, b.Multiplier = initial, maxWait, 0.5, 2
	return b
}

func sleepCtx(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}
