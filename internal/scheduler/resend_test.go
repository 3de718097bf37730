package scheduler_test

import (
	"context"
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
