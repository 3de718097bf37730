package agent_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"io"
	"log/slog"
	"net"
	"os"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/client"
	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/persys-dev/compute/api/persys/contract"
	"github.com/persys-dev/compute/api/persys/contract/rpcreason"
	persysv1 "github.com/persys-dev/compute/api/persys/v1"
	"github.com/persys-dev/compute/api/persys/v1/persysv1grpc"
	"github.com/persys-dev/compute/internal/agent"
	"github.com/persys-dev/compute/internal/pki"
	"github.com/persys-dev/compute/internal/runtime"
	"github.com/persys-dev/compute/internal/runtime/docker"
	"github.com/persys-dev/compute/internal/testutil/images"
)

const (
	nodeID  = "node-agent-test"
	waitFor = 60 * time.Second
	mib     = int64(1 << 20)
)

// recordingControl stands in for the scheduler: it records every
// registration and heartbeat.
type recordingControl struct {
	persysv1grpc.UnimplementedControlServiceServer

	mu         sync.Mutex
	registers  []*persysv1.RegisterNodeRequest
	heartbeats []*persysv1.HeartbeatRequest
	notify     chan struct{}
	// refuseRegisters is how many registrations to refuse with
	// Unavailable; refused counts them.
	refuseRegisters, refused int
	// reregister asks, once, the node to register again on a heartbeat.
	reregister bool
	// intervalMs and clusterID are sent in RegisterNodeResponse.
	intervalMs int64
	clusterID  string
	// heartbeatIntervalMs is sent in every HeartbeatResponse.
	heartbeatIntervalMs int64
	// leader, when set, makes this a follower: registrations and
	// heartbeats are refused with FailedPrecondition and the leader's
	// address in the x-persys-leader trailer; redirected counts them.
	leader     string
	redirected int
	// calls logs "register" and "heartbeat" in the order they were
	// accepted.
	calls []string
	// keepDigests makes it answer a full heartbeat that has a digest as a
	// scheduler that kept it (digest_kept); without it, it answers as one
	// that predates digests.
	keepDigests bool
	// resendOnce answers the next digest-only heartbeat with resend_full;
	// resent is the index in heartbeats of the last one it answered so.
	resendOnce bool
	resent     int
}

// setLeader makes the server a follower naming leader, or ("") the leader.
func (c *recordingControl) setLeader(leader string) {
	c.mu.Lock()
	c.leader = leader
	c.mu.Unlock()
}

// redirect refuses the call as a follower when a leader is set.
func (c *recordingControl) redirect(ctx context.Context) error {
	c.mu.Lock()
	leader := c.leader
	if leader != "" {
		c.redirected++
	}
	c.mu.Unlock()
	if leader == "" {
		return nil
	}
	c.signal()
	if err := grpc.SetTrailer(ctx, metadata.Pairs(contract.MetadataLeader, leader)); err != nil {
		return err
	}
	return status.Errorf(codes.FailedPrecondition, "not the leader; the leader is %s", leader)
}

func (c *recordingControl) RegisterNode(ctx context.Context, req *persysv1.RegisterNodeRequest) (*persysv1.RegisterNodeResponse, error) {
	if err := c.redirect(ctx); err != nil {
		return nil, err
	}
	c.mu.Lock()
	if c.refused < c.refuseRegisters {
		c.refused++
		c.mu.Unlock()
		c.signal()
		return nil, status.Error(codes.Unavailable, "scheduler not ready")
	}
	c.registers = append(c.registers, proto.Clone(req).(*persysv1.RegisterNodeRequest))
	c.calls = append(c.calls, "register")
	interval, cluster := c.intervalMs, c.clusterID
	c.mu.Unlock()
	c.signal()
	return &persysv1.RegisterNodeResponse{LeaseTtlSeconds: 30, HeartbeatIntervalMs: interval, ClusterId: cluster}, nil
}

func (c *recordingControl) Heartbeat(ctx context.Context, req *persysv1.HeartbeatRequest) (*persysv1.HeartbeatResponse, error) {
	if err := c.redirect(ctx); err != nil {
		return nil, err
	}
	c.mu.Lock()
	c.heartbeats = append(c.heartbeats, proto.Clone(req).(*persysv1.HeartbeatRequest))
	c.calls = append(c.calls, "heartbeat")
	resp := &persysv1.HeartbeatResponse{Reregister: c.reregister, HeartbeatIntervalMs: c.heartbeatIntervalMs}
	c.reregister = false
	switch {
	case resp.Reregister:
	case req.GetDigestOnly() && c.resendOnce:
		c.resendOnce, c.resent = false, len(c.heartbeats)-1
		resp.ResendFull = true
	case !req.GetDigestOnly() && c.keepDigests && req.GetReportDigest() != 0:
		resp.DigestKept = true
	}
	c.mu.Unlock()
	c.signal()
	return resp, nil
}

