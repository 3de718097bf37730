package scheduler_test

import (
	"context"
	"fmt"
	"net"
	"slices"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	persysv1 "github.com/persys-dev/compute/api/persys/v1"
	"github.com/persys-dev/compute/api/persys/v1/persysv1grpc"
	"github.com/persys-dev/compute/internal/agent"
	"github.com/persys-dev/compute/internal/hostaccess"
	"github.com/persys-dev/compute/internal/model"
	"github.com/persys-dev/compute/internal/runtime/sim"
	"github.com/persys-dev/compute/internal/testutil/eventually"
	"github.com/persys-dev/compute/internal/testutil/freeport"
	"github.com/persys-dev/compute/internal/testutil/images"
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
	spec := dynSpec
	apply := func(name string, dynamic int) {
		t.Helper()
		if _, err := admin.ApplyWorkload(ctx, &persysv1.ApplyRequest{Name: name, Spec: spec(dynamic)}); err != nil {
			t.Fatal(err)
		}
	}
	waitPorts := func(name string, want ...uint32) { t.Helper(); waitDynamicPorts(t, admin, name, "", want...) }

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

	// A placed workload keeps its number of dynamic ports.
	_, err := admin.ApplyWorkload(ctx, &persysv1.ApplyRequest{Name: "b", Spec: spec(2)})
	if status.Code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), "spec.container.ports:") {
		t.Fatalf("b with two dynamic ports: %v, want InvalidArgument naming spec.container.ports", err)
	}

	if _, err := admin.DeleteWorkload(ctx, &persysv1.DeleteRequest{Name: "a"}); err != nil {
		t.Fatal(err)
	}
	waitPorts("c", 20000, 20002)
	waitPorts("b", 20001)
}

