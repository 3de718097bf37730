package scheduler_test

import (
	"context"
	"fmt"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	persysv1 "github.com/persys-dev/compute/api/persys/v1"
	"github.com/persys-dev/compute/api/persys/v1/persysv1grpc"
	"github.com/persys-dev/compute/internal/agent"
	"github.com/persys-dev/compute/internal/nodechannel"
	"github.com/persys-dev/compute/internal/pki"
	"github.com/persys-dev/compute/internal/reportdigest"
	persysruntime "github.com/persys-dev/compute/internal/runtime"
	"github.com/persys-dev/compute/internal/runtime/sim"
	"github.com/persys-dev/compute/internal/scheduler"
	"github.com/persys-dev/compute/internal/store/storetest"
)

const (
	digestOnlyMetric = "persys_scheduler_heartbeats_digest_only_total"
	agentResends     = "persys_agent_heartbeat_full_resends_total"
)

// tapControl is an agent's real ControlService client that records each
// heartbeat it carries with its answer, and can alter the digest of the
// next digest-only heartbeat: what a scheduler that holds another list
// would see.
type tapControl struct {
	persysv1grpc.ControlServiceClient

	mu          sync.Mutex
	sent        []tapped
	corruptNext bool
}

type tapped struct {
	req       *persysv1.HeartbeatRequest
	resp      *persysv1.HeartbeatResponse // nil when the call failed
	corrupted bool
}

func (c *tapControl) Heartbeat(ctx context.Context, req *persysv1.HeartbeatRequest, opts ...grpc.CallOption) (*persysv1.HeartbeatResponse, error) {
	c.mu.Lock()
	corrupted := c.corruptNext && req.GetDigestOnly()
	if corrupted {
		c.corruptNext = false
		req = proto.Clone(req).(*persysv1.HeartbeatRequest)
		req.ReportDigest ^= 0xff
	}
	c.mu.Unlock()
	resp, err := c.ControlServiceClient.Heartbeat(ctx, req, opts...)
	c.mu.Lock()
	c.sent = append(c.sent, tapped{req: proto.Clone(req).(*persysv1.HeartbeatRequest), resp: resp, corrupted: corrupted})
	c.mu.Unlock()
	return resp, err
}

// tapChannel is an agent's real NodeChannelService client whose streams
// go through tap: heartbeats ride the control stream.
type tapChannel struct {
	persysv1grpc.NodeChannelServiceClient
	tap *tapControl
}

func (c *tapChannel) Connect(ctx context.Context, opts ...grpc.CallOption) (grpc.BidiStreamingClient[persysv1.AgentFrame, persysv1.SchedulerFrame], error) {
	s, err := c.NodeChannelServiceClient.Connect(ctx, opts...)
	if err != nil {
		return nil, err
	}
	return &tapStream{BidiStreamingClient: s, tap: c.tap, pending: map[uint64]tapped{}}, nil
}

// tapStream records each heartbeat sent on one stream with its answer.
type tapStream struct {
	grpc.BidiStreamingClient[persysv1.AgentFrame, persysv1.SchedulerFrame]
	tap     *tapControl
	mu      sync.Mutex
	pending map[uint64]tapped
}

func (s *tapStream) Send(f *persysv1.AgentFrame) error {
	if req := f.GetHeartbeat(); req != nil {
		c := s.tap
		c.mu.Lock()
		corrupted := c.corruptNext && req.GetDigestOnly()
		if corrupted {
			c.corruptNext = false
			req = proto.Clone(req).(*persysv1.HeartbeatRequest)
			req.ReportDigest ^= 0xff
			f = &persysv1.AgentFrame{CallId: f.GetCallId(), Body: &persysv1.AgentFrame_Heartbeat{Heartbeat: req}}
		}
		c.mu.Unlock()
		s.mu.Lock()
		s.pending[f.GetCallId()] = tapped{req: proto.Clone(req).(*persysv1.HeartbeatRequest), corrupted: corrupted}
		s.mu.Unlock()
	}
	return s.BidiStreamingClient.Send(f)
}

