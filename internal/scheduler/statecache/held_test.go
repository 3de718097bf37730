package statecache

import (
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