// TestDynamicPortsMove: a drain moves a workload to a node where it gets
// its own dynamic port, and the old node's port is free again once the
// move ended.
func TestDynamicPortsMove(t *testing.T) {
	c := realsched.Start(t, realsched.Options{Nodes: []string{"n1", "n2"}})
	for _, id := range []string{"n1", "n2"} {
		c.StartAgentConfig(t, id, sim.Options{}, func(cfg *agent.Config) {
			cfg.DynamicPorts = hostaccess.PortRange{First: 20000, Last: 20000}
			cfg.SkipHostPortScan = true
		})
	}
	admin := c.Admin(t)
	ctx := context.Background()
	on := func(name, node string) {
		t.Helper()
		s := dynSpec(1)
		s.NodeSelector = map[string]string{"node": node}
		if _, err := admin.ApplyWorkload(ctx, &persysv1.ApplyRequest{Name: name, Spec: s}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := admin.ApplyWorkload(ctx, &persysv1.ApplyRequest{Name: "a", Spec: dynSpec(1)}); err != nil {
		t.Fatal(err)
	}
	waitDynamicPorts(t, admin, "a", "", 20000)
	v, err := admin.GetWorkload(ctx, &persysv1.GetWorkloadRequest{Name: "a"})
	if err != nil {
		t.Fatal(err)
	}
	from, to := v.GetAssignment().GetNodeId(), "n1"
	if from == "n1" {
		to = "n2"
	}
	resp, err := admin.DrainNode(ctx, &persysv1.DrainRequest{Id: from, TimeoutSeconds: 30})
	if err != nil {
		t.Fatal(err)
	}
	if r := resp.GetWorkloads(); len(r) != 1 || r[0].GetResult() != "moved" || r[0].GetToNode() != to {
		t.Fatalf("drain results %v, want a moved to %s", r, to)
	}
	waitDynamicPorts(t, admin, "a", to, 20000)
	if _, err := admin.UncordonNode(ctx, &persysv1.CordonRequest{Id: from}); err != nil {
		t.Fatal(err)
	}
	on("b", from)
	waitDynamicPorts(t, admin, "b", from, 20000)
}

// waitDynamicPorts waits until name runs (on node, unless "") with these
// dynamic host ports and no previous node.
func waitDynamicPorts(t *testing.T, admin persysv1grpc.ControlServiceClient, name, node string, want ...uint32) {
	t.Helper()
	eventually.Eventually(t, fmt.Sprintf("%s running with ports %v", name, want), 30*time.Second, func() (bool, string) {
		v, err := admin.GetWorkload(context.Background(), &persysv1.GetWorkloadRequest{Name: name})
		if err != nil {
			return false, err.Error()
		}
		a := v.GetAssignment()
		st := v.GetStatus().GetState()
		return st == persysv1.ActualState_ACTUAL_STATE_RUNNING && slices.Equal(a.GetDynamicHostPorts(), want) &&
				(node == "" || a.GetNodeId() == node) && a.GetPreviousNodeId() == "",
			fmt.Sprintf("state %s on %s (previous %q) ports %v", st, a.GetNodeId(), a.GetPreviousNodeId(), a.GetDynamicHostPorts())
	})
}

// dynSpec is a container asking for dynamic host ports.
func dynSpec(dynamic int) *persysv1.WorkloadSpec {
	ct := &persysv1.ContainerSpec{Image: "web:1"}
	for i := range dynamic {
		ct.Ports = append(ct.Ports, &persysv1.PortMapping{ContainerPort: uint32(8080 + i), Protocol: "tcp", Dynamic: true})
	}
	return &persysv1.WorkloadSpec{Type: persysv1.WorkloadType_WORKLOAD_TYPE_CONTAINER, Container: ct,
		Resources: &persysv1.Resources{CpuMillis: 100, MemoryBytes: 16 << 20}}
}

// TestDynamicPortTakenOutside: on the real Docker agent, the dynamic port
// the scheduler gives first is held by a listener outside Persys that the
// node's report does not list (as one bound after the last report, or an
// outgoing connection, would be). The start fails PORT_CONFLICT once; the
// next attempt gets another port of the range and runs, and the taken
// port stays out of the node's range for the next workload too.
func TestDynamicPortTakenOutside(t *testing.T) {
	cli, img := images.HelloImage(t)
	node := "dp-" + randomHex(4)
	c := realsched.Start(t, realsched.Options{Nodes: []string{node}, NoSecrets: true})
	taken := uint32(freeport.Port(t, ""))
	ln, err := net.Listen("tcp", fmt.Sprintf(":%d", taken))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = ln.Close() })
	c.StartDockerAgentConfig(t, node, cli, func(cfg *agent.Config) {
		// The lowest port, which the scheduler gives first, is the taken one.
		cfg.DynamicPorts = hostaccess.PortRange{First: taken, Last: taken + 3}
		cfg.SkipHostPortScan = true
	})
	admin := c.Admin(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	spec := func() *persysv1.WorkloadSpec {
		s := dynSpec(1)
		s.Container.Image = img
		return s
	}
	if _, err := admin.ApplyWorkload(ctx, &persysv1.ApplyRequest{Name: "web", Spec: spec()}); err != nil {
		t.Fatal(err)
	}
	port := waitRunningNotOn(t, admin, "web", taken)

	evs, err := admin.ListEvents(ctx, &persysv1.ListEventsRequest{Workload: "web", Type: string(model.EventAttemptFailed)})
	if err != nil {
		t.Fatal(err)
	}
	if len(evs.GetEvents()) != 1 || evs.GetEvents()[0].GetReason() != persysv1.FailureReason_FAILURE_REASON_PORT_CONFLICT ||
		!strings.Contains(evs.GetEvents()[0].GetMessage(), fmt.Sprintf("host ports [%d] are taken on %s", taken, node)) {
		t.Fatalf("failed attempts of web: %v; want one PORT_CONFLICT naming port %d and the new one", evs.GetEvents(), taken)
	}

	if _, err := admin.ApplyWorkload(ctx, &persysv1.ApplyRequest{Name: "web2", Spec: spec()}); err != nil {
		t.Fatal(err)
	}
	if p := waitRunningNotOn(t, admin, "web2", taken); p == port {
		t.Fatalf("web2 runs on port %d, which web holds", p)
	}
	evs, err = admin.ListEvents(ctx, &persysv1.ListEventsRequest{Workload: "web2", Type: string(model.EventAttemptFailed)})
	if err != nil || len(evs.GetEvents()) != 0 {
		t.Fatalf("failed attempts of web2: %v, %v; want none (port %d is blocked on %s)", evs.GetEvents(), err, taken, node)
	}
}

// waitRunningNotOn waits until name runs with one dynamic host port that
// is not taken, and returns it.
func waitRunningNotOn(t *testing.T, admin persysv1grpc.ControlServiceClient, name string, taken uint32) uint32 {
	t.Helper()
	var port uint32
	eventually.Eventually(t, name+" running on another port than "+fmt.Sprint(taken), 2*time.Minute, func() (bool, string) {
		v, err := admin.GetWorkload(context.Background(), &persysv1.GetWorkloadRequest{Name: name})
		if err != nil {
			return false, err.Error()
		}
		st, ports := v.GetStatus(), v.GetAssignment().GetDynamicHostPorts()
		if st.GetState() == persysv1.ActualState_ACTUAL_STATE_RUNNING && len(ports) == 1 && ports[0] != taken {
			port = ports[0]
			return true, ""
		}
		return false, fmt.Sprintf("state %s %s %q, ports %v", st.GetState(), st.GetReason(), st.GetMessage(), ports)
	})
	return port
}
