package scheduler_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	persysv1 "github.com/persys-dev/compute/api/persys/v1"
	"github.com/persys-dev/compute/internal/model"
	"github.com/persys-dev/compute/internal/runtime/sim"
	"github.com/persys-dev/compute/internal/scheduler"
	"github.com/persys-dev/compute/internal/testutil/eventually"
	"github.com/persys-dev/compute/internal/testutil/realsched"
)

// TestLostStartIsAppliedAgain: a node that reports a revision CREATING
// for longer than the apply timeout (its start was lost half-way, as when
// the agent died between create and start) gets the revision again, with
// an ApplyResent event, and the workload runs; without the deadline it
// would stay CREATING for ever.
func TestLostStartIsAppliedAgain(t *testing.T) {
	c := realsched.Start(t, realsched.Options{Nodes: []string{"n1"}, Config: func(cfg *scheduler.Config) {
		cfg.ApplyTimeout = 2 * time.Second
	}})
	c.StartAgent(t, "n1", sim.Options{LoseStartImages: []string{"lost:1"}})
	admin := c.Admin(t)
	ctx := context.Background()
	_, err := admin.ApplyWorkload(ctx, &persysv1.ApplyRequest{Name: "lost", Spec: &persysv1.WorkloadSpec{
		Type:      persysv1.WorkloadType_WORKLOAD_TYPE_CONTAINER,
		Container: &persysv1.ContainerSpec{Image: "lost:1"},
		Resources: &persysv1.Resources{CpuMillis: 100, MemoryBytes: 16 << 20},
	}})
	if err != nil {
		t.Fatal(err)
	}
	eventually.Eventually(t, "the lost start applied again and running", 30*time.Second, func() (bool, string) {
		v, err := admin.GetWorkload(ctx, &persysv1.GetWorkloadRequest{Name: "lost", WithEvents: true})
		if err != nil {
			return false, err.Error()
		}
		resent := false
		for _, e := range v.GetEvents() {
			if e.GetType() == string(model.EventApplyResent) {
				resent = true
			}
		}
		st := v.GetStatus().GetState()
		return st == persysv1.ActualState_ACTUAL_STATE_RUNNING && resent, "state " + st.String()
	})
}

// TestStableWorkloadFailureIsCounted: a workload that ran long enough for
// its attempts to be forgotten, then fails, is told (an AttemptFailed
// event with its reason) and counted before it runs again, never
// restarted in silence.
func TestStableWorkloadFailureIsCounted(t *testing.T) {
	c := realsched.Start(t, realsched.Options{Nodes: []string{"n1"}, Config: func(cfg *scheduler.Config) {
		cfg.StableAfter = 100 * time.Millisecond
	}})
	rt := c.StartAgent(t, "n1", sim.Options{})
	admin := c.Admin(t)
	ctx := context.Background()
	_, err := admin.ApplyWorkload(ctx, &persysv1.ApplyRequest{Name: "steady", Spec: &persysv1.WorkloadSpec{
		Type:      persysv1.WorkloadType_WORKLOAD_TYPE_CONTAINER,
		Container: &persysv1.ContainerSpec{Image: "steady:1"},
		Resources: &persysv1.Resources{CpuMillis: 100, MemoryBytes: 16 << 20},
	}})
	if err != nil {
		t.Fatal(err)
	}
	view := func() *persysv1.WorkloadView {
		v, err := admin.GetWorkload(ctx, &persysv1.GetWorkloadRequest{Name: "steady", WithEvents: true})
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	eventually.Eventually(t, "steady running with its attempts forgotten", 30*time.Second, func() (bool, string) {
		st := view().GetStatus()
		return st.GetState() == persysv1.ActualState_ACTUAL_STATE_RUNNING && st.GetAttempts() == 0, st.String()
	})
	time.Sleep(2 * time.Second) // well past StableAfter: the attempts are forgotten
	t.Cleanup(func() {
		if t.Failed() {
			t.Log(c.Logs())
		}
	})
	rt.Kill("steady")
	eventually.Eventually(t, "the failure counted and steady running again", 30*time.Second, func() (bool, string) {
		v := view()
		counted := false
		for _, e := range v.GetEvents() {
			if e.GetType() == string(model.EventAttemptFailed) && e.GetReason() == persysv1.FailureReason_FAILURE_REASON_CONTAINER_EXITED {
				counted = true
			}
		}
		st := v.GetStatus()
		return counted && st.GetState() == persysv1.ActualState_ACTUAL_STATE_RUNNING, fmt.Sprintf("status %v; events %v", st, v.GetEvents())
	})
}
