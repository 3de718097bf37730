package statecache

// Watch events: the store's changes, applied in the order the watch
// delivers them. A change older than what the cache holds (the echo of
// the scheduler's own write, cached when it was made) changes nothing.

import (
	"time"

	"google.golang.org/protobuf/proto"

	persysv1 "github.com/persys-dev/compute/api/persys/v1"
)

// WorkloadKey names one of a workload's keys in the store.
type WorkloadKey uint8

const (
	KeySpec WorkloadKey = iota
	KeyStatus
	KeyAssignment
)

// HoldsAt reports whether the cache holds key of workload name at rev or
// later: a put of it at rev, applied by the methods below, would change
// nothing (at most wake the workload's subscribers, for a status, with
// nothing new to read). The watch asks before decoding a put: nearly
// every put a leading scheduler watches is the echo of its own write.
func (c *Cache) HoldsAt(name string, key WorkloadKey, rev int64) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	e := c.workloads[name]
	if e == nil {
		return false
	}
	switch key {
	case KeySpec:
		return rev <= e.rev
	case KeyStatus:
		return rev <= e.statusRev
	case KeyAssignment:
		return rev <= e.assignRev
	}
	return false
}

// WorkloadChanged applies a change of workload name's spec key at rev (w
// nil when deleted) and reports whether it was news to queue.
func (c *Cache) WorkloadChanged(name string, w *persysv1.Workload, rev int64, deleted bool) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	changed := false
	e := c.workloads[name]
	switch {
	case deleted:
		if e != nil && rev >= e.rev {
			c.dropWorkloadLocked(name)
			c.invalidateLocked()
		}
		c.buryLocked(name, rev)
		changed = true
	case e == nil:
		if !c.buriedLocked(name, rev) {
			c.putWorkloadLocked(name, &workload{w: c.specs.share(w), rev: rev})
			changed = true
		}
	case rev > e.rev:
		if e.w.GetUid() != w.GetUid() {
			// What nodes report of the instance before is an orphan now.
			c.markSuspectsLocked(name, e)
		}
		e.setWorkload(c.specs.share(w))
		e.rev = rev
		c.indexServiceLocked(name, w)
		c.invalidateLocked()
		changed = true
	}
	if changed {
		c.notifyLocked(name)
	}
	return changed
}

// StatusChanged applies a change of workload name's status key at rev.
func (c *Cache) StatusChanged(name string, st *persysv1.WorkloadStatus, rev int64, deleted bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	e := c.workloads[name]
	if e == nil {
		return
	}
	if deleted {
		if rev >= e.statusRev {
			c.setStatusLocked(e, nil, rev)
		}
	} else if rev > e.statusRev {
		c.setStatusLocked(e, st, rev)
	}
	c.notifyLocked(name)
}

// AssignmentChanged applies a change of workload name's assignment key at
// rev and reports whether it was news to queue: a placement of this
// scheduler whose commit has not returned yet is not (the worker goes on
// with it).
func (c *Cache) AssignmentChanged(name string, a *persysv1.Assignment, rev int64, deleted bool) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	e := c.workloads[name]
	if e == nil {
		return false
	}
	changed := false
	if deleted {
		if rev >= e.assignRev {
			c.setAssignmentLocked(name, e, nil, 0)
			c.invalidateLocked()
		}
		changed = true
	} else if rev > e.assignRev {
		c.setAssignmentLocked(name, e, a, rev)
		c.assignmentChangedLocked(name, a)
		h, ours := c.inflight[name]
		changed = !ours || h.node != a.GetNodeId()
	}
	if changed {
		c.notifyLocked(name)
	}
	return changed
}

// NodeChanged applies a change of node id's record (n nil when deleted).
func (c *Cache) NodeChanged(id string, n *persysv1.Node, rev int64, deleted bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	ne := c.nodes[id]
	switch {
	case deleted:
		delete(c.nodes, id)
	case ne != nil && rev < ne.rev:
		return // older than what the scheduler wrote
	case ne != nil:
		same := samePlacementRecord(ne.node, n)
		ne.node, ne.rev = n, rev
		if same {
			return // the placement snapshot did not change
		}
	default:
		ne = newNode(n)
		ne.rev = rev
		c.nodes[id] = ne
	}
	c.invalidateLocked()
}

// NodeWritten records that the scheduler wrote node id's record (already
// in the cache) at rev, so the watch's older events do not undo it.
func (c *Cache) NodeWritten(id string, rev int64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if ne := c.nodes[id]; ne != nil && rev > ne.rev {
		ne.rev = rev
	}
}

// Liveness is what a change of a node's liveness changed.
type Liveness struct {
	// Known is false for a node the cache never saw that was lost:
	// nothing changed.
	Known bool
	// Was is whether the node was alive before.
	Was bool
	// Record is the node's new record when its state (READY, NOT_READY)
	// changed; nil otherwise.
	Record *persysv1.Node
	// Assigned lists the workloads assigned to the node.
	Assigned []string
}

// SetAlive records that node id's liveness lease appeared (alive) or
// expired. A lost node's reports are forgotten: it sends its full list
// again when it returns.
func (c *Cache) SetAlive(id string, alive bool) Liveness {
	c.placeMu.Lock()
	defer c.placeMu.Unlock()
	c.mu.Lock()
	defer c.mu.Unlock()
	c.setReadyLocked(id, alive)
	ne := c.nodes[id]
	if ne == nil {
		if !alive {
			return Liveness{}
		}
		ne = newNode(&persysv1.Node{Id: id})
		c.nodes[id] = ne
	}
	out := Liveness{Known: true, Was: ne.alive}
	ne.alive = alive
	if alive {
		ne.lostAt = time.Time{}
	} else if out.Was || ne.lostAt.IsZero() {
		ne.lostAt = c.cfg.Now()
	}
	want := persysv1.NodeState_NODE_STATE_READY
	if !alive {
		want = persysv1.NodeState_NODE_STATE_NOT_READY
		ne.reported = false
		ne.setReports(map[string]report{})
		ne.reportDigest = 0
	}
	if ne.node.GetState() != want {
		n := cloneNode(ne.node)
		n.State = want
		ne.node = n
		out.Record = n
	}
	out.Assigned = c.assignedLocked(id)
	return out
}

func cloneNode(n *persysv1.Node) *persysv1.Node {
	if n == nil {
		return &persysv1.Node{}
	}
	return proto.Clone(n).(*persysv1.Node)
}
