package scheduler

import (
	"context"
	"time"

	"github.com/persys-dev/compute/api/persys/contract"
	persysv1 "github.com/persys-dev/compute/api/persys/v1"
	"github.com/persys-dev/compute/internal/model"
	"github.com/persys-dev/compute/internal/store"
)

// watchLoop applies etcd changes to the cache. When the watch ends (a
// compaction overtook it, or the connection broke) it reloads a snapshot and
// watches again from there, so the cache never misses a change.
func (s *Scheduler) watchLoop(ctx context.Context, rev int64) error {
	for {
		ch := s.store.Watch(ctx, rev)
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

func (s *Scheduler) applyChange(ctx context.Context, c store.Change) {
	switch c.Kind {
	case store.KindWorkload:
		// The echo of a write this scheduler made and cached already
		// (cacheWorkload queued it then) changes nothing: queue only news.
		changed := false
		s.mu.Lock()
		e := s.workloads[c.Key]
		if c.Deleted {
			if e != nil && c.ModRevision >= e.rev {
				s.dropWorkloadLocked(c.Key)
				s.invalidateLocked()
			}
			s.buryLocked(c.Key, c.ModRevision)
			changed = true
		} else if e == nil {
			if !s.buriedLocked(c.Key, c.ModRevision) {
				s.putWorkloadLocked(c.Key, &workloadEntry{w: c.Workload, rev: c.ModRevision})
				changed = true
			}
		} else if c.ModRevision > e.rev {
			e.w, e.rev = c.Workload, c.ModRevision
			s.invalidateLocked()
			changed = true
		}
		if changed {
			s.notifyLocked(c.Key)
		}
		s.mu.Unlock()
		if changed {
			s.queue.Add(c.Key)
		}
	case store.KindStatus:
		s.mu.Lock()
		if e := s.workloads[c.Key]; e != nil {
			if c.Deleted {
				if c.ModRevision >= e.statusRev {
					s.setStatusLocked(e, nil, c.ModRevision)
				}
			} else if c.ModRevision > e.statusRev {
				s.setStatusLocked(e, c.Status, c.ModRevision)
			}
			s.notifyLocked(c.Key)
		}
		s.mu.Unlock()
	case store.KindAssignment:
		changed := false
		s.mu.Lock()
		if e := s.workloads[c.Key]; e != nil {
			if c.Deleted {
				if c.ModRevision >= e.assignRev {
					s.setAssignmentLocked(c.Key, e, nil, 0)
					s.invalidateLocked()
				}
				changed = true
			} else if c.ModRevision > e.assignRev {
				s.setAssignmentLocked(c.Key, e, c.Assignment, c.ModRevision)
				s.assignmentChangedLocked(c.Key, c.Assignment)
				// A placement of ours whose commit has not returned yet:
				// placeFrom goes on with it, no second reconcile needed.
				h, ours := s.batches.inflight[c.Key]
				changed = !ours || h.node != c.Assignment.GetNodeId()
			}
			if changed {
				s.notifyLocked(c.Key)
			}
		}
		s.mu.Unlock()
		if changed {
			s.queue.Add(c.Key)
		}
	case store.KindNode:
		s.mu.Lock()
		s.invalidateLocked()
		if c.Deleted {
			delete(s.nodes, c.Key)
		} else if ne := s.nodes[c.Key]; ne != nil {
			ne.node = c.Node
		} else {
			s.nodes[c.Key] = &nodeEntry{node: c.Node, reports: map[string]*persysv1.WorkloadStatus{}}
		}
		s.mu.Unlock()
	case store.KindNodeLease:
		s.setAlive(ctx, c.Key, !c.Deleted)
	}
}

// setAlive records a node's liveness; losing it marks the node NotReady in
// etcd (one write per transition) and re-reconciles its workloads; gaining
// it re-reconciles them and the pending ones.
func (s *Scheduler) setAlive(ctx context.Context, id string, alive bool) {
	s.mu.Lock()
	s.invalidateLocked()
	ne := s.nodes[id]
	if ne == nil {
		if !alive {
			s.mu.Unlock()
			return
		}
		ne = &nodeEntry{node: &persysv1.Node{Id: id}, reports: map[string]*persysv1.WorkloadStatus{}}
		s.nodes[id] = ne
	}
	was := ne.alive
	ne.alive = alive
	if alive {
		ne.lostAt = time.Time{}
	} else if was || ne.lostAt.IsZero() {
		ne.lostAt = s.cfg.Now()
	}
	var node *persysv1.Node
	want := persysv1.NodeState_NODE_STATE_READY
	if !alive {
		want = persysv1.NodeState_NODE_STATE_NOT_READY
		ne.reported = false
		ne.reports = map[string]*persysv1.WorkloadStatus{}
		ne.reportDigest = 0
	}
	if ne.node.GetState() != want {
		node = cloneNode(ne.node)
		node.State = want
		ne.node = node
	}
	names := s.assignedLocked(id)
	s.mu.Unlock()

	// Only a loss is recorded here. A lease appears when a node registers,
	// and registration writes the whole record itself: writing the cached
	// copy here as well would race with it and could leave a stale or bare
	// record (no address, capabilities or lease) in etcd.
	if node != nil && !alive {
		s.recordNodeLost(ctx, node)
	}
	if was != alive {
		if alive {
			s.log.Info("node ready", "node", id)
			s.events.Add(model.EventNodeReady, &persysv1.Event{NodeId: id, Message: "node lease acquired"})
		} else {
			s.log.Warn("node lost", "node", id)
			s.metrics.nodeLosses.Inc()
			s.events.Add(model.EventNodeLost, &persysv1.Event{NodeId: id, Reason: persysv1.FailureReason_FAILURE_REASON_NODE_LOST,
				Message: "node lease expired"})
		}
	}
	for _, n := range names {
		s.queue.Add(n)
	}
	if alive && !was {
		s.queuePending()
	}
}

// assignedLocked lists the workloads assigned to node id. Callers hold mu.
func (c *cache) assignedLocked(id string) []string {
	set := c.byNode[id]
	names := make([]string, 0, len(set))
	for name := range set {
		names = append(names, name)
	}
	return names
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
		if err := s.store.PutNode(ctx, node); err != nil && ctx.Err() == nil {
			s.log.Error("record node state", "node", node.GetId(), "state", contract.Name(node.GetState()), "err", err)
		}
	}()
}