func (s *tapStream) Recv() (*persysv1.SchedulerFrame, error) {
	f, err := s.BidiStreamingClient.Recv()
	if err == nil && (f.GetHeartbeatAck() != nil || f.GetError() != nil) {
		s.mu.Lock()
		h, ok := s.pending[f.GetCallId()]
		delete(s.pending, f.GetCallId())
		s.mu.Unlock()
		if ok {
			h.resp = f.GetHeartbeatAck()
			s.tap.mu.Lock()
			s.tap.sent = append(s.tap.sent, h)
			s.tap.mu.Unlock()
		}
	}
	return f, err
}

// heartbeats returns what was sent from index from on.
func (c *tapControl) heartbeats(from int) []tapped {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]tapped(nil), c.sent[min(from, len(c.sent)):]...)
}

func (c *tapControl) count() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.sent)
}

// simAgent is a real agent on the sim runtime.
type simAgent struct {
	rt  *sim.Runtime
	reg *prometheus.Registry
	tap *tapControl
}

// digestEnv is a scheduler over embedded etcd (in a cluster, for its
// helpers), node a with a real agent on the sim runtime, and node b, whose
// agent serves the scheduler's calls on the sim runtime but does not run
// its loop: the test sends b's registration and heartbeats itself.
type digestEnv struct {
	*cluster
	a, b  string
	agent simAgent
	// rtB is node b's runtime; ctlB calls the scheduler as node b.
	rtB   *sim.Runtime
	addrB string
	ctlB  persysv1grpc.ControlServiceClient
	// linkB sends heartbeats on node b's control stream.
	linkB *nodechannel.Link
}

