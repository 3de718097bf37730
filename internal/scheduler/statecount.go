package scheduler

import (
	persysv1 "github.com/persys-dev/compute/api/persys/v1"
)

// stateCounts counts the cached workloads by observed state. It is kept
// current at every change to the cache, so that the cluster summary and
// the metrics need no walk over every workload: at 100,000 workloads such
// a walk held mu for milliseconds, on every poll and every scrape.
type stateCounts map[persysv1.ActualState]int

// observedState is the state a workload counts under: PENDING until a
// status exists.
func observedState(st *persysv1.WorkloadStatus) persysv1.ActualState {
	if s := st.GetState(); s != persysv1.ActualState_ACTUAL_STATE_UNSPECIFIED {
		return s
	}
	return persysv1.ActualState_ACTUAL_STATE_PENDING
}

func (c stateCounts) add(st *persysv1.WorkloadStatus, n int) {
	k := observedState(st)
	if c[k] += n; c[k] == 0 {
		delete(c, k)
	}
}

// putWorkloadLocked adds or replaces the cache entry of name. Callers hold mu.
func (c *cache) putWorkloadLocked(name string, e *workloadEntry) {
	if old := c.workloads[name]; old != nil {
		c.counts.add(old.status, -1)
		c.unindexLocked(name, old)
	}
	c.workloads[name] = e
	c.counts.add(e.status, 1)
	c.indexLocked(name, e)
}

// dropWorkloadLocked removes the cache entry of name. Callers hold mu.
func (c *cache) dropWorkloadLocked(name string) {
	if old := c.workloads[name]; old != nil {
		c.counts.add(old.status, -1)
		c.unindexLocked(name, old)
		delete(c.workloads, name)
	}
}

// setStatusLocked replaces the cached status of e, an entry of the cache.
// Callers hold mu.
func (c *cache) setStatusLocked(e *workloadEntry, st *persysv1.WorkloadStatus, rev int64) {
	if gaveUp(e.status, e.w, c.maxAttempts) != gaveUp(st, e.w, c.maxAttempts) {
		// It gives its node back, or takes it again (holdsLocked).
		c.invalidateLocked()
	}
	c.counts.add(e.status, -1)
	e.status, e.statusRev = st, rev
	c.counts.add(st, 1)
}

// resetEntryLocked empties e, the cache entry of name, for a new workload
// of the same name. Callers hold mu.
func (c *cache) resetEntryLocked(name string, e *workloadEntry) {
	c.counts.add(e.status, -1)
	c.unindexLocked(name, e)
	*e = workloadEntry{}
	c.counts.add(nil, 1)
}

// setAssignmentLocked replaces the assignment of e, the cache entry of
// name, keeping byNode in step. Callers hold mu.
func (c *cache) setAssignmentLocked(name string, e *workloadEntry, a *persysv1.Assignment, rev int64) {
	c.unindexLocked(name, e)
	e.assignment, e.assignRev = a, rev
	c.indexLocked(name, e)
}

func (c *cache) indexLocked(name string, e *workloadEntry) {
	id := e.assignment.GetNodeId()
	if id == "" {
		return
	}
	set := c.byNode[id]
	if set == nil {
		set = map[string]struct{}{}
		c.byNode[id] = set
	}
	set[name] = struct{}{}
}

func (c *cache) unindexLocked(name string, e *workloadEntry) {
	id := e.assignment.GetNodeId()
	if id == "" {
		return
	}
	if set := c.byNode[id]; set != nil {
		delete(set, name)
		if len(set) == 0 {
			delete(c.byNode, id)
		}
	}
}

// stateCountsLocked returns a copy of the counts. Callers hold mu.
func (c *cache) stateCountsLocked() map[persysv1.ActualState]int {
	out := make(map[persysv1.ActualState]int, len(c.counts))
	for k, v := range c.counts {
		out[k] = v
	}
	return out
}
