package statecache

import (
	"slices"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	persysv1 "github.com/persys-dev/compute/api/persys/v1"
)

// A status the cache holds encoded reads back whole, as copies: a caller
// changing one changes nothing held.
func TestHeldStatusReadsBackWhole(t *testing.T) {
	c := New(Config{MaxAttempts: 3})
	c.WorkloadWritten(workloadNamed("web", "u1", 10), 2)
	st := &persysv1.WorkloadStatus{Name: "web", Uid: "u1", State: persysv1.ActualState_ACTUAL_STATE_FAILED,
		Reason: persysv1.FailureReason_FAILURE_REASON_IMAGE_PULL_FAILED, Message: "pull failed", NodeId: "n1", Revision: 1,
		UpdatedAt: timestamppb.New(time.Unix(1_800_000_000, 0)), RuntimeId: "r1", Attempts: 3, Addresses: []string{"10.0.0.2"},
		Details: map[string]string{"pid": "7"}, Ready: true, Health: persysv1.HealthState_HEALTH_STATE_HEALTHY}
	if !c.StatusWritten("web", st, 3) {
		t.Error("the final FAILED status did not give the node back")
	}
	got, _ := c.Status("web")
	if !proto.Equal(got, st) {
		t.Fatalf("status %v, want %v", got, st)
	}
	got.Message = "changed by a caller"
	if on := c.StatusOn("web", "n1"); !proto.Equal(on, st) {
		t.Fatalf("status on n1 %v, want %v", on, st)
	}
	if c.StatusOn("web", "n2") != nil {
		t.Error("a status on n1 read as one on n2")
	}
	if v := c.WorkloadView("web"); !proto.Equal(v.GetStatus(), st) {
		t.Fatalf("view's status %v, want %v", v.GetStatus(), st)
	}
	if by, _, _ := c.Stats(); by[persysv1.ActualState_ACTUAL_STATE_FAILED] != 1 {
		t.Fatalf("counts %v, want web FAILED", by)
	}
}

// An assignment the cache holds encoded reads back whole, dynamic ports
// included, and indexes its node.
func TestHeldAssignmentReadsBackWhole(t *testing.T) {
	c := New(Config{})
	c.WorkloadWritten(workloadNamed("web", "u1", 10), 2)
	a := &persysv1.Assignment{Name: "web", Uid: "u1", NodeId: "n2", Revision: 1, PreviousNodeId: "n1", Cause: "drain",
		PlacedAt: timestamppb.New(time.Unix(1_800_000_000, 0)), DynamicHostPorts: []uint32{30001},
		PreviousDynamicHostPorts: []uint32{30000}, Decision: &persysv1.PlacementDecision{NodeId: "n2", Score: 0.5, TotalNodes: 2}}
	c.AssignmentChanged("web", a, 3, false)
	r, _ := c.Read("web")
	if !proto.Equal(r.Assignment.Proto(), a) {
		t.Fatalf("assignment %v, want %v", r.Assignment.Proto(), a)
	}
	// Read without decoding, as a reconcile does.
	if r.Assignment.GetNodeId() != "n2" || r.Assignment.GetPreviousNodeId() != "n1" ||
		!slices.Equal(r.Assignment.GetDynamicHostPorts(), []uint32{30001}) {
		t.Fatalf("held assignment reads node %q, previous %q, ports %v", r.Assignment.GetNodeId(),
			r.Assignment.GetPreviousNodeId(), r.Assignment.GetDynamicHostPorts())
	}
	// A decoded copy is the caller's.
	r.Assignment.Proto().NodeId = "n9"
	if r.Assignment.GetNodeId() != "n2" || r.Assignment.Proto().GetNodeId() != "n2" {
		t.Fatal("changing a decoded copy changed the held assignment")
	}
	e := c.workloads["web"]
	if got := e.assignment.GetDynamicHostPorts(); len(got) != 1 || got[0] != 30001 {
		t.Errorf("dynamic ports %v, want [30001]", got)
	}
	if got := e.assignment.GetPreviousDynamicHostPorts(); len(got) != 1 || got[0] != 30000 {
		t.Errorf("previous dynamic ports %v, want [30000]", got)
	}
	if v := c.WorkloadView("web"); !proto.Equal(v.GetAssignment(), a) {
		t.Fatalf("view's assignment %v, want %v", v.GetAssignment(), a)
	}
	if got := c.AssignedTo("n2"); len(got) != 1 {
		t.Fatalf("n2 holds %v, want web", got)
	}
}

// The retry state is kept only while some of it is set: a workload whose
// attempts were forgotten and that nothing blocks carries none.
func TestRetryStateGoesWhenZero(t *testing.T) {
	c := New(Config{})
	c.WorkloadWritten(workloadNamed("web", "u1", 10), 2)
	c.Read("web")
	if n, _, _ := c.BeginAttempt("web"); n != 1 {
		t.Fatalf("attempt %d, want 1", n)
	}
	c.NoteFailure("web", persysv1.FailureReason_FAILURE_REASON_IMAGE_PULL_FAILED, "pull")
	c.SetMoveBlocked("web", "no room")
	if r, _ := c.Read("web"); r.Attempts != 1 || r.LastMessage != "pull" || r.MoveBlocked != "no room" {
		t.Fatalf("reading %+v", r)
	}
	if !c.ResetAttempts("web") {
		t.Error("the stored retry record was not reported")
	}
	if c.workloads["web"].x == nil {
		t.Fatal("the retry state went while a drain note remained")
	}
	c.SetMoveBlocked("web", "")
	if x := c.workloads["web"].x; x != nil {
		t.Fatalf("retry state %+v kept when all zero", *x)
	}
	if r, _ := c.Read("web"); r.Attempts != 0 || r.LastMessage != "" || r.MoveBlocked != "" {
		t.Fatalf("reading %+v after the reset", r)
	}
}