func newDigestEnv(t *testing.T) *digestEnv {
	t.Helper()
	st, etcd := storetest.New(t)
	run := randomHex(4)
	a, b := "dg-"+run+"-a", "dg-"+run+"-b"
	bundle, err := pki.Bootstrap(t.TempDir(), []string{a, b}, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	c := &cluster{t: t, root: t, bundle: bundle, store: st, etcd: etcd, prefix: "dg" + run,
		opts: clusterOptions{config: func(cfg *scheduler.Config) {
			// Long enough that node b's lease outlives a scheduler restart
			// between two of its heartbeats.
			cfg.LeaseTTL = 30 * time.Second
		}}}
	c.startScheduler("127.0.0.1:0")
	c.schedAddr = c.sched.addr
	c.control = c.adminClient(c.schedAddr)
	e := &digestEnv{cluster: c, a: a, b: b}
	e.agent = e.startSimAgent(a)
	e.rtB, e.addrB = e.serveSimAgent(b)
	e.ctlB = persysv1grpc.NewControlServiceClient(c.dial(c.schedAddr, bundle.Agents[b]))
	return e
}

// startSimAgent runs a real agent for node id on a fresh sim runtime,
// labelled node=id, whose heartbeats go through a tap.
func (e *digestEnv) startSimAgent(id string) simAgent {
	e.t.Helper()
	return e.startSimAgentWith(id, sim.Options{})
}

// startSimAgentWith is startSimAgent on a sim runtime with opts.
func (e *digestEnv) startSimAgentWith(id string, opts sim.Options) simAgent {
	t := e.t
	t.Helper()
	rt, err := sim.New(opts)
	if err != nil {
		t.Fatal(err)
	}
	files := e.bundle.Agents[id]
	clientTLS, err := pki.ClientTLS(files, "")
	if err != nil {
		t.Fatal(err)
	}
	conn, err := agent.DialScheduler([]string{e.schedAddr}, clientTLS)
	if err != nil {
		t.Fatal(err)
	}
	tap := &tapControl{ControlServiceClient: persysv1grpc.NewControlServiceClient(conn)}
	reg := prometheus.NewRegistry()
	a, err := agent.New(agent.Config{
		NodeID: id, AdvertiseAddr: "127.0.0.1", Labels: map[string]string{"node": id},
		Runtimes: []persysruntime.Runtime{rt}, Channel: &tapChannel{NodeChannelServiceClient: persysv1grpc.NewNodeChannelServiceClient(conn), tap: tap},
		HeartbeatInterval: heartbeat,
		Capacity:          &persysv1.Resources{CpuMillis: 2000, MemoryBytes: 1024 * mib, DiskBytes: 10 * 1024 * mib},
		DataDir:           t.TempDir(), Logger: testLogger().With("component", "agent", "node", id), Registry: reg,
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { defer wg.Done(); _ = a.Run(ctx) }()
	t.Cleanup(func() { cancel(); wg.Wait(); _ = conn.Close() })
	e.waitNodeState(id, persysv1.NodeState_NODE_STATE_READY)
	return simAgent{rt: rt, reg: reg, tap: tap}
}

// serveSimAgent serves the agent API for node id on a fresh sim runtime
// over the node's control stream without running the agent's loop, and
// returns the runtime and the node's address.
func (e *digestEnv) serveSimAgent(id string) (*sim.Runtime, string) {
	t := e.t
	t.Helper()
	rt, err := sim.New(sim.Options{})
	if err != nil {
		t.Fatal(err)
	}
	conn := e.dial(e.schedAddr, e.bundle.Agents[id])
	a, err := agent.New(agent.Config{
		NodeID: id, AdvertiseAddr: "127.0.0.1", Runtimes: []persysruntime.Runtime{rt},
		// Never called: Run is not started.
		Channel:  persysv1grpc.NewNodeChannelServiceClient(conn),
		Capacity: &persysv1.Resources{CpuMillis: 2000, MemoryBytes: 1024 * mib, DiskBytes: 10 * 1024 * mib},
		DataDir:  t.TempDir(), Logger: testLogger().With("component", "agent", "node", id), Registry: prometheus.NewRegistry(),
	})
	if err != nil {
		t.Fatal(err)
	}
	e.linkB = serveChannel(t, conn, id, a.Service())
	return rt, "127.0.0.1"
}

// registerB registers node b with what its runtime runs.
func (e *digestEnv) registerB() {
	e.t.Helper()
	_, err := e.ctlB.RegisterNode(ctxT(e.t), &persysv1.RegisterNodeRequest{
		NodeId: e.b, Address: e.addrB, Workloads: e.listB(),
		Capabilities: &persysv1.NodeCapabilities{
			Capacity: &persysv1.Resources{CpuMillis: 2000, MemoryBytes: 1024 * mib, DiskBytes: 10 * 1024 * mib},
			Labels:   map[string]string{"node": e.b}, Os: runtime.GOOS, Arch: runtime.GOARCH,
			Runtimes: []persysv1.WorkloadType{persysv1.WorkloadType_WORKLOAD_TYPE_CONTAINER},
		},
	})
	if err != nil {
		e.t.Fatalf("register %s: %v", e.b, err)
	}
}

// listB is node b's full list, as its agent would report it.
func (e *digestEnv) listB() []*persysv1.WorkloadStatus {
	e.t.Helper()
	ws, err := e.rtB.List(ctxT(e.t))
	if err != nil {
		e.t.Fatal(err)
	}
	for _, w := range ws {
		w.NodeId = e.b
	}
	return ws
}

// heartbeatB sends one heartbeat as node b: the full list with digest d,
// or (digestOnly) d alone; usage carries cpu so that its arrival shows.
func (e *digestEnv) heartbeatB(d uint64, digestOnly bool, cpu int64) (*persysv1.HeartbeatResponse, error) {
	e.t.Helper()
	req := &persysv1.HeartbeatRequest{NodeId: e.b, Usage: &persysv1.Resources{CpuMillis: cpu},
		ReportDigest: d, DigestOnly: digestOnly}
	if !digestOnly {
		req.Workloads = e.listB()
	}
	return e.ctlB.Heartbeat(ctxT(e.t), req)
}

func (e *digestEnv) mustHeartbeatB(d uint64, digestOnly bool, cpu int64) *persysv1.HeartbeatResponse {
	e.t.Helper()
	resp, err := e.heartbeatB(d, digestOnly, cpu)
	if err != nil {
		e.t.Fatalf("heartbeat of %s (digest %#x, digest only %v): %v", e.b, d, digestOnly, err)
	}
	return resp
}

func (e *digestEnv) simSpec(node string) *persysv1.WorkloadSpec {
	return &persysv1.WorkloadSpec{
		Type:         persysv1.WorkloadType_WORKLOAD_TYPE_CONTAINER,
		DesiredState: persysv1.DesiredState_DESIRED_STATE_RUNNING,
		Resources:    &persysv1.Resources{CpuMillis: 100, MemoryBytes: 64 * mib},
		NodeSelector: map[string]string{"node": node},
		Container:    &persysv1.ContainerSpec{Image: "app:1", RestartPolicy: "on-failure"},
	}
}

// waitDigestServed waits until the scheduler served n more digest-only
// heartbeats from the list it holds.
func (e *digestEnv) waitDigestServed(n int) {
	e.t.Helper()
	served := map[string]string{"result": "served"}
	from := e.metric(digestOnlyMetric, served)
	waitFor(e.t, fmt.Sprintf("%d digest-only heartbeats served", n), waitLong, func() (bool, string) {
		got := e.metric(digestOnlyMetric, served)
		return got >= from+float64(n), fmt.Sprintf("%v of %v", got-from, n)
	})
}

func (e *digestEnv) usageOf(id string) int64 {
	e.t.Helper()
	n, err := e.control.GetNode(ctxT(e.t), &persysv1.GetNodeRequest{Id: id})
	if err != nil {
		e.t.Fatal(err)
	}
	return n.GetUsage().GetCpuMillis()
}

// TestHeartbeatDigests drives digest-only heartbeats end to end: a real
// agent whose list does not change, a change, a scheduler that holds
// another list, a scheduler restart, an orphan seen only through digests,
// and the validation of the request. The subtests share the env and run
// in order.
func TestHeartbeatDigests(t *testing.T) {
	e := newDigestEnv(t)
	wa := e.name("wa")
	e.apply(wa, e.simSpec(e.a))
	e.waitRunningOn(wa, e.a)

	if !t.Run("an unchanged list goes as its digest", func(t *testing.T) { digestUnchangedList(t, e, wa) }) {
		t.FailNow()
	}

	t.Run("a change reaches the scheduler as a delta", func(t *testing.T) { digestChangeGoesAsDelta(t, e, wa) })

	t.Run("a scheduler that holds another list asks for it", func(t *testing.T) { digestForgedAsksResend(t, e, wa) })

	wb := e.name("wb")
	const dB = uint64(0xb0b)
	if !t.Run("node b reports with its own digest", func(t *testing.T) { digestNodeB(t, e, wb, dB) }) {
		t.FailNow()
	}

	t.Run("node b's changes go as deltas on its stream", func(t *testing.T) { deltaNodeB(t, e, wb) })

	t.Run("invalid digest-only heartbeats", func(t *testing.T) {
		e.t = t
		for _, tc := range []struct {
			name  string
			req   *persysv1.HeartbeatRequest
			field string
		}{
			{"with workloads", &persysv1.HeartbeatRequest{NodeId: e.b, ReportDigest: dB, DigestOnly: true, Workloads: e.listB()}, "workloads"},
			{"without a digest", &persysv1.HeartbeatRequest{NodeId: e.b, DigestOnly: true}, "report_digest"},
			{"delta without a digest", &persysv1.HeartbeatRequest{NodeId: e.b, Delta: true}, "report_digest"},
			{"delta and digest only", &persysv1.HeartbeatRequest{NodeId: e.b, ReportDigest: dB, DigestOnly: true, Delta: true}, "delta"},
			{"removed without delta", &persysv1.HeartbeatRequest{NodeId: e.b, ReportDigest: dB, Removed: []string{"x"}}, "removed"},
		} {
			t.Run(tc.name, func(t *testing.T) {
				_, err := e.ctlB.Heartbeat(ctxT(t), tc.req)
				if status.Code(err) != codes.InvalidArgument || !strings.Contains(status.Convert(err).Message(), tc.field) {
					t.Fatalf("heartbeat %v: %v, want InvalidArgument naming %s", tc.req, err, tc.field)
				}
			})
		}
		// Refused at the boundary: the list held is untouched.
		if resp := e.mustHeartbeatB(dB, true, 8); resp.GetResendFull() {
			t.Fatalf("digest-only heartbeat after refused ones: %v, want the digest still held", resp)
		}
	})

	t.Run("an orphan is removed while the node sends only digests", func(t *testing.T) { digestOrphanRemoved(t, e, wb, dB) })

	t.Run("a node whose stream dropped registers again", func(t *testing.T) { streamDroppedRegisters(t, e, wa) })

	t.Run("a restarted scheduler holds no digest", func(t *testing.T) {
		e.t = t
		e.mustHeartbeatB(dB, false, 10)
		e.sched.stop(t)
		e.startScheduler(e.schedAddr)
		// Node b's lease outlived the restart; the new scheduler has none
		// of its lists.
		var resp *persysv1.HeartbeatResponse
		waitFor(t, "a heartbeat of "+e.b+" through the new scheduler", waitLong, func() (bool, string) {
			var err error
			resp, err = e.heartbeatB(dB, true, 11)
			return err == nil, fmt.Sprint(err)
		})
		if !resp.GetResendFull() || resp.GetReregister() {
			t.Fatalf("digest-only heartbeat to a restarted scheduler: %v, want resend_full", resp)
		}
		if resp := e.mustHeartbeatB(dB, false, 12); !resp.GetDigestKept() {
			t.Fatalf("full heartbeat: %v, want digest_kept", resp)
		}
		if resp := e.mustHeartbeatB(dB, true, 13); resp.GetResendFull() {
			t.Fatalf("digest-only heartbeat after the full list: %v", resp)
		}
		// The real agent gets its list to the new scheduler, then digests.
		e.waitDigestServed(2)
		e.waitRunningOn(wa, e.a)
	})
}

// digestUnchangedList: the real agent, whose list of wa does not change,
// sends digests.
func digestUnchangedList(t *testing.T, e *digestEnv, wa string) {
	e.t = t
	from := e.agent.tap.count()
	e.waitDigestServed(3)
	var full, digests int
	for _, h := range e.agent.tap.heartbeats(from) {
		if h.req.GetDigestOnly() {
			digests++
			if len(h.req.GetWorkloads()) != 0 || h.req.GetUsage() == nil {
				t.Fatalf("digest-only heartbeat with %d workloads and usage %v", len(h.req.GetWorkloads()), h.req.GetUsage())
			}
		} else {
			full++
		}
	}
	if digests < 3 {
		t.Fatalf("the agent sent %d digest-only heartbeats (%d full) while the scheduler counted 3 or more", digests, full)
	}
	// The scheduler's view is what the node runs.
	v := e.waitRunningOn(wa, e.a)
	if v.GetStatus().GetUid() != v.GetWorkload().GetUid() {
		t.Fatalf("%s: status of uid %s, workload %s", wa, v.GetStatus().GetUid(), v.GetWorkload().GetUid())
	}
	if got := e.usageOf(e.a); got != 100 {
		t.Fatalf("usage of %s: %d cpu millis, want 100", e.a, got)
	}
}

// digestChangeGoesAsDelta kills wa: the failure goes in a delta.
func digestChangeGoesAsDelta(t *testing.T, e *digestEnv, wa string) {
	e.t = t
	const failures = "persys_scheduler_workload_failures_total"
	exited := map[string]string{"reason": "CONTAINER_EXITED"}
	before := e.metric(failures, exited)
	registrations := agentMetric(t, e.agent.reg, "persys_agent_registrations_total")
	from := e.agent.tap.count()
	e.agent.rt.Kill(wa)
	// Only a heartbeat can tell the scheduler: nothing else carries
	// the failure of a running container.
	waitFor(t, "the scheduler to see "+wa+" fail", waitLong, func() (bool, string) {
		got := e.metric(failures, exited)
		return got > before, fmt.Sprintf("%v (was %v)", got, before)
	})
	if got := agentMetric(t, e.agent.reg, "persys_agent_registrations_total"); got != registrations {
		t.Fatalf("the agent registered again (%v, was %v): the list may have come with the registration", got, registrations)
	}
	carried := false
	for _, h := range e.agent.tap.heartbeats(from) {
		if w := findStatus(h.req.GetWorkloads(), wa); w.GetState() == persysv1.ActualState_ACTUAL_STATE_FAILED {
			carried = h.req.GetDelta() && len(h.req.GetWorkloads()) == 1 && h.resp.GetDigestKept()
			break
		}
	}
	if !carried {
		t.Fatalf("no delta the scheduler applied carried the failure of %s", wa)
	}
	// The scheduler restarts it; the new list goes as a digest again.
	e.waitRunningOn(wa, e.a)
	e.waitDigestServed(2)
}

// digestForgedAsksResend forges the agent's next digest.
func digestForgedAsksResend(t *testing.T, e *digestEnv, wa string) {
	e.t = t
	resend := map[string]string{"result": "resend_full"}
	before := e.metric(digestOnlyMetric, resend)
	resends := agentMetric(t, e.agent.reg, agentResends)
	from := e.agent.tap.count()
	e.agent.tap.mu.Lock()
	e.agent.tap.corruptNext = true
	e.agent.tap.mu.Unlock()
	var after []tapped
	waitFor(t, "the heartbeat after a forged digest", waitLong, func() (bool, string) {
		after = e.agent.tap.heartbeats(from)
		for i, h := range after {
			if h.corrupted {
				after = after[i:]
				return len(after) >= 2, fmt.Sprintf("%d heartbeats since the forged one", len(after)-1)
			}
		}
		return false, fmt.Sprintf("%d heartbeats, none forged", len(after))
	})
	if !after[0].resp.GetResendFull() {
		t.Fatalf("answer to a digest the scheduler does not hold: %v, want resend_full", after[0].resp)
	}
	if next := after[1]; next.req.GetDigestOnly() || findStatus(next.req.GetWorkloads(), wa) == nil ||
		next.req.GetReportDigest() != after[0].req.GetReportDigest()^0xff || !next.resp.GetDigestKept() {
		t.Fatalf("heartbeat after resend_full: %v, answered %v; want the full list with the real digest, kept", next.req, next.resp)
	}
	if got := e.metric(digestOnlyMetric, resend); got != before+1 {
		t.Fatalf("%s{result=resend_full} = %v, want %v", digestOnlyMetric, got, before+1)
	}
	if got := agentMetric(t, e.agent.reg, agentResends); got != resends+1 {
		t.Fatalf("%s = %v, want %v", agentResends, got, resends+1)
	}
	e.waitDigestServed(1)
}

// digestNodeB drives node b's heartbeats by hand, with digest dB.
func digestNodeB(t *testing.T, e *digestEnv, wb string, dB uint64) {
	e.t = t
	e.registerB()
	// A digest before any full list since the registration.
	if resp := e.mustHeartbeatB(dB, true, 1); !resp.GetResendFull() {
		t.Fatalf("digest-only heartbeat right after registering: %v, want resend_full", resp)
	}
	if resp := e.mustHeartbeatB(dB, false, 2); !resp.GetDigestKept() {
		t.Fatalf("full heartbeat with a digest: %v, want digest_kept", resp)
	}
	e.apply(wb, e.simSpec(e.b))
	e.waitRunningOn(wb, e.b)
	// The apply changed what the scheduler holds for node b: the list
	// with digest dB is no longer it.
	if resp := e.mustHeartbeatB(dB, true, 3); !resp.GetResendFull() {
		t.Fatalf("digest-only heartbeat after the scheduler applied a workload: %v, want resend_full", resp)
	}
	if resp := e.mustHeartbeatB(dB, false, 3); !resp.GetDigestKept() {
		t.Fatalf("full heartbeat with a digest: %v, want digest_kept", resp)
	}
	if resp := e.mustHeartbeatB(dB, true, 4); resp.GetResendFull() || resp.GetReregister() {
		t.Fatalf("digest-only heartbeat with the digest held: %v, want a plain answer", resp)
	}
	if got := e.usageOf(e.b); got != 4 {
		t.Fatalf("usage of %s after a digest-only heartbeat: %d cpu millis, want 4", e.b, got)
	}
	if resp := e.mustHeartbeatB(dB+1, true, 5); !resp.GetResendFull() {
		t.Fatalf("digest-only heartbeat with another digest: %v, want resend_full", resp)
	}
	// resend_full renewed the lease and the usage all the same.
	if got := e.usageOf(e.b); got != 5 {
		t.Fatalf("usage of %s after resend_full: %d cpu millis, want 5", e.b, got)
	}
	// An agent without digests: full lists are kept, no digest is.
	if resp := e.mustHeartbeatB(0, false, 6); resp.GetDigestKept() {
		t.Fatalf("full heartbeat without a digest: %v, want digest_kept unset", resp)
	}
	if resp := e.mustHeartbeatB(dB, false, 7); !resp.GetDigestKept() {
		t.Fatalf("full heartbeat with a digest: %v, want digest_kept", resp)
	}
	// A registration carries a list without a digest.
	e.registerB()
	if resp := e.mustHeartbeatB(dB, true, 7); !resp.GetResendFull() {
		t.Fatalf("digest-only heartbeat after registering again: %v, want resend_full", resp)
	}
	if resp := e.mustHeartbeatB(dB, false, 7); !resp.GetDigestKept() {
		t.Fatalf("full heartbeat with a digest: %v, want digest_kept", resp)
	}
}

// digestOrphanRemoved deletes wb behind the scheduler's back.
func digestOrphanRemoved(t *testing.T, e *digestEnv, wb string, dB uint64) {
	e.t = t
	const orphans = "persys_scheduler_orphans_removed_total"
	before := e.metric(orphans, nil)
	uid := findStatus(e.listB(), wb).GetUid()
	if uid == "" {
		t.Fatalf("%s does not run on %s", wb, e.b)
	}
	// The workload goes from etcd behind the scheduler's back: its
	// copy on node b is no longer assigned to anyone, and node b's
	// list does not change.
	_, rev, err := e.store.GetWorkload(ctxT(t), wb)
	if err != nil {
		t.Fatal(err)
	}
	if err := e.store.DeleteWorkloadKeys(ctxT(t), wb, rev); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the scheduler to forget "+wb, waitLong, func() (bool, string) {
		_, err := e.get(wb)
		return status.Code(err) == codes.NotFound, fmt.Sprint(err)
	})
	if findStatus(e.listB(), wb) == nil {
		t.Fatalf("%s left node %s before any heartbeat", wb, e.b)
	}
	waitFor(t, "the orphan to leave node "+e.b, waitLong, func() (bool, string) {
		if resp := e.mustHeartbeatB(dB, true, 9); resp.GetResendFull() {
			t.Fatalf("digest-only heartbeat: %v, want the digest still held", resp)
		}
		w := findStatus(e.listB(), wb)
		return w == nil, fmt.Sprint(w)
	})
	waitFor(t, orphans+" to grow", waitLong, func() (bool, string) {
		got := e.metric(orphans, nil)
		return got > before, fmt.Sprintf("%v (was %v)", got, before)
	})
}

func findStatus(ws []*persysv1.WorkloadStatus, name string) *persysv1.WorkloadStatus {
	for _, w := range ws {
		if w.GetName() == name {
			return w
		}
	}
	return nil
}

// agentMetric reads a counter of an agent's registry.
func agentMetric(t *testing.T, reg *prometheus.Registry, name string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == name {
			sum := 0.0
			for _, m := range mf.GetMetric() {
				sum += m.GetCounter().GetValue()
			}
			return sum
		}
	}
	return 0
}

