package statecache

// Workloads: what a decision reads, the retry state of the current
// revision, and the writes the scheduler made (recorded with the revision
// etcd gave them, so that the watch's echo changes nothing).

import (
	"time"

	persysv1 "github.com/persys-dev/compute/api/persys/v1"
)

// Reading is a consistent copy of what one decision about a workload
// needs: its keys, its retry state and its assigned node.
type Reading struct {
	Workload      *persysv1.Workload
	Rev           int64
	Assignment    Assignment
	AssignmentRev int64

	Attempts      int
	NextAttemptAt time.Time
	LastReason    persysv1.FailureReason
	LastMessage   string
	// MoveBlocked says why a drain could not move the workload ("" when
	// none did).
	MoveBlocked string

	// Node is the assigned node as the cache knows it; NodeKnown is false
	// when there is no assignment or no such node.
	NodeKnown    bool
	NodeAlive    bool
	NodeDraining bool
	NodeLostAt   time.Time
	// NodeReported is true once the node sent its full list since the
	// scheduler started or since it came back.
	NodeReported bool
	NodeAddress  string
	// Report is a copy of what the node last reported of the workload;
	// nil: nothing.
	// ReportSince is when the report entered its uid, revision and state.
	Report      *persysv1.WorkloadStatus
	ReportSince time.Time
}

// Read returns the reading of workload name; false when the cache has no
// such workload. A new revision starts a new series of attempts.
func (c *Cache) Read(name string) (Reading, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	e := c.workloads[name]
	if e == nil {
		return Reading{}, false
	}
	if e.attemptRevision != e.w.GetRevision() {
		if e.x != nil {
			e.x.attempts, e.x.nextAttemptAt = 0, time.Time{}
			e.tidy()
		}
		e.attemptRevision = e.w.GetRevision()
	}
	x := e.retry()
	r := Reading{Workload: e.w, Rev: e.rev, Assignment: Assignment{e.assignment, e.w}, AssignmentRev: e.assignRev,
		Attempts: x.attempts, NextAttemptAt: x.nextAttemptAt, LastReason: x.lastReason, LastMessage: x.lastMessage,
		MoveBlocked: x.moveBlocked}
	if e.assignment == nil {
		return r, true
	}
	if ne := c.nodes[e.assignment.GetNodeId()]; ne != nil {
		r.NodeKnown, r.NodeAlive, r.NodeDraining = true, ne.alive, ne.node.GetDraining()
		r.NodeLostAt, r.NodeReported, r.NodeAddress = ne.lostAt, ne.reported, ne.node.GetAddress()
		if rep, ok := ne.reports[name]; ok {
			r.Report, r.ReportSince = rep.status(), rep.since
		}
	}
	return r, true
}

// Has reports whether the cache holds workload name.
func (c *Cache) Has(name string) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.workloads[name] != nil
}

// Location is workload name's assigned node and that node's address
// ("" when unknown); found is false when there is no such workload.
func (c *Cache) Location(name string) (nodeID, addr string, found bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	e := c.workloads[name]
	if e == nil {
		return "", "", false
	}
	nodeID = e.assignment.GetNodeId()
	if ne := c.nodes[nodeID]; ne != nil {
		addr = ne.node.GetAddress()
	}
	return nodeID, addr, true
}

// BeginAttempt counts an apply of workload name and sets when the next
// attempt is due should this one fail; it returns the attempt's number
// and the backoff after it. ok is false when there is no such workload.
func (c *Cache) BeginAttempt(name string) (attempt int, delay time.Duration, ok bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	e := c.workloads[name]
	if e == nil {
		return 0, 0, false
	}
	x := e.retryMut()
	x.attempts++
	delay = c.cfg.Backoff(x.attempts)
	x.nextAttemptAt = c.cfg.Now().Add(delay)
	return x.attempts, delay, true
}

// NoteFailure records why the last attempt of workload name failed; the
// scheduler persists it as the retry record.
func (c *Cache) NoteFailure(name string, reason persysv1.FailureReason, message string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if e := c.workloads[name]; e != nil {
		x := e.retryMut()
		x.lastReason, x.lastMessage, x.retryStored = reason, message, true
	}
}

