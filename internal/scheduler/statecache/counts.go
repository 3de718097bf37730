package statecache

import (
	"fmt"
	"maps"
	"slices"

	persysv1 "github.com/persys-dev/compute/api/persys/v1"
)

// stateCounts counts the cached workloads by observed state. It is kept
// current at every change to the cache, so that the cluster summary and
// the metrics need no walk over every workload: at 100,000 workloads such
// a walk held the lock for milliseconds, on every poll and every scrape.
type stateCounts map[persysv1.ActualState]int

// observedState is the state a workload counts under: PENDING until a
// status exists.
func observedState(st statusLike) persysv1.ActualState {
	if st == nil {
		return persysv1.ActualState_ACTUAL_STATE_PENDING
	}
	if s := st.GetState(); s != persysv1.ActualState_ACTUAL_STATE_UNSPECIFIED {
		return s
	}
	return persysv1.ActualState_ACTUAL_STATE_PENDING
}

func (c stateCounts) add(st statusLike, n int) {
	k := observedState(st)
	if c[k] += n; c[k] == 0 {
		delete(c, k)
	}
}

// name returns the workload's own name when it is name: the maps keyed by
// name keep one string per workload, not one per caller that passed it.
func (e *workload) name(name string) string {
	if n := e.w.GetName(); n == name {
		return n
	}
	return name
}

// putWorkloadLocked adds or replaces the cache entry of name.
func (c *Cache) putWorkloadLocked(name string, e *workload) {
	if old := c.workloads[name]; old != nil {
		c.counts.add(old.status, -1)
		c.unindexLocked(name, old)
	}
	c.workloads[e.name(name)] = e
	c.counts.add(e.status, 1)
	c.indexLocked(name, e)
	c.indexServiceLocked(name, e.w)
}

// ServiceLabel is the label the service controller puts on each replica
// (servicectl.LabelService): byService indexes it.
const ServiceLabel = "persys.service"

// indexServiceLocked adds name to byService under w's ServiceLabel, and
// to gitPolled when its Git source is polled; call it whenever a cache
// entry gets a workload. Entries are dropped lazily
// (serviceMembersLocked).
func (c *Cache) indexServiceLocked(name string, w *persysv1.Workload) {
	if gitPolled(w) {
		c.gitPolled[name] = struct{}{}
	}
	v := w.GetLabels()[ServiceLabel]
	if v == "" {
		return
	}
	set := c.byService[v]
	if set == nil {
		set = map[string]struct{}{}
		c.byService[v] = set
	}
	set[name] = struct{}{}
}

// serviceMembersLocked calls fn with each cached workload labelled
// ServiceLabel=service, dropping the index's stale entries.
func (c *Cache) serviceMembersLocked(service string, fn func(name string, e *workload)) {
	set := c.byService[service]
	for name := range set {
		e := c.workloads[name]
		if e == nil || e.w.GetLabels()[ServiceLabel] != service {
			delete(set, name)
			continue
		}
		fn(name, e)
	}
	if len(set) == 0 {
		delete(c.byService, service)
	}
}

// dropWorkloadLocked removes the cache entry of name.
func (c *Cache) dropWorkloadLocked(name string) {
	if old := c.workloads[name]; old != nil {
		c.counts.add(old.status, -1)
		c.unindexLocked(name, old)
		delete(c.workloads, name)
	}
}

// setStatusLocked replaces the cached status of e, an entry of the cache.
func (c *Cache) setStatusLocked(e *workload, st *persysv1.WorkloadStatus, rev int64) {
	if gaveUp(e.status, e.w, c.cfg.MaxAttempts) != gaveUp(st, e.w, c.cfg.MaxAttempts) {
		// It gives its node back, or takes it again (holdsLocked).
		c.invalidateLocked()
	}
	c.counts.add(e.status, -1)
	e.status, e.statusRev = holdStatus(st, e.w), rev
	c.counts.add(st, 1)
}

// resetEntryLocked empties e, the cache entry of name, for a new workload
// of the same name.
func (c *Cache) resetEntryLocked(name string, e *workload) {
	c.counts.add(e.status, -1)
	c.unindexLocked(name, e)
	*e = workload{}
	c.counts.add(nil, 1)
	c.indexLocked(name, e)
}

// setAssignmentLocked replaces the assignment of e, the cache entry of
// name, keeping byNode in step.
func (c *Cache) setAssignmentLocked(name string, e *workload, a *persysv1.Assignment, rev int64) {
	c.unindexLocked(name, e)
	e.assignment, e.assignRev = holdAssignment(a, e.w), rev
	c.indexLocked(name, e)
}

func (c *Cache) indexLocked(name string, e *workload) {
	id := e.assignment.GetNodeId()
	name = e.name(name)
	if id == "" {
		c.unplaced[name] = struct{}{}
		return
	}
	set := c.byNode[id]
	if set == nil {
		set = map[string]struct{}{}
		c.byNode[id] = set
	}
	set[name] = struct{}{}
}

func (c *Cache) unindexLocked(name string, e *workload) {
	// The assignment is about to change or go: what the nodes it names
	// report of name may be orphans after it.
	c.markSuspectsLocked(name, e)
	id := e.assignment.GetNodeId()
	if id == "" {
		delete(c.unplaced, name)
		return
	}
	if set := c.byNode[id]; set != nil {
		delete(set, name)
		if len(set) == 0 {
			delete(c.byNode, id)
		}
	}
}

// assignedLocked lists the workloads assigned to node id.
func (c *Cache) assignedLocked(id string) []string {
	set := c.byNode[id]
	names := make([]string, 0, len(set))
	for name := range set {
		names = append(names, name)
	}
	return names
}

// stateCountsLocked returns a copy of the counts.
func (c *Cache) stateCountsLocked() map[persysv1.ActualState]int {
	out := make(map[persysv1.ActualState]int, len(c.counts))
	for k, v := range c.counts {
		out[k] = v
	}
	return out
}

// IndexDrift compares the by-node index with a walk over the cache and
// describes the first difference ("" when they agree). Tests call it when
// a scheduler stops.
func (c *Cache) IndexDrift() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.indexDriftLocked()
}

func (c *Cache) indexDriftLocked() string {
	walk := map[string]map[string]struct{}{}
	unplaced := map[string]struct{}{}
	for name, e := range c.workloads {
		if id := e.assignment.GetNodeId(); id != "" {
			if walk[id] == nil {
				walk[id] = map[string]struct{}{}
			}
			walk[id][name] = struct{}{}
		} else {
			unplaced[name] = struct{}{}
		}
	}
	if !maps.Equal(unplaced, c.unplaced) {
		return fmt.Sprintf("unplaced: index %v, cache %v", slices.Sorted(maps.Keys(c.unplaced)), slices.Sorted(maps.Keys(unplaced)))
	}
	for _, id := range slices.Sorted(maps.Keys(walk)) {
		if !maps.Equal(walk[id], c.byNode[id]) {
			return fmt.Sprintf("node %s: index %v, cache %v", id, slices.Sorted(maps.Keys(c.byNode[id])), slices.Sorted(maps.Keys(walk[id])))
		}
	}
	for id, set := range c.byNode {
		if walk[id] == nil {
			return fmt.Sprintf("node %s: index %v, cache none", id, slices.Sorted(maps.Keys(set)))
		}
	}
	return ""
}