const deltaMetric = "persys_scheduler_heartbeats_delta_total"

// deltaNodeB sends node b's heartbeats on its control stream: a full list,
// a delta the scheduler applies, and one whose result is not the list the
// digest names, which asks for the full list and changes nothing.
func deltaNodeB(t *testing.T, e *digestEnv, wb string) {
	e.t = t
	hb := func(req *persysv1.HeartbeatRequest) *persysv1.HeartbeatResponse {
		t.Helper()
		req.NodeId = e.b
		resp, err := e.linkB.Heartbeat(ctxT(t), req)
		if err != nil {
			t.Fatalf("heartbeat on %s's stream %v: %v", e.b, req, err)
		}
		return resp
	}
	applied, sendFull := map[string]string{"result": "applied"}, map[string]string{"result": "send_full_list"}
	applied0, sendFull0 := e.metric(deltaMetric, applied), e.metric(deltaMetric, sendFull)

	list := e.listB()
	if resp := hb(&persysv1.HeartbeatRequest{Workloads: list, ReportDigest: reportdigest.Of(list), Usage: &persysv1.Resources{CpuMillis: 20}}); !resp.GetDigestKept() {
		t.Fatalf("full heartbeat on the stream: %v, want digest_kept", resp)
	}
	if got := e.usageOf(e.b); got != 20 {
		t.Fatalf("usage of %s after a heartbeat on its stream: %d cpu millis, want 20", e.b, got)
	}

	st := findStatus(list, wb)
	if st == nil {
		t.Fatalf("node b does not run %s", wb)
	}
	changed := proto.Clone(st).(*persysv1.WorkloadStatus)
	changed.Message = "told in a delta"
	next := []*persysv1.WorkloadStatus{changed}
	for _, w := range list {
		if w.GetName() != wb {
			next = append(next, w)
		}
	}
	resp := hb(&persysv1.HeartbeatRequest{Delta: true, Workloads: []*persysv1.WorkloadStatus{changed},
		ReportDigest: reportdigest.Of(next), Usage: &persysv1.Resources{CpuMillis: 21}})
	if !resp.GetDigestKept() || resp.GetSendFullList() {
		t.Fatalf("delta: %v, want it applied (digest_kept)", resp)
	}
	if got := e.usageOf(e.b); got != 21 {
		t.Fatalf("usage of %s after a delta: %d cpu millis, want 21", e.b, got)
	}
	// The list held is now the agent's: its digest alone is served.
	if resp := hb(&persysv1.HeartbeatRequest{DigestOnly: true, ReportDigest: reportdigest.Of(next)}); resp.GetResendFull() {
		t.Fatalf("digest-only heartbeat after the delta: %v, want the new list held", resp)
	}

	// A delta that does not give the list its digest names.
	forged := proto.Clone(changed).(*persysv1.WorkloadStatus)
	forged.Message = "not what the digest names"
	resp = hb(&persysv1.HeartbeatRequest{Delta: true, Workloads: []*persysv1.WorkloadStatus{forged},
		ReportDigest: reportdigest.Of(next), Usage: &persysv1.Resources{CpuMillis: 22}})
	if !resp.GetSendFullList() || resp.GetDigestKept() || resp.GetReregister() {
		t.Fatalf("delta with a wrong digest: %v, want send_full_list", resp)
	}
	// The lease and usage were renewed all the same; the list held is
	// untouched.
	if got := e.usageOf(e.b); got != 22 {
		t.Fatalf("usage of %s after send_full_list: %d cpu millis, want 22", e.b, got)
	}
	if resp := hb(&persysv1.HeartbeatRequest{DigestOnly: true, ReportDigest: reportdigest.Of(next)}); resp.GetResendFull() {
		t.Fatalf("digest-only heartbeat after a refused delta: %v, want the list held untouched", resp)
	}
	if got := e.metric(deltaMetric, applied) - applied0; got != 1 {
		t.Fatalf("%s{result=applied} grew by %v, want 1", deltaMetric, got)
	}
	if got := e.metric(deltaMetric, sendFull) - sendFull0; got != 1 {
		t.Fatalf("%s{result=send_full_list} grew by %v, want 1", deltaMetric, got)
	}
	// The agent's list again, whole, so the subtests after start from it.
	if resp := hb(&persysv1.HeartbeatRequest{Workloads: e.listB(), ReportDigest: 0xb0b}); !resp.GetDigestKept() {
		t.Fatalf("full heartbeat: %v, want digest_kept", resp)
	}
}