// ResetAttempts ends the retry state of workload name; stored is true
// when it had a retry record in the store to delete.
func (c *Cache) ResetAttempts(name string) (stored bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if e := c.workloads[name]; e != nil && e.x != nil {
		stored = e.x.retryStored
		e.x.attempts, e.x.nextAttemptAt, e.x.lastReason, e.x.lastMessage, e.x.retryStored = 0, time.Time{}, 0, "", false
		e.tidy()
	}
	return stored
}

// MarkReached notes that an apply of workload name reached its desired
// state now.
func (c *Cache) MarkReached(name string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if e := c.workloads[name]; e != nil {
		e.reachedAt = c.cfg.Now()
	}
}

// SeenReached notes that workload name was seen in its desired state
// without an apply of this scheduler reaching it (a scheduler that
// started after the apply): the run counts from now.
func (c *Cache) SeenReached(name string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if e := c.workloads[name]; e != nil && e.reachedAt.IsZero() {
		e.reachedAt = c.cfg.Now()
	}
}

// StableWait is how long workload name must still hold its desired state
// before its failed attempts are forgotten (stableAfter in all); zero or
// less: now.
func (c *Cache) StableWait(name string, stableAfter time.Duration) time.Duration {
	c.mu.Lock()
	defer c.mu.Unlock()
	if e := c.workloads[name]; e != nil && e.retry().attempts > 0 && !e.reachedAt.IsZero() {
		return stableAfter - c.cfg.Now().Sub(e.reachedAt)
	}
	return 0
}

// FailedAfterReach counts, once, a FAILED report of workload name that
// followed a run in its desired state: the apply that reached it was a
// failed attempt after all, or, when that run held long enough for its
// attempts to be forgotten (or a restarted scheduler saw it running), the
// failure is attempt 1. Its backoff counts from now. It returns the attempt
// and its backoff; attempt 0 when there was no such run since the last
// failure counted (an apply's failed answer counted it, or a retry starts
// over).
func (c *Cache) FailedAfterReach(name string) (attempt int, delay time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	e := c.workloads[name]
	if e == nil || e.reachedAt.IsZero() {
		return 0, 0
	}
	x := e.retryMut()
	if x.attempts == 0 {
		x.attempts = 1
	}
	delay = c.cfg.Backoff(x.attempts)
	x.nextAttemptAt = c.cfg.Now().Add(delay)
	e.reachedAt = time.Time{}
	return x.attempts, delay
}

// SetMoveBlocked records why a drain could not move workload name.
func (c *Cache) SetMoveBlocked(name, why string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if e := c.workloads[name]; e != nil {
		e.retryMut().moveBlocked = why
		e.tidy()
	}
}

// SetPending keeps the decision that placed workload name nowhere, for
// describe.
func (c *Cache) SetPending(name string, d *persysv1.PlacementDecision) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if e := c.workloads[name]; e != nil {
		e.retryMut().pending = d
		e.tidy()
	}
}

// Status is a copy of workload name's cached status; found is false when there is
// no such workload.
func (c *Cache) Status(name string) (st *persysv1.WorkloadStatus, found bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	e := c.workloads[name]
	if e == nil {
		return nil, false
	}
	return e.status.proto(e.w), true
}

// StatusBefore is Status for a writer about to replace the status with
// st. When the state or the reason held differ from st's, st is written
// whatever the rest holds, so the status is not decoded: the copy carries
// only its state, reason, attempts, node and revision. A reconcile's
// status write nearly always changes the state, and the decodes were
// 2.5 % of the scheduler's allocations at a million.
func (c *Cache) StatusBefore(name string, st *persysv1.WorkloadStatus) (prev *persysv1.WorkloadStatus, found bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	e := c.workloads[name]
	if e == nil {
		return nil, false
	}
	if h := e.status; h != nil && (h.state != st.GetState() || h.reason != st.GetReason()) {
		return &persysv1.WorkloadStatus{State: h.state, Reason: h.reason, Attempts: h.attempts,
			NodeId: h.nodeID, Revision: h.revision}, true
	}
	return e.status.proto(e.w), true
}

// StatusOn is a copy of workload name's status when it is one of node
// id; nil otherwise.
func (c *Cache) StatusOn(name, id string) *persysv1.WorkloadStatus {
	c.mu.Lock()
	defer c.mu.Unlock()
	if e := c.workloads[name]; e != nil && e.status.GetNodeId() == id {
		return e.status.proto(e.w)
	}
	return nil
}

