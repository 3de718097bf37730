package scheduler_test

import (
	"fmt"
	"net"
	goruntime "runtime"
	"slices"
	"strings"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	persysv1 "github.com/persys-dev/compute/api/persys/v1"
	"github.com/persys-dev/compute/internal/pki"
	"github.com/persys-dev/compute/internal/runtime/sim"
	"github.com/persys-dev/compute/internal/store/storetest"
	"github.com/persys-dev/compute/internal/testutil/freeport"
)

// portSpec is a sim container publishing host port port.
func portSpec(port uint32) *persysv1.WorkloadSpec {
	return &persysv1.WorkloadSpec{
		Type:         persysv1.WorkloadType_WORKLOAD_TYPE_CONTAINER,
		DesiredState: persysv1.DesiredState_DESIRED_STATE_RUNNING,
		Resources:    &persysv1.Resources{CpuMillis: 100, MemoryBytes: 64 * mib},
		Container: &persysv1.ContainerSpec{Image: "app:1", RestartPolicy: "on-failure",
			Ports: []*persysv1.PortMapping{{ContainerPort: 80, HostPort: port, Protocol: "tcp"}}},
	}
}

// TestHostPortsHeldOnTheirNode: a host port is held on the node of the
// workload that publishes it, like its resources: a second workload
// asking for it goes to the other node, a third stays pending with
// PORT_CONFLICT until the port is given back, and a port bound by
// something else on a node (reported by its agent) keeps such a workload
// off that node too.
func TestHostPortsHeldOnTheirNode(t *testing.T) {
	// Bound on this host before node a's agent registers: a real agent
	// reports it.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = ln.Close() })
	hostBound := uint32(ln.Addr().(*net.TCPAddr).Port)
	shared, reported := uint32(freeport.Port(t, "127.0.0.1")), uint32(freeport.Port(t, "127.0.0.1"))

	e := newDigestEnv(t)
	e.registerB()
	e.mustHeartbeatB(0, false, 0)
	e.waitNodeState(e.b, persysv1.NodeState_NODE_STATE_READY)

	w1, w2, w3 := e.name("p1"), e.name("p2"), e.name("p3")
	e.apply(w1, portSpec(shared))
	n1 := e.waitRunning(w1).GetStatus().GetNodeId()
	e.apply(w2, portSpec(shared))
	n2 := e.waitRunning(w2).GetStatus().GetNodeId()
	if n1 == n2 {
		t.Fatalf("%s and %s both publish host port %d and were both placed on %s", w1, w2, shared, n1)
	}

	e.apply(w3, portSpec(shared))
	v := e.waitStatus(w3, persysv1.ActualState_ACTUAL_STATE_PENDING, persysv1.FailureReason_FAILURE_REASON_PORT_CONFLICT)
	d := v.GetAssignment().GetDecision()
	if d.GetNodeId() != "" || len(d.GetRejections()) != 2 {
		t.Fatalf("decision %v, want both nodes rejected", d)
	}
	for _, r := range d.GetRejections() {
		if r.GetReason() != persysv1.RejectReason_REJECT_REASON_PORT_CONFLICT ||
			r.GetDetail() != fmt.Sprintf("spec.container.ports[0].hostPort: port *:%d/tcp is taken", shared) {
			t.Errorf("rejection %v, want PORT_CONFLICT naming the port", r)
		}
	}

	// Deleting w1 gives its port back: w3 takes its place.
	if _, err := e.control.DeleteWorkload(ctxT(t), &persysv1.DeleteRequest{Name: w1}); err != nil {
		t.Fatal(err)
	}
	e.waitRunningOn(w3, n1)

	// Something else binds a port on b: a workload asking for it goes to
	// a, and the decision says why b was ruled out.
	used := &persysv1.HeartbeatRequest{NodeId: e.b, Workloads: e.listB(),
		UsedHostPorts: []*persysv1.HostPort{{Port: reported, Protocol: "tcp"}}}
	if _, err := e.ctlB.Heartbeat(ctxT(t), used); err != nil {
		t.Fatal(err)
	}
	n, err := e.control.GetNode(ctxT(t), &persysv1.GetNodeRequest{Id: e.b})
	if err != nil {
		t.Fatal(err)
	}
	if got := n.GetCapabilities().GetUsedHostPorts(); len(got) != 1 || got[0].GetPort() != reported {
		t.Fatalf("node %s record has used ports %v, want %d", e.b, got, reported)
	}
	w4 := e.name("p4")
	e.apply(w4, portSpec(reported))
	v = e.waitRunningOn(w4, e.a)
	if r := findRejection(v.GetAssignment().GetDecision(), e.b); r.GetReason() != persysv1.RejectReason_REJECT_REASON_PORT_CONFLICT {
		t.Fatalf("rejection of %s = %v, want PORT_CONFLICT", e.b, r)
	}

	// Node a's agent reported the port this test bound on the host (only
	// Linux agents read the host's sockets).
	if goruntime.GOOS != "linux" {
		return
	}
	n, err = e.control.GetNode(ctxT(t), &persysv1.GetNodeRequest{Id: e.a})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.ContainsFunc(n.GetCapabilities().GetUsedHostPorts(), func(p *persysv1.HostPort) bool {
		return p.GetPort() == hostBound && p.GetProtocol() == "tcp"
	}) {
		t.Fatalf("node %s does not report port %d bound on its host: %v", e.a, hostBound, n.GetCapabilities().GetUsedHostPorts())
	}
	w5 := e.name("p5")
	e.apply(w5, portSpec(hostBound))
	v = e.waitRunningOn(w5, e.b)
	if r := findRejection(v.GetAssignment().GetDecision(), e.a); r.GetReason() != persysv1.RejectReason_REJECT_REASON_PORT_CONFLICT {
		t.Fatalf("rejection of %s = %v, want PORT_CONFLICT", e.a, r)
	}
}

