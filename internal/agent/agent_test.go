package agent_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
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
	"google.golang.org/grpc/status"

	"github.com/persys-dev/compute/api/persys/contract/rpcreason"
	persysv1 "github.com/persys-dev/compute/api/persys/v1"
	"github.com/persys-dev/compute/api/persys/v1/persysv1grpc"
	"github.com/persys-dev/compute/internal/agent"
	"github.com/persys-dev/compute/internal/pki"
	"github.com/persys-dev/compute/internal/runtime"
	"github.com/persys-dev/compute/internal/runtime/docker"
	"github.com/persys-dev/compute/internal/testutil/eventually"
	"github.com/persys-dev/compute/internal/testutil/realsched"
)

const (
	nodeID  = "node-agent-test"
	waitFor = 60 * time.Second
	mib     = int64(1 << 20)
)

func findWorkload(ws []*persysv1.WorkloadStatus, name string) *persysv1.WorkloadStatus {
	for _, w := range ws {
		if w.GetName() == name {
			return w
		}
	}
	return nil
}

type env struct {
	bundle *pki.Bundle
	addr   string             // the scheduler
	sched  *realsched.Cluster // the scheduler, when the test started it
	cli    *client.Client     // nil in a bare env
	image  string
	prefix string // of this run's workload names
	node   string // the agent's node id; "" is nodeID
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

// nodeClient calls node's agent as the scheduler does: over the node's
// control stream, through the leading scheduler of e.sched.
type nodeClient struct {
	e    *env
	node string
}

func (c nodeClient) get(ctx context.Context) (persysv1grpc.AgentServiceClient, error) {
	if c.e.sched == nil {
		return nil, status.Error(codes.Unavailable, "test: no scheduler started")
	}
	for _, s := range c.e.sched.Schedulers {
		if s.Leading() {
			return s.AgentClient(ctx, c.node)
		}
	}
	return nil, status.Error(codes.Unavailable, "test: no scheduler leads")
}

func (c nodeClient) ApplyWorkload(ctx context.Context, in *persysv1.ApplyWorkloadRequest, _ ...grpc.CallOption) (*persysv1.ApplyWorkloadResponse, error) {
	cli, err := c.get(ctx)
	if err != nil {
		return nil, err
	}
	return cli.ApplyWorkload(ctx, in)
}

func (c nodeClient) DeleteWorkload(ctx context.Context, in *persysv1.DeleteWorkloadRequest, _ ...grpc.CallOption) (*persysv1.DeleteWorkloadResponse, error) {
	cli, err := c.get(ctx)
	if err != nil {
		return nil, err
	}
	return cli.DeleteWorkload(ctx, in)
}

func (c nodeClient) GetWorkloadStatus(ctx context.Context, in *persysv1.GetWorkloadStatusRequest, _ ...grpc.CallOption) (*persysv1.WorkloadStatus, error) {
	cli, err := c.get(ctx)
	if err != nil {
		return nil, err
	}
	return cli.GetWorkloadStatus(ctx, in)
}

func (c nodeClient) ListWorkloads(ctx context.Context, in *persysv1.ListAgentWorkloadsRequest, _ ...grpc.CallOption) (*persysv1.ListAgentWorkloadsResponse, error) {
	cli, err := c.get(ctx)
	if err != nil {
		return nil, err
	}
	return cli.ListWorkloads(ctx, in)
}

func (c nodeClient) HealthCheck(ctx context.Context, in *persysv1.HealthCheckRequest, _ ...grpc.CallOption) (*persysv1.HealthCheckResponse, error) {
	cli, err := c.get(ctx)
	if err != nil {
		return nil, err
	}
	return cli.HealthCheck(ctx, in)
}

func (c nodeClient) GetWorkloadLogs(ctx context.Context, in *persysv1.GetWorkloadLogsRequest, _ ...grpc.CallOption) (*persysv1.GetWorkloadLogsResponse, error) {
	cli, err := c.get(ctx)
	if err != nil {
		return nil, err
	}
	return cli.GetWorkloadLogs(ctx, in)
}

func (c nodeClient) StreamWorkloadLogs(ctx context.Context, in *persysv1.StreamWorkloadLogsRequest, _ ...grpc.CallOption) (grpc.ServerStreamingClient[persysv1.StreamWorkloadLogsResponse], error) {
	cli, err := c.get(ctx)
	if err != nil {
		return nil, err
	}
	return cli.StreamWorkloadLogs(ctx, in)
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
	conn, err := agent.DialScheduler([]string{e.addr}, clientTLS)
	if err != nil {
		t.Fatal(err)
	}
	// The control stream on a connection of its own, as Schedulers does.
	chConn, err := agent.DialScheduler([]string{e.addr}, clientTLS)
	if err != nil {
		t.Fatal(err)
	}
	reg := prometheus.NewRegistry()
	cfg := agent.Config{
		NodeID:        e.nodeName(),
		AdvertiseAddr: "127.0.0.1",
		Labels:        map[string]string{"zone": "test"},
		Channel:       persysv1grpc.NewNodeChannelServiceClient(chConn),
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
	errs := make(chan error, 1)
	var wg sync.WaitGroup
	wg.Add(1)
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
		_ = chConn.Close()
	})
	t.Cleanup(stop)
	return &runningAgent{
		agent:    a,
		registry: reg,
		addr:     "127.0.0.1",
		client:   nodeClient{e: e, node: e.nodeName()},
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

// TestAgentWithDocker runs an agent on the Docker engine registered with
// a real scheduler; the test calls the agent as that scheduler does.
func TestAgentWithDocker(t *testing.T) {
	r := newDockerEnv(t, nil)
	e := r.env
	ctx := context.Background()
	pre, web, side, big := e.prefix+"-pre", e.prefix+"-web", e.prefix+"-side", e.prefix+"-big"
	dataDir := t.TempDir()

	// A workload that runs before the agent starts, as after an agent
	// restart; the scheduler never placed it.
	if _, _, err := e.runtime(t).Apply(ctx, runtime.Instance{Name: pre, UID: "uid-pre", Revision: 1, Spec: e.spec(100, 64*mib)}); err != nil {
		t.Fatalf("apply %s directly: %v", pre, err)
	}

	a1 := e.startAgent(t, dataDir)
	c := &dockerAgentCase{r: r, e: e, a1: a1, pre: pre, web: web, side: side, big: big, dataDir: dataDir}

	t.Run("registers with capabilities and existing workloads", c.registers)
	t.Run("the scheduler removes what it did not place", c.removesOrphan)
	t.Run("apply runs a container and a repeated apply is skipped", c.applies)
	t.Run("apply above the utilization threshold is refused", c.refusesAboveThreshold)
	t.Run("invalid requests are InvalidArgument with INVALID_SPEC", c.refusesInvalid)
	t.Run("only the scheduler may call", c.onlySchedulerCalls)
	t.Run("a container removed behind the agent's back is reported at once", c.reportsRemovedContainer)
	t.Run("a new agent adopts the running container without restarting it", c.adoptsOnRestart)
}

// dockerAgentCase is what the steps of TestAgentWithDocker share: the
// scheduler, the environment, the first agent and the workload names.
type dockerAgentCase struct {
	r                            *realEnv
	e                            *env
	a1                           *runningAgent
	pre, web, side, big, dataDir string
	webUID                       string
}

// registers: registers with capabilities and existing workloads.
func (c *dockerAgentCase) registers(t *testing.T) {
	a1, pre := c.a1, c.pre
	reg, _ := c.r.registrationAt(t, 0)
	if reg.GetNodeId() != c.e.nodeName() || reg.GetAddress() != a1.addr {
		t.Fatalf("registered as %q at %q, want %q at %q", reg.GetNodeId(), reg.GetAddress(), c.e.nodeName(), a1.addr)
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
		w.GetRevision() != 1 || w.GetNodeId() != c.e.nodeName() {
		t.Fatalf("registration reports %s as %v, want it running at revision 1", pre, w)
	}
}

// removesOrphan: the scheduler has the agent delete what it reported but
// the scheduler never placed.
func (c *dockerAgentCase) removesOrphan(t *testing.T) {
	eventually.Eventually(t, c.pre+" removed", waitFor, func() (bool, string) {
		n := len(c.e.containers(t, c.pre))
		return n == 0, fmt.Sprintf("%d containers", n)
	})
}

// running waits until the agent runs name and returns its status.
func running(t *testing.T, ra *runningAgent, name string) *persysv1.WorkloadStatus {
	t.Helper()
	return waitAgentState(t, ra, name, "running", func(st *persysv1.WorkloadStatus) bool {
		return st.GetState() == persysv1.ActualState_ACTUAL_STATE_RUNNING
	})
}

// applies: the scheduler's apply runs a container and a repeated apply is
// skipped.
func (c *dockerAgentCase) applies(t *testing.T) {
	e, a1, web := c.e, c.a1, c.web
	c.webUID = c.r.apply(t, web, e.spec(500, 128*mib))
	c.r.apply(t, c.side, e.spec(100, 64*mib))
	st := running(t, a1, web)
	running(t, a1, c.side)
	if st.GetNodeId() != e.nodeName() || st.GetRuntimeId() == "" || st.GetUid() != c.webUID {
		t.Fatalf("web runs as %v", st)
	}
	again := apply(t, a1.client, &persysv1.ApplyWorkloadRequest{Name: web, Uid: c.webUID, Revision: 1, Spec: e.spec(500, 128*mib)})
	if !again.GetSkipped() || again.GetStatus().GetRuntimeId() != st.GetRuntimeId() {
		t.Fatalf("repeated apply = %v, want skipped on container %s", again, st.GetRuntimeId())
	}
	if n := len(e.containers(t, web)); n != 1 {
		t.Fatalf("%d containers for %s, want 1", n, web)
	}
}

// refusesAboveThreshold: apply above the utilization threshold is refused.
func (c *dockerAgentCase) refusesAboveThreshold(t *testing.T) {
	e, a1, big, ctx := c.e, c.a1, c.big, context.Background()
	// 600m of 2000m are allocated; 1200m more exceeds 80%.
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

// onlySchedulerCalls: the agent listens on no port; the scheduler reaches
// it over the node's control stream only (who may open that stream:
// TestRevokedAgentLosesControlStream in the scheduler's tests).
func (c *dockerAgentCase) onlySchedulerCalls(t *testing.T) {
	e, a1, ctx := c.e, c.a1, context.Background()
	h, err := a1.client.HealthCheck(ctx, &persysv1.HealthCheckRequest{})
	if err != nil || !h.GetHealthy() || h.GetRuntimes()["container"] != "ok" || h.GetNodeId() != e.nodeName() {
		t.Fatalf("HealthCheck = %v, %v", h, err)
	}
}

// reportsRemovedContainer: a container removed behind the agent's back is
// reported at once: as removed from the list the scheduler holds, or
// missing from a full list.
func (c *dockerAgentCase) reportsRemovedContainer(t *testing.T) {
	e, side, web, ctx := c.e, c.side, c.web, context.Background()
	cs := e.containers(t, side)
	if len(cs) != 1 {
		t.Fatalf("%d containers for %s, want 1", len(cs), side)
	}
	from := len(c.r.heartbeats())
	if _, err := e.cli.ContainerRemove(ctx, cs[0].ID, client.ContainerRemoveOptions{Force: true}); err != nil {
		t.Fatal(err)
	}
	hb := c.r.waitHeartbeat(t, from, "heartbeat without "+side, func(hb *persysv1.HeartbeatRequest) bool {
		if hb.GetDelta() {
			return slices.Contains(hb.GetRemoved(), side)
		}
		return !hb.GetDigestOnly() && findWorkload(hb.GetWorkloads(), side) == nil
	})
	if hb.GetDelta() {
		if slices.Contains(hb.GetRemoved(), web) || len(hb.GetRemoved()) != 1 {
			t.Fatalf("heartbeat removes %v, want only %s", hb.GetRemoved(), side)
		}
	} else if findWorkload(hb.GetWorkloads(), web) == nil {
		t.Fatalf("heartbeat lacks %s: not the full set", web)
	}
	if hb.GetNodeId() != e.nodeName() || hb.GetUsage() == nil {
		t.Fatalf("heartbeat = %v", hb)
	}
}

// adoptsOnRestart: a new agent adopts the running container without
// restarting it.
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

	a2 := e.startAgent(t, dataDir)
	reg, _ := c.r.registrationAt(t, 1)
	w := findWorkload(reg.GetWorkloads(), web)
	if w == nil || w.GetState() != persysv1.ActualState_ACTUAL_STATE_RUNNING || w.GetRuntimeId() != before.ID {
		t.Fatalf("re-registration reports %s as %v, want running in container %s", web, w, before.ID)
	}
	// An apply of what the agent adopted (the scheduler sends its own
	// too, at once) keeps the container.
	resp := apply(t, a2.client, &persysv1.ApplyWorkloadRequest{Name: web, Uid: c.webUID, Revision: 1, Spec: e.spec(500, 128*mib)})
	if resp.GetStatus().GetState() != persysv1.ActualState_ACTUAL_STATE_RUNNING || resp.GetStatus().GetRuntimeId() != before.ID {
		t.Fatalf("re-apply after restart = %v, want container %s running", resp, before.ID)
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
	// 500m full at least.
	refused := apply(t, a2.client, &persysv1.ApplyWorkloadRequest{Name: big, Uid: "uid-big", Revision: 1, Spec: e.spec(1200, 64*mib)})
	if refused.GetStatus().GetReason() != persysv1.FailureReason_FAILURE_REASON_INSUFFICIENT_RESOURCES {
		t.Fatalf("apply over threshold after restart = %v", refused)
	}

	// The scheduler deletes web.
	if _, err := c.r.s.Admin(t).DeleteWorkload(ctx, &persysv1.DeleteRequest{Name: web}); err != nil {
		t.Fatal(err)
	}
	eventually.Eventually(t, web+" deleted", waitFor, func() (bool, string) {
		n := len(e.containers(t, web))
		return n == 0, fmt.Sprintf("%d containers", n)
	})
	del, err := a2.client.DeleteWorkload(ctx, &persysv1.DeleteWorkloadRequest{Name: web})
	if err != nil || del.GetExisted() {
		t.Fatalf("second DeleteWorkload = %v, %v", del, err)
	}
	// With web gone the big one fits.
	fits := apply(t, a2.client, &persysv1.ApplyWorkloadRequest{Name: big, Uid: "uid-big", Revision: 1, Spec: e.spec(1200, 64*mib)})
	if fits.GetStatus().GetState() != persysv1.ActualState_ACTUAL_STATE_RUNNING {
		t.Fatalf("apply after delete = %v", fits)
	}
}