// StatusWritten records the status the scheduler wrote at rev and wakes
// the workload's subscribers; freed is true when the workload gave up
// with it and so gave its node's resources back.
func (c *Cache) StatusWritten(name string, st *persysv1.WorkloadStatus, rev int64) (freed bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if e := c.workloads[name]; e != nil && rev > e.statusRev {
		freed = !gaveUp(e.status, e.w, c.cfg.MaxAttempts) && gaveUp(st, e.w, c.cfg.MaxAttempts)
		c.setStatusLocked(e, st, rev)
	}
	c.notifyLocked(name)
	return freed
}

// WorkloadWritten records a workload the scheduler wrote at rev (the
// watch's echo then changes nothing) and reports whether it was news to
// queue. A workload deleted meanwhile (the watch brought the deletion
// first) stays deleted.
func (c *Cache) WorkloadWritten(w *persysv1.Workload, rev int64) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	name := w.GetName()
	if c.buriedLocked(name, rev) {
		return false
	}
	e := c.workloads[name]
	if e != nil && e.assignment != nil {
		// Only an assigned workload counts in the placement snapshot.
		c.invalidateLocked()
	}
	if e == nil {
		e = &workload{}
		c.putWorkloadLocked(name, e)
	}
	if rev <= e.rev {
		// The watch brought this write first and queued it.
		return false
	}
	if e.w != nil && e.w.GetUid() != w.GetUid() {
		c.resetEntryLocked(name, e)
	}
	e.setWorkload(c.specs.share(w))
	e.rev = rev
	c.indexServiceLocked(name, w)
	c.notifyLocked(name)
	return true
}

// KeysDeleted records that the scheduler deleted workload name's keys,
// guarded by the workload's revision rev.
func (c *Cache) KeysDeleted(name string, rev int64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if e := c.workloads[name]; e != nil && e.rev == rev {
		c.dropWorkloadLocked(name)
	}
	c.invalidateLocked()
	c.buryLocked(name, rev)
	c.notifyLocked(name)
}

// PreviousCleared records the assignment the scheduler committed at rev
// once a move ended (the previous node forgotten), unless the workload
// changed since its revision wrev.
func (c *Cache) PreviousCleared(name string, wrev int64, a *persysv1.Assignment, rev int64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.invalidateLocked()
	if e := c.workloads[name]; e != nil && e.rev == wrev {
		c.setAssignmentLocked(name, e, a, rev)
		c.notifyLocked(name)
	}
}

// Pending lists the workloads that wait for a feasible node: unplaced
// ones, those whose node was lost, and those a drain could not move (whose
// reason is forgotten: capacity may have appeared).
func (c *Cache) Pending() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	var names []string
	for name := range c.unplaced {
		if e := c.workloads[name]; e != nil && e.assignment.GetNodeId() == "" && !e.w.GetDeleting() {
			names = append(names, name)
		}
	}
	for id, set := range c.byNode {
		ne := c.nodes[id]
		lost := ne == nil || !ne.alive
		if !lost && !ne.node.GetDraining() {
			continue
		}
		for name := range set {
			e := c.workloads[name]
			if e == nil || e.w.GetDeleting() {
				continue
			}
			if lost {
				names = append(names, name)
			} else if e.retry().moveBlocked != "" {
				e.x.moveBlocked = ""
				e.tidy()
				names = append(names, name)
			}
		}
	}
	return names
}

// Each calls fn with every workload, its spec and the reason its last
// attempt failed. fn runs under the cache's lock: it must only read, be
// quick, and never call the cache.
func (c *Cache) Each(fn func(name string, w *persysv1.Workload, lastReason persysv1.FailureReason)) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for name, e := range c.workloads {
		fn(name, e.w, e.retry().lastReason)
	}
}

// EachGitPolled calls fn with every workload whose Git compose source is
// polled (a poll interval set), as Each would.
func (c *Cache) EachGitPolled(fn func(name string, w *persysv1.Workload, lastReason persysv1.FailureReason)) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for name := range c.gitPolled {
		e := c.workloads[name]
		if e == nil || !gitPolled(e.w) {
			delete(c.gitPolled, name)
			continue
		}
		fn(name, e.w, e.retry().lastReason)
	}
}

func gitPolled(w *persysv1.Workload) bool {
	return w.GetSpec().GetCompose().GetGit().GetPollIntervalSeconds() > 0
}

// Names lists every cached workload.
func (c *Cache) Names() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	names := make([]string, 0, len(c.workloads))
	for name := range c.workloads {
		names = append(names, name)
	}
	return names
}