// TestFailedWorkloadReleasesItsNode: a workload that failed for good
// (after its last attempt) no longer holds CPU, memory or host ports on
// its node, so the next workload fits.
func TestFailedWorkloadReleasesItsNode(t *testing.T) {
	st, etcd := storetest.New(t)
	run := randomHex(4)
	a := "fl-" + run + "-a"
	bundle, err := pki.Bootstrap(t.TempDir(), []string{a}, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	c := &cluster{t: t, root: t, bundle: bundle, store: st, etcd: etcd, prefix: "fl" + run,
		opts: clusterOptions{config: fastConfig}}
	c.startScheduler("127.0.0.1:0")
	c.schedAddr = c.sched.addr
	c.control = c.adminClient(c.schedAddr)
	e := &digestEnv{cluster: c, a: a}
	e.startSimAgentWith(a, sim.Options{FailImages: map[string]persysv1.FailureReason{
		"broken:1": persysv1.FailureReason_FAILURE_REASON_IMAGE_NOT_FOUND}})

	big := func(image string) *persysv1.WorkloadSpec {
		s := portSpec(18081)
		s.Resources = &persysv1.Resources{CpuMillis: 1500, MemoryBytes: 768 * mib}
		s.Container.Image = image
		return s
	}
	bad, good := e.name("bad"), e.name("good")
	e.apply(bad, big("broken:1"))
	waitFor(t, bad+" to fail for good", waitLong, func() (bool, string) {
		v, err := e.get(bad)
		if err != nil {
			return false, err.Error()
		}
		s := v.GetStatus()
		return s.GetState() == persysv1.ActualState_ACTUAL_STATE_FAILED && strings.HasPrefix(s.GetMessage(), "gave up"),
			fmt.Sprintf("%s/%s attempts %d: %s", s.GetState(), s.GetReason(), s.GetAttempts(), s.GetMessage())
	})
	allocated := func() *persysv1.Resources {
		n, err := e.control.GetNode(ctxT(t), &persysv1.GetNodeRequest{Id: a})
		if err != nil {
			t.Fatal(err)
		}
		return n.GetAllocated()
	}
	if got := allocated(); got.GetCpuMillis() != 0 || got.GetMemoryBytes() != 0 {
		t.Fatalf("node %s allocated %v after %s failed for good, want nothing", a, got, bad)
	}

	// Same CPU, memory and host port: it fits only because bad gave them
	// back.
	e.apply(good, big("app:1"))
	e.waitRunningOn(good, a)
	if got := allocated(); got.GetCpuMillis() != 1500 {
		t.Fatalf("node %s allocated %v with %s running, want its 1500m", a, got, good)
	}
	summary, err := e.control.GetClusterSummary(ctxT(t), &persysv1.ClusterSummaryRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if got := summary.GetAllocated().GetCpuMillis(); got != 1500 {
		t.Errorf("cluster summary allocates %dm, want 1500m", got)
	}
}

// TestNodePolicyRulesPlacement: a node's policy, as its agent registers
// it, decides where a privileged workload may go; a workload no node's
// policy admits stays pending with POLICY_DENIED, and every reason that
// rules a node out reaches the wire (NodeRejection.also).
func TestNodePolicyRulesPlacement(t *testing.T) {
	e := newDigestEnv(t)
	e.registerB()
	e.mustHeartbeatB(0, false, 0)
	e.waitNodeState(e.b, persysv1.NodeState_NODE_STATE_READY)

	priv := func(memory int64) *persysv1.WorkloadSpec {
		s := e.simSpec(e.a)
		s.NodeSelector = nil
		s.Resources.MemoryBytes = memory
		s.Container.Privileged = true
		return s
	}
	small, big := e.name("priv"), e.name("privbig")
	e.apply(small, priv(64*mib))
	e.apply(big, priv(4096*mib))
	v := e.waitStatus(big, persysv1.ActualState_ACTUAL_STATE_PENDING, persysv1.FailureReason_FAILURE_REASON_POLICY_DENIED)
	for _, id := range []string{e.a, e.b} {
		r := findRejection(v.GetAssignment().GetDecision(), id)
		if r.GetReason() != persysv1.RejectReason_REJECT_REASON_POLICY_DENIED ||
			!slices.Equal(r.GetAlso(), []persysv1.RejectReason{persysv1.RejectReason_REJECT_REASON_INSUFFICIENT_MEMORY}) ||
			!strings.HasPrefix(r.GetDetail(), "spec.container.privileged: privileged access (privileged mode, devices, added capabilities or host namespaces) is not allowed") ||
			!strings.HasSuffix(r.GetDetail(), "; also INSUFFICIENT_MEMORY") {
			t.Errorf("rejection of %s = %v, want POLICY_DENIED naming the field, also INSUFFICIENT_MEMORY", id, r)
		}
	}
	e.waitStatus(small, persysv1.ActualState_ACTUAL_STATE_PENDING, persysv1.FailureReason_FAILURE_REASON_POLICY_DENIED)

	// Node b's agent comes back allowing privileged workloads: the small
	// one goes there; the big one still fits nowhere, for a reason the
	// policy no longer explains everywhere.
	_, err := e.ctlB.RegisterNode(ctxT(t), &persysv1.RegisterNodeRequest{
		NodeId: e.b, Address: e.addrB, Workloads: e.listB(),
		Capabilities: &persysv1.NodeCapabilities{
			Capacity: &persysv1.Resources{CpuMillis: 2000, MemoryBytes: 1024 * mib, DiskBytes: 10 * 1024 * mib},
			Labels:   map[string]string{"node": e.b}, Os: goruntime.GOOS, Arch: goruntime.GOARCH,
			Runtimes: []persysv1.WorkloadType{persysv1.WorkloadType_WORKLOAD_TYPE_CONTAINER},
			Policy:   &persysv1.NodePolicy{AllowPrivileged: true},
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	// Placed there; whether it then runs is up to b's agent, which checks
	// its own policy again.
	waitFor(t, small+" to be placed on "+e.b, waitLong, func() (bool, string) {
		v, err := e.get(small)
		if err != nil {
			return false, err.Error()
		}
		return v.GetAssignment().GetNodeId() == e.b, fmt.Sprintf("assignment %v", v.GetAssignment())
	})
	v = e.waitStatus(big, persysv1.ActualState_ACTUAL_STATE_PENDING, persysv1.FailureReason_FAILURE_REASON_NO_FEASIBLE_NODE)
	if r := findRejection(v.GetAssignment().GetDecision(), e.b); r.GetReason() != persysv1.RejectReason_REJECT_REASON_INSUFFICIENT_MEMORY || len(r.GetAlso()) != 0 {
		t.Errorf("rejection of %s = %v, want INSUFFICIENT_MEMORY alone", e.b, r)
	}
}

// TestApplyRefusesOversizedEnv: the scheduler refuses an environment its
// process could not start with, naming the field, before storing it.
func TestApplyRefusesOversizedEnv(t *testing.T) {
	e := newDigestEnv(t)
	spec := e.simSpec(e.a)
	spec.Container.Env = map[string]string{"BLOB": strings.Repeat("x", 900_000)}
	name := e.name("bigenv")
	_, err := e.control.ApplyWorkload(ctxT(t), &persysv1.ApplyRequest{Name: name, Spec: spec})
	if status.Code(err) != codes.InvalidArgument || !strings.Contains(status.Convert(err).Message(), "spec.container.env.BLOB") {
		t.Fatalf("apply with a 900 KB env value: %v, want InvalidArgument naming spec.container.env.BLOB", err)
	}
	if _, err := e.get(name); status.Code(err) != codes.NotFound {
		t.Fatalf("refused workload was stored: %v", err)
	}
}
