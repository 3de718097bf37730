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
func (s *Scheduler) putWorkloadLocked(name string, e *workloadEntry) {
	if old := s.workloads[name]; old != nil {
		s.counts.add(old.status, -1)
	}
	s.workloads[name] = e
	s.counts.add(e.status, 1)
}

// dropWorkloadLocked removes the cache entry of name. Callers hold mu.
func (s *Scheduler) dropWorkloadLocked(name string) {
	if old := s.workloads[name]; old != nil {
		s.counts.add(old.status, -1)
		delete(s.workloads, name)
	}
}

// setStatusLocked replaces the cached status of e, an entry of the cache.
// Callers hold mu.
func (s *Scheduler) setStatusLocked(e *workloadEntry, st *persysv1.WorkloadStatus, rev int64) {
	s.counts.add(e.status, -1)
	e.status, e.statusRev = st, rev
	s.counts.add(st, 1)
}

// resetEntryLocked empties e, an entry of the cache, for a new workload of
// the same name. Callers hold mu.
func (s *Scheduler) resetEntryLocked(e *workloadEntry) {
	s.counts.add(e.status, -1)
	*e = workloadEntry{}
	s.counts.add(nil, 1)
}

// stateCountsLocked returns a copy of the counts. Callers hold mu.
func (s *Scheduler) stateCountsLocked() map[persysv1.ActualState]int {
	out := make(map[persysv1.ActualState]int, len(s.counts))
	for k, v := range s.counts {
		out[k] = v
	}
	return out
}
