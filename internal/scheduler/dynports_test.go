package scheduler_test

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	persysv1 "github.com/persys-dev/compute/api/persys/v1"
	"github.com/persys-dev/compute/internal/agent"
	"github.com/persys-dev/compute/internal/hostaccess"
	"github.com/persys-dev/compute/internal/runtime/sim"
	"github.com/persys-dev/compute/internal/testutil/eventually"
	"github.com/persys-dev/compute/internal/testutil/realsched"
)

// TestDynamicPorts: on a node whose range has three ports, two workloads
// that each ask for one dynamic port share the node with distinct ports;
// a third that asks for two waits with PORT_CONFLICT, and takes the
// lowest free ones once a delete gives a port back.
func TestDynamicPorts(t *testing.T) {
	c := realsched.Start(t, realsched.Options{Nodes: []string{"n1"}})
	c.StartAgentConfig(t, "n1", sim.Options{}, func(cfg *agent.Config) {
		cfg.DynamicPorts = hostaccess.PortRange{First: 20000, Last: 20002}
		// The test host's own sockets are no concern of this node.
		cfg.SkipHostPortScan = true
	})
	admin := c.Admin(t)
	ctx := context.Background()
	spec := func(dynamic int) *persysv1.WorkloadSpec {
		ct := &persysv1.ContainerSpec{Image: "web:1"}
		for i := range dynamic {
			ct.Ports = append(ct.Ports, &persysv1.PortMapping{ContainerPort: uint32(8080 + i), Protocol: "tcp", Dynamic: true})
		}
		return &persysv1.WorkloadSpec{Type: persysv1.WorkloadType_WORKLOAD_TYPE_CONTAINER, Container: ct,
			Resources: &persysv1.Resources{CpuMillis: 100, MemoryBytes: 16 << 20}}
	}
	apply := func(name string, dynamic int) {
		t.Helper()
		if _, err := admin.ApplyWorkload(ctx, &persysv1.ApplyRequest{Name: name, Spec: spec(dynamic)}); err != nil {
			t.Fatal(err)
		}
	}
	// waitPorts waits until name runs with these dynamic host ports.
	waitPorts := func(name string, want ...uint32) {
		t.Helper()
		eventually.Eventually(t, fmt.Sprintf("%s running with ports %v", name, want), 30*time.Second, func() (bool, string) {
			v, err := admin.GetWorkload(ctx, &persysv1.GetWorkloadRequest{Name: name})
			if err != nil {
				return false, err.Error()
			}
			got := v.GetAssignment().GetDynamicHostPorts()
			st := v.GetStatus().GetState()
			return st == persysv1.ActualState_ACTUAL_STATE_RUNNING && slices.Equal(got, want),
				fmt.Sprintf("state %s ports %v", st, got)
		})
	}

	apply("a", 1)
	waitPorts("a", 20000)
	apply("b", 1)
	waitPorts("b", 20001)

	apply("c", 2)
	eventually.Eventually(t, "c pending with PORT_CONFLICT", 30*time.Second, func() (bool, string) {
		v, err := admin.GetWorkload(ctx, &persysv1.GetWorkloadRequest{Name: "c"})
		if err != nil {
			return false, err.Error()
		}
		st := v.GetStatus()
		return st.GetState() == persysv1.ActualState_ACTUAL_STATE_PENDING &&
				st.GetReason() == persysv1.FailureReason_FAILURE_REASON_PORT_CONFLICT,
			st.GetState().String() + " " + st.GetReason().String() + ": " + st.GetMessage()
	})

	if _, err := admin.DeleteWorkload(ctx, &persysv1.DeleteRequest{Name: "a"}); err != nil {
		t.Fatal(err)
	}
	waitPorts("c", 20000, 20002)
	waitPorts("b", 20001)
}