func (c *recordingControl) signal() {
	select {
	case c.notify <- struct{}{}:
	default:
	}
}

func (c *recordingControl) counts() (registers, heartbeats int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.registers), len(c.heartbeats)
}

// waitRegister waits for a registration with index >= from and returns it.
func (c *recordingControl) waitRegister(t *testing.T, from int) *persysv1.RegisterNodeRequest {
	t.Helper()
	var got *persysv1.RegisterNodeRequest
	c.wait(t, "a registration", func() bool {
		if len(c.registers) > from {
			got = c.registers[from]
			return true
		}
		return false
	})
	return got
}

// waitHeartbeat waits for a heartbeat with index >= from that satisfies ok.
func (c *recordingControl) waitHeartbeat(t *testing.T, from int, what string, ok func(*persysv1.HeartbeatRequest) bool) *persysv1.HeartbeatRequest {
	t.Helper()
	var got *persysv1.HeartbeatRequest
	c.wait(t, what, func() bool {
		for _, hb := range c.heartbeats[min(from, len(c.heartbeats)):] {
			if ok(hb) {
				got = hb
				return true
			}
		}
		return false
	})
	return got
}

// wait evaluates cond under the lock after every recorded call, until it
// holds or the deadline passes.
func (c *recordingControl) wait(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.NewTimer(waitFor)
	defer deadline.Stop()
	for {
		c.mu.Lock()
		done := cond()
		c.mu.Unlock()
		if done {
			return
		}
		select {
		case <-c.notify:
		case <-deadline.C:
			t.Fatalf("no %s within %s", what, waitFor)
		}
	}
}

func findWorkload(ws []*persysv1.WorkloadStatus, name string) *persysv1.WorkloadStatus {
	for _, w := range ws {
		if w.GetName() == name {
			return w
		}
	}
	return nil
}

type env struct {
	bundle  *pki.Bundle
	control *recordingControl
	addr    string         // the control server
	cli     *client.Client // nil in a bare env
	image   string
	prefix  string // of this run's workload names
	node    string // the agent's node id; "" is nodeID
}

// nodeName is the agent's node id.
func (e *env) nodeName() string {
	if e.node != "" {
		return e.node
	}
	return nodeID
}

