package scheduler

import (
	"testing"

	persysv1 "github.com/persys-dev/compute/api/persys/v1"
)

// The counts follow every kind of change to the cache and agree with a
// walk over it.
func TestStateCountsFollowTheCache(t *testing.T) {
	s := &Scheduler{workloads: map[string]*workloadEntry{}, counts: stateCounts{}}
	running := &persysv1.WorkloadStatus{State: persysv1.ActualState_ACTUAL_STATE_RUNNING}
	failed := &persysv1.WorkloadStatus{State: persysv1.ActualState_ACTUAL_STATE_FAILED}

	s.putWorkloadLocked("a", &workloadEntry{})
	s.putWorkloadLocked("b", &workloadEntry{status: running})
	s.putWorkloadLocked("c", &workloadEntry{})
	s.setStatusLocked(s.workloads["a"], running, 2)
	s.setStatusLocked(s.workloads["c"], failed, 3)
	s.putWorkloadLocked("b", &workloadEntry{}) // replaced: PENDING again
	s.resetEntryLocked(s.workloads["c"])       // a new workload of the same name
	s.setStatusLocked(s.workloads["c"], failed, 4)
	s.dropWorkloadLocked("a")
	s.dropWorkloadLocked("missing")

	walk := map[persysv1.ActualState]int{}
	for _, e := range s.workloads {
		walk[observedState(e.status)]++
	}
	got := s.stateCountsLocked()
	if len(got) != len(walk) {
		t.Fatalf("counts %v, walk %v", got, walk)
	}
	for k, v := range walk {
		if got[k] != v {
			t.Fatalf("counts %v, walk %v", got, walk)
		}
	}
	if got[persysv1.ActualState_ACTUAL_STATE_PENDING] != 1 || got[persysv1.ActualState_ACTUAL_STATE_FAILED] != 1 {
		t.Fatalf("counts %v: want 1 PENDING (b) and 1 FAILED (c)", got)
	}
}