// A status and an assignment leave out the name and uid of their
// workload, and keep them when the watch brings a new workload of that
// name (another uid) over them.
func TestHeldNameAndUIDFollowTheWorkload(t *testing.T) {
	c := New(Config{})
	c.WorkloadWritten(workloadNamed("web", "u1", 10), 2)
	st := &persysv1.WorkloadStatus{Name: "web", Uid: "u1", State: persysv1.ActualState_ACTUAL_STATE_RUNNING, NodeId: "n1", Revision: 1}
	a := &persysv1.Assignment{Name: "web", Uid: "u1", NodeId: "n1", Revision: 1}
	c.StatusWritten("web", st, 3)
	c.AssignmentChanged("web", a, 4, false)
	e := c.workloads["web"]
	if len(e.status.raw) >= proto.Size(st) || len(e.assignment.raw) >= proto.Size(a) {
		t.Fatalf("encodings of %d and %d bytes kept the workload's name and uid", len(e.status.raw), len(e.assignment.raw))
	}
	c.WorkloadChanged("web", workloadNamed("web", "u2", 10), 5, false)
	got, _ := c.Status("web")
	r, _ := c.Read("web")
	if !proto.Equal(got, st) || !proto.Equal(r.Assignment.Proto(), a) {
		t.Fatalf("after a new uid: status %v, assignment %v; want the old ones %v, %v", got, r.Assignment.Proto(), st, a)
	}
	other := &persysv1.WorkloadStatus{Name: "web", Uid: "u3", State: persysv1.ActualState_ACTUAL_STATE_FAILED}
	c.StatusWritten("web", other, 6)
	if got, _ := c.Status("web"); !proto.Equal(got, other) {
		t.Fatalf("status %v, want %v", got, other)
	}
}

// StatusBefore decodes the status held only when st keeps its state and
// reason; otherwise it gives what tells them apart.
func TestStatusBefore(t *testing.T) {
	c := New(Config{MaxAttempts: 3})
	c.WorkloadWritten(workloadNamed("web", "u1", 10), 2)
	if prev, ok := c.StatusBefore("web", &persysv1.WorkloadStatus{State: persysv1.ActualState_ACTUAL_STATE_RUNNING}); !ok || prev != nil {
		t.Fatalf("no status held: %v, %v; want nil, true", prev, ok)
	}
	held := &persysv1.WorkloadStatus{Name: "web", Uid: "u1", State: persysv1.ActualState_ACTUAL_STATE_RUNNING,
		Message: "running", NodeId: "n1", Revision: 1, Attempts: 1, RuntimeId: "c-1", Ready: true}
	c.StatusWritten("web", held, 3)

	failed := &persysv1.WorkloadStatus{Name: "web", Uid: "u1", State: persysv1.ActualState_ACTUAL_STATE_FAILED,
		Reason: persysv1.FailureReason_FAILURE_REASON_CONTAINER_EXITED, NodeId: "n1", Revision: 1}
	prev, ok := c.StatusBefore("web", failed)
	want := &persysv1.WorkloadStatus{State: held.State, Attempts: 1, NodeId: "n1", Revision: 1}
	if !ok || !proto.Equal(prev, want) {
		t.Fatalf("before a new state: %v, want only %v", prev, want)
	}
	same := proto.CloneOf(held)
	same.Ready = false
	if prev, ok := c.StatusBefore("web", same); !ok || !proto.Equal(prev, held) {
		t.Fatalf("before the same state: %v, want the whole %v", prev, held)
	}
	if _, ok := c.StatusBefore("gone", failed); ok {
		t.Fatal("found a workload never cached")
	}
}

// HoldsAt says which puts a watch may skip: those at or below the
// revision of the key the cache holds.
func TestHoldsAt(t *testing.T) {
	c := New(Config{MaxAttempts: 3})
	if c.HoldsAt("web", KeySpec, 1) {
		t.Fatal("holds a workload never cached")
	}
	c.WorkloadWritten(workloadNamed("web", "u1", 10), 5)
	c.AssignmentChanged("web", &persysv1.Assignment{Name: "web", Uid: "u1", NodeId: "n1", Revision: 1}, 7, false)
	c.StatusChanged("web", &persysv1.WorkloadStatus{Name: "web", Uid: "u1", State: persysv1.ActualState_ACTUAL_STATE_RUNNING}, 8, false)
	for _, tc := range []struct {
		key  WorkloadKey
		rev  int64
		want bool
	}{
		{KeySpec, 4, true}, {KeySpec, 5, true}, {KeySpec, 6, false},
		{KeyAssignment, 7, true}, {KeyAssignment, 8, false},
		{KeyStatus, 8, true}, {KeyStatus, 9, false},
	} {
		if got := c.HoldsAt("web", tc.key, tc.rev); got != tc.want {
			t.Errorf("HoldsAt(web, %d, %d) = %v, want %v", tc.key, tc.rev, got, tc.want)
		}
	}
}