func testLogger() *slog.Logger {
	var w io.Writer = io.Discard
	if testing.Verbose() {
		w = os.Stderr
	}
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// newEnv is a test's PKI, a stand-in scheduler serving control over mTLS
// and the Docker engine with the test image.
func newEnv(t *testing.T, control *recordingControl) *env {
	t.Helper()
	cli, image := images.HelloImage(t)
	e := newBareEnv(t, control)
	e.cli, e.image = cli, image
	t.Cleanup(func() { e.removeContainers(t) })
	return e
}

// newBareEnv is newEnv without Docker.
func newBareEnv(t *testing.T, control *recordingControl) *env {
	t.Helper()
	b, err := pki.Bootstrap(t.TempDir(), []string{nodeID}, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	var rnd [4]byte
	_, _ = rand.Read(rnd[:])
	e := &env{bundle: b, control: control, image: "app:1", prefix: "agt-" + hex.EncodeToString(rnd[:])}
	e.addr = e.serveControl(t, control)
	return e
}

// serveControl serves control as a scheduler on loopback over mTLS and
// returns its address.
func (e *env) serveControl(t *testing.T, control *recordingControl) string {
	t.Helper()
	serverTLS, err := pki.ServerTLS(e.bundle.Scheduler)
	if err != nil {
		t.Fatal(err)
	}
	control.notify = make(chan struct{}, 1)
	srv := grpc.NewServer(grpc.Creds(credentials.NewTLS(serverTLS)))
	persysv1grpc.RegisterControlServiceServer(srv, control)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(srv.Stop)
	return ln.Addr().String()
}

// removeContainers removes every container of this run's workloads.
func (e *env) removeContainers(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	csRes, err := e.cli.ContainerList(ctx, client.ContainerListOptions{All: true,
		Filters: make(client.Filters).Add("label", runtime.LabelWorkload)})
	cs := csRes.Items
	if err != nil {
		t.Errorf("cleanup: list containers: %v", err)
		return
	}
	for _, c := range cs {
		if name := c.Labels[runtime.LabelWorkload]; len(name) > len(e.prefix) && name[:len(e.prefix)] == e.prefix {
			if _, err := e.cli.ContainerRemove(ctx, c.ID, client.ContainerRemoveOptions{Force: true}); err != nil {
				t.Errorf("cleanup: remove %s: %v", c.ID, err)
			}
		}
	}
}

// containers returns the containers of workload name.
func (e *env) containers(t *testing.T, name string) []container.Summary {
	t.Helper()
	csRes, err := e.cli.ContainerList(context.Background(), client.ContainerListOptions{All: true,
		Filters: make(client.Filters).Add("label", runtime.LabelWorkload+"="+name)})
	cs := csRes.Items
	if err != nil {
		t.Fatal(err)
	}
	return cs
}

func (e *env) spec(cpu, mem int64) *persysv1.WorkloadSpec {
	return &persysv1.WorkloadSpec{
		Type:         persysv1.WorkloadType_WORKLOAD_TYPE_CONTAINER,
		DesiredState: persysv1.DesiredState_DESIRED_STATE_RUNNING,
		Resources:    &persysv1.Resources{CpuMillis: cpu, MemoryBytes: mem},
		Container:    &persysv1.ContainerSpec{Image: e.image},
	}
}

func (e *env) runtime(t *testing.T) *docker.Runtime {
	t.Helper()
	rt, err := docker.New(docker.Options{Client: e.cli, Logger: testLogger(), StopTimeout: 2 * time.Second, NodeID: e.nodeName()})
	if err != nil {
		t.Fatal(err)
	}
	return rt
}

// dial connects to addr with the identity f.
func dial(t *testing.T, addr string, f pki.Files) *grpc.ClientConn {
	t.Helper()
	cfg, err := pki.ClientTLS(f, "")
	if err != nil {
		t.Fatal(err)
	}
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(credentials.NewTLS(cfg)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	return conn
}

type runningAgent struct {
	agent    *agent.Agent
	registry *prometheus.Registry
	addr     string
	// client calls the agent as the scheduler.
	client persysv1grpc.AgentServiceClient
	stop   func()
}

// startAgent runs an agent on a fresh docker runtime over the test's
// engine (unless an option sets the runtimes), serving on loopback with
// mTLS. Options change the configuration before the agent is built.
func (e *env) startAgent(t *testing.T, dataDir string, opts ...func(*agent.Config)) *runningAgent {
	t.Helper()
	files := e.bundle.Agents[e.nodeName()]
	clientTLS, err := pki.ClientTLS(files, "")
	if err != nil {
		t.Fatal(err)
	}
	serverTLS, err := pki.ServerTLS(files)
	if err != nil {
		t.Fatal(err)
	}
	conn, err := agent.DialScheduler([]string{e.addr}, clientTLS)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	reg := prometheus.NewRegistry()
	cfg := agent.Config{
		NodeID:        e.nodeName(),
		AdvertiseAddr: ln.Addr().String(),
		Labels:        map[string]string{"zone": "test"},
		Control:       persysv1grpc.NewControlServiceClient(conn),
		// Long enough that every heartbeat the test waits for comes from a
		// runtime watch event or the registration, never from the ticker.
		HeartbeatInterval: 10 * time.Minute,
		Capacity:          &persysv1.Resources{CpuMillis: 2000, MemoryBytes: 1024 * mib, DiskBytes: 10 * 1024 * mib},
		DataDir:           dataDir,
		Logger:            testLogger(),
		Registry:          reg,
	}
	for _, o := range opts {
		o(&cfg)
	}
	if len(cfg.Runtimes) == 0 {
		cfg.Runtimes = []runtime.Runtime{e.runtime(t)}
	}
	a, err := agent.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	errs := make(chan error, 2)
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); errs <- agent.Serve(ctx, ln, a, serverTLS) }()
	go func() { defer wg.Done(); errs <- a.Run(ctx) }()
	stop := sync.OnceFunc(func() {
		cancel()
		wg.Wait()
		close(errs)
		for err := range errs {
			if err != nil {
				t.Errorf("agent: %v", err)
			}
		}
		_ = conn.Close()
	})
	t.Cleanup(stop)
	return &runningAgent{
		agent:    a,
		registry: reg,
		addr:     ln.Addr().String(),
		client:   persysv1grpc.NewAgentServiceClient(dial(t, ln.Addr().String(), e.bundle.Scheduler)),
		stop:     stop,
	}
}

func apply(t *testing.T, c persysv1grpc.AgentServiceClient, req *persysv1.ApplyWorkloadRequest) *persysv1.ApplyWorkloadResponse {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	defer cancel()
	resp, err := c.ApplyWorkload(ctx, req)
	if err != nil {
		t.Fatalf("ApplyWorkload %s: %v", req.GetName(), err)
	}
	return resp
}

func TestAgentWithDocker(t *testing.T) {
	e := newEnv(t, &recordingControl{})
	ctx := context.Background()
	pre, web, big := e.prefix+"-pre", e.prefix+"-web", e.prefix+"-big"
	dataDir := t.TempDir()

	// A workload that runs before the agent starts, as after an agent
	// restart.
	if _, _, err := e.runtime(t).Apply(ctx, runtime.Instance{Name: pre, UID: "uid-pre", Revision: 1, Spec: e.spec(100, 64*mib)}); err != nil {
		t.Fatalf("apply %s directly: %v", pre, err)
	}

	a1 := e.startAgent(t, dataDir)
	c := &dockerAgentCase{e: e, a1: a1, pre: pre, web: web, big: big, dataDir: dataDir}

	t.Run("registers with capabilities and existing workloads", c.registers)
	t.Run("apply runs a container and a repeated apply is skipped", c.applies)
	t.Run("apply above the utilization threshold is refused", c.refusesAboveThreshold)
	t.Run("invalid requests are InvalidArgument with INVALID_SPEC", c.refusesInvalid)
	t.Run("only the scheduler may call", c.onlySchedulerCalls)
	t.Run("a container removed behind the agent's back is reported at once", c.reportsRemovedContainer)
	t.Run("a new agent adopts the running container without restarting it", c.adoptsOnRestart)
}

// dockerAgentCase is what the steps of TestAgentWithDocker share: the
// environment, the first agent and the workload names.
type dockerAgentCase struct {
	e                      *env
	a1                     *runningAgent
	pre, web, big, dataDir string
}

// registers: registers with capabilities and existing workloads.
func (c *dockerAgentCase) registers(t *testing.T) {
	e, a1, pre := c.e, c.a1, c.pre
	reg := e.control.waitRegister(t, 0)
	if reg.GetNodeId() != nodeID || reg.GetAddress() != a1.addr {
		t.Fatalf("registered as %q at %q, want %q at %q", reg.GetNodeId(), reg.GetAddress(), nodeID, a1.addr)
	}
	caps := reg.GetCapabilities()
	if caps.GetCapacity().GetCpuMillis() != 2000 || caps.GetCapacity().GetMemoryBytes() != 1024*mib {
		t.Errorf("capacity = %v", caps.GetCapacity())
	}
	if !slices.Equal(caps.GetRuntimes(), []persysv1.WorkloadType{persysv1.WorkloadType_WORKLOAD_TYPE_CONTAINER}) {
		t.Errorf("runtimes = %v", caps.GetRuntimes())
	}
	if caps.GetLabels()["zone"] != "test" || caps.GetOs() == "" || caps.GetArch() == "" || caps.GetHostname() == "" {
		t.Errorf("capabilities = %v", caps)
	}
	w := findWorkload(reg.GetWorkloads(), pre)
	if w == nil || w.GetState() != persysv1.ActualState_ACTUAL_STATE_RUNNING || w.GetUid() != "uid-pre" ||
		w.GetRevision() != 1 || w.GetNodeId() != nodeID {
		t.Fatalf("registration reports %s as %v, want it running at revision 1", pre, w)
	}
}

// applies: apply runs a container and a repeated apply is skipped.
func (c *dockerAgentCase) applies(t *testing.T) {
	e, a1, web := c.e, c.a1, c.web
	req := &persysv1.ApplyWorkloadRequest{Name: web, Uid: "uid-web", Revision: 1, Spec: e.spec(500, 128*mib)}
	resp := apply(t, a1.client, req)
	st := resp.GetStatus()
	if resp.GetSkipped() || st.GetState() != persysv1.ActualState_ACTUAL_STATE_RUNNING || st.GetNodeId() != nodeID || st.GetRuntimeId() == "" {
		t.Fatalf("first apply = %v", resp)
	}
	again := apply(t, a1.client, req)
	if !again.GetSkipped() || again.GetStatus().GetRuntimeId() != st.GetRuntimeId() {
		t.Fatalf("second apply = %v, want skipped on container %s", again, st.GetRuntimeId())
	}
	if n := len(e.containers(t, web)); n != 1 {
		t.Fatalf("%d containers for %s, want 1", n, web)
	}
}

// refusesAboveThreshold: apply above the utilization threshold is refused.
func (c *dockerAgentCase) refusesAboveThreshold(t *testing.T) {
	e, a1, big, ctx := c.e, c.a1, c.big, context.Background()
	// 500m of 2000m are allocated; 1200m more exceeds 80%.
	resp := apply(t, a1.client, &persysv1.ApplyWorkloadRequest{Name: big, Uid: "uid-big", Revision: 1, Spec: e.spec(1200, 64*mib)})
	st := resp.GetStatus()
	if st.GetState() != persysv1.ActualState_ACTUAL_STATE_FAILED ||
		st.GetReason() != persysv1.FailureReason_FAILURE_REASON_INSUFFICIENT_RESOURCES || st.GetMessage() == "" {
		t.Fatalf("apply = %v, want FAILED with INSUFFICIENT_RESOURCES", resp)
	}
	if cs := e.containers(t, big); len(cs) != 0 {
		t.Fatalf("refused apply left %d containers", len(cs))
	}
	got, err := a1.client.GetWorkloadStatus(ctx, &persysv1.GetWorkloadStatusRequest{Name: big})
	if err != nil || got.GetState() != persysv1.ActualState_ACTUAL_STATE_MISSING {
		t.Fatalf("status of %s = %v, %v; want MISSING", big, got, err)
	}
}

// refusesInvalid: invalid requests are InvalidArgument with INVALID_SPEC.
func (c *dockerAgentCase) refusesInvalid(t *testing.T) {
	e, a1, ctx := c.e, c.a1, context.Background()
	spec := e.spec(0, 0)
	spec.Type = persysv1.WorkloadType_WORKLOAD_TYPE_VM
	_, err := a1.client.ApplyWorkload(ctx, &persysv1.ApplyWorkloadRequest{Name: e.prefix + "-vm", Uid: "u", Revision: 1, Spec: spec})
	if status.Code(err) != codes.InvalidArgument || rpcreason.Of(err) != persysv1.FailureReason_FAILURE_REASON_INVALID_SPEC {
		t.Fatalf("apply of a type without runtime: %v (reason %s)", err, rpcreason.Of(err))
	}
}

// onlySchedulerCalls: only the scheduler may call.
func (c *dockerAgentCase) onlySchedulerCalls(t *testing.T) {
	e, a1, ctx := c.e, c.a1, context.Background()
	for name, f := range map[string]pki.Files{"gateway": e.bundle.Gateway, "admin": e.bundle.Admin} {
		c := persysv1grpc.NewAgentServiceClient(dial(t, a1.addr, f))
		_, err := c.ApplyWorkload(ctx, &persysv1.ApplyWorkloadRequest{Name: e.prefix + "-intruder", Uid: "u", Revision: 1, Spec: e.spec(0, 0)})
		if status.Code(err) != codes.PermissionDenied {
			t.Errorf("ApplyWorkload as %s: %v, want PermissionDenied", name, err)
		}
		if _, err := c.ListWorkloads(ctx, &persysv1.ListAgentWorkloadsRequest{}); status.Code(err) != codes.PermissionDenied {
			t.Errorf("ListWorkloads as %s: %v, want PermissionDenied", name, err)
		}
	}
	if cs := e.containers(t, e.prefix+"-intruder"); len(cs) != 0 {
		t.Fatalf("a refused caller created %d containers", len(cs))
	}
	h, err := a1.client.HealthCheck(ctx, &persysv1.HealthCheckRequest{})
	if err != nil || !h.GetHealthy() || h.GetRuntimes()["container"] != "ok" || h.GetNodeId() != nodeID {
		t.Fatalf("HealthCheck = %v, %v", h, err)
	}
}

// reportsRemovedContainer: a container removed behind the agent's back is reported at once.
func (c *dockerAgentCase) reportsRemovedContainer(t *testing.T) {
	e, pre, web, ctx := c.e, c.pre, c.web, context.Background()
	cs := e.containers(t, pre)
	if len(cs) != 1 {
		t.Fatalf("%d containers for %s, want 1", len(cs), pre)
	}
	_, from := e.control.counts()
	if _, err := e.cli.ContainerRemove(ctx, cs[0].ID, client.ContainerRemoveOptions{Force: true}); err != nil {
		t.Fatal(err)
	}
	hb := e.control.waitHeartbeat(t, from, "heartbeat without "+pre, func(hb *persysv1.HeartbeatRequest) bool {
		return findWorkload(hb.GetWorkloads(), pre) == nil
	})
	if findWorkload(hb.GetWorkloads(), web) == nil {
		t.Fatalf("heartbeat lacks %s: not the full set", web)
	}
	if hb.GetNodeId() != nodeID || hb.GetUsage() == nil {
		t.Fatalf("heartbeat = %v", hb)
	}
}

// adoptsOnRestart: a new agent adopts the running container without restarting it.
func (c *dockerAgentCase) adoptsOnRestart(t *testing.T) {
	e, a1, web, big, dataDir, ctx := c.e, c.a1, c.web, c.big, c.dataDir, context.Background()
	cs := e.containers(t, web)
	if len(cs) != 1 {
		t.Fatalf("%d containers for %s, want 1", len(cs), web)
	}
	beforeRes, err := e.cli.ContainerInspect(ctx, cs[0].ID, client.ContainerInspectOptions{})
	before := beforeRes.Container
	if err != nil {
		t.Fatal(err)
	}
	a1.stop()
	regs, _ := e.control.counts()

	a2 := e.startAgent(t, dataDir)
	reg := e.control.waitRegister(t, regs)
	w := findWorkload(reg.GetWorkloads(), web)
	if w == nil || w.GetState() != persysv1.ActualState_ACTUAL_STATE_RUNNING || w.GetRuntimeId() != before.ID {
		t.Fatalf("re-registration reports %s as %v, want running in container %s", web, w, before.ID)
	}
	// The scheduler re-applies what it adopted: a no-op.
	resp := apply(t, a2.client, &persysv1.ApplyWorkloadRequest{Name: web, Uid: "uid-web", Revision: 1, Spec: e.spec(500, 128*mib)})
	if !resp.GetSkipped() || resp.GetStatus().GetRuntimeId() != before.ID {
		t.Fatalf("re-apply after restart = %v, want skipped", resp)
	}
	afterRes, err := e.cli.ContainerInspect(ctx, before.ID, client.ContainerInspectOptions{})
	after := afterRes.Container
	if err != nil {
		t.Fatal(err)
	}
	if after.State.StartedAt != before.State.StartedAt || !after.State.Running || after.RestartCount != before.RestartCount {
		t.Fatalf("container restarted: started %s → %s, running %v, restarts %d → %d",
			before.State.StartedAt, after.State.StartedAt, after.State.Running, before.RestartCount, after.RestartCount)
	}
	// The allocation record survived the restart: the node is still
	// 500m full.
	refused := apply(t, a2.client, &persysv1.ApplyWorkloadRequest{Name: big, Uid: "uid-big", Revision: 1, Spec: e.spec(1200, 64*mib)})
	if refused.GetStatus().GetReason() != persysv1.FailureReason_FAILURE_REASON_INSUFFICIENT_RESOURCES {
		t.Fatalf("apply over threshold after restart = %v", refused)
	}

	del, err := a2.client.DeleteWorkload(ctx, &persysv1.DeleteWorkloadRequest{Name: web, Uid: "uid-web"})
	if err != nil || !del.GetExisted() {
		t.Fatalf("DeleteWorkload = %v, %v", del, err)
	}
	if cs := e.containers(t, web); len(cs) != 0 {
		t.Fatalf("%d containers left after delete", len(cs))
	}
	del, err = a2.client.DeleteWorkload(ctx, &persysv1.DeleteWorkloadRequest{Name: web})
	if err != nil || del.GetExisted() {
		t.Fatalf("second DeleteWorkload = %v, %v", del, err)
	}
	// With web gone the big one fits.
	fits := apply(t, a2.client, &persysv1.ApplyWorkloadRequest{Name: big, Uid: "uid-big", Revision: 1, Spec: e.spec(1200, 64*mib)})
	if fits.GetStatus().GetState() != persysv1.ActualState_ACTUAL_STATE_RUNNING {
		t.Fatalf("apply after delete = %v", fits)
	}
}