// streamDroppedRegisters ends node a's lease, as etcd ends an expired one:
// the scheduler declares the node lost and ends its control stream; the
// agent opens a new one, is asked to register, registers, and sends its
// full list on the new stream.
func streamDroppedRegisters(t *testing.T, e *digestEnv, wa string) {
	e.t = t
	const registrations = "persys_agent_registrations_total"
	regs := agentMetric(t, e.agent.reg, registrations)
	n, err := e.control.GetNode(ctxT(t), &persysv1.GetNodeRequest{Id: e.a})
	if err != nil {
		t.Fatal(err)
	}
	from := e.agent.tap.count()
	if err := e.store.RevokeNodeLease(ctxT(t), n.GetLeaseId()); err != nil {
		t.Fatal(err)
	}
	waitFor(t, e.a+" to register again", waitLong, func() (bool, string) {
		got := agentMetric(t, e.agent.reg, registrations)
		return got > regs, fmt.Sprintf("%v registrations (was %v)", got, regs)
	})
	waitFor(t, "a full list kept after registering again", waitLong, func() (bool, string) {
		hs := e.agent.tap.heartbeats(from)
		for _, h := range hs {
			if !h.req.GetDigestOnly() && !h.req.GetDelta() && h.resp.GetDigestKept() && findStatus(h.req.GetWorkloads(), wa) != nil {
				return true, ""
			}
		}
		return false, fmt.Sprintf("%d heartbeats since the lease ended", len(hs))
	})
	e.waitNodeState(e.a, persysv1.NodeState_NODE_STATE_READY)
	e.waitRunningOn(wa, e.a)
	e.waitDigestServed(1)
}
