package statecache

import (
	"testing"

	persysv1 "github.com/persys-dev/compute/api/persys/v1"
)

// The counts follow every kind of change to the cache and agree with a
// walk over it.
func TestStateCountsFollowTheCache(t *testing.T) {
	s := New(Config{})
	running := &persysv1.WorkloadStatus{State: persysv1.ActualState_ACTUAL_STATE_RUNNING}
	failed := &persysv1.WorkloadStatus{State: persysv1.ActualState_ACTUAL_STATE_FAILED}

	s.putWorkloadLocked("a", &workload{})
	s.putWorkloadLocked("b", &workload{status: holdStatus(running, nil)})
	s.putWorkloadLocked("c", &workload{})
	s.setStatusLocked(s.workloads["a"], running, 2)
	s.setStatusLocked(s.workloads["c"], failed, 3)
	s.putWorkloadLocked("b", &workload{})     // replaced: PENDING again
	s.resetEntryLocked("c", s.workloads["c"]) // a new workload of the same name
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

// The node index follows every kind of change to the cache and agrees
// with a walk over it.
func TestNodeIndexFollowsTheCache(t *testing.T) {
	s := New(Config{})
	on := func(node string) *persysv1.Assignment { return &persysv1.Assignment{NodeId: node} }
	held := func(node string) *heldAssignment { return holdAssignment(on(node), nil) }
	check := func(step string) {
		t.Helper()
		if d := s.indexDriftLocked(); d != "" {
			t.Fatalf("after %s: %s", step, d)
		}
	}
	s.putWorkloadLocked("a", &workload{assignment: held("n1")})
	s.putWorkloadLocked("b", &workload{})
	s.putWorkloadLocked("c", &workload{assignment: held("n1")})
	check("put")
	s.setAssignmentLocked("b", s.workloads["b"], on("n2"), 2)
	s.setAssignmentLocked("a", s.workloads["a"], on("n2"), 3) // moved
	check("assign")
	s.putWorkloadLocked("c", &workload{assignment: held("n3")}) // replaced
	s.resetEntryLocked("b", s.workloads["b"])
	s.setAssignmentLocked("a", s.workloads["a"], nil, 0) // unassigned
	check("replace, reset, unassign")
	s.dropWorkloadLocked("c")
	check("drop")
	if got := s.assignedLocked("n3"); len(got) != 0 {
		t.Fatalf("n3 holds %v after its only workload was dropped", got)
	}
	s.setAssignmentLocked("a", s.workloads["a"], on("n1"), 4)
	s.setAssignmentLocked("b", s.workloads["b"], on("n1"), 5)
	if got := s.assignedLocked("n1"); len(got) != 2 {
		t.Fatalf("n1 holds %v, want a and b", got)
	}
	if len(s.byNode) != 1 {
		t.Fatalf("index %v: empty nodes must go", s.byNode)
	}
}
