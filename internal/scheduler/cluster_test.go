package scheduler_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/client"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/status"

	persysv1 "github.com/persys-dev/compute/api/persys/v1"
	"github.com/persys-dev/compute/internal/agent"
	"github.com/persys-dev/compute/internal/pki"
	"github.com/persys-dev/compute/internal/runtime"
	"github.com/persys-dev/compute/internal/runtime/docker"
	"github.com/persys-dev/compute/internal/scheduler"
	"github.com/persys-dev/compute/internal/store"
	"github.com/persys-dev/compute/internal/store/storetest"
	"github.com/persys-dev/compute/internal/testutil/images"
)

const (
	mib        = int64(1 << 20)
	heartbeat  = 500 * time.Millisecond
	leaseTTL   = 2 * time.Second
	waitLong   = 60 * time.Second
	stopWithin = 30 * time.Second
	// runLabel marks every container of one test run, for cleanup.
	runLabel = "schedtest.run"
)

func testLogger() *slog.Logger {
	var w io.Writer = io.Discard
	if testing.Verbose() {
		w = os.Stderr
	}
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: slog.LevelInfo}))
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// waitFor polls cond until it holds or timeout passes; detail is what the
// failure message shows of the last look.
func waitFor(t *testing.T, what string, timeout time.Duration, cond func() (ok bool, detail string)) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		ok, detail := cond()
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s; last seen: %s", timeout, what, detail)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// cluster is one scheduler and one agent over an embedded etcd and the
// local Docker engine, all talking mTLS.
type cluster struct {
	// t is the running (sub)test, for failures; root owns the cleanups of
	// everything the cluster starts.
	t         *testing.T
	root      *testing.T
	bundle    *pki.Bundle
	store     *store.Store
	etcd      *clientv3.Client
	docker    *client.Client
	image     string
	prefix    string
	nodeID    string
	schedAddr string
	agentDir  string
	control   persysv1.ControlServiceClient

	sched *schedProc
	agent *agentProc
}

type schedProc struct {
	s    *scheduler.Scheduler
	reg  *prometheus.Registry
	addr string
	stop func(t *testing.T)
}

type agentProc struct {
	addr string
	stop func(t *testing.T)
}

func newCluster(t *testing.T) *cluster {
	t.Helper()
	cli, image := images.HelloImage(t)
	st, etcd := storetest.New(t)
	run := randomHex(4)
	// A node id of its own keeps this run's containers apart from those of
	// other agents on the shared engine (the runtime scopes to its node).
	node := "st-node-" + run
	b, err := pki.Bootstrap(t.TempDir(), []string{node}, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	c := &cluster{t: t, root: t, bundle: b, store: st, etcd: etcd, docker: cli, image: image,
		prefix: "st" + run, nodeID: node, agentDir: t.TempDir()}
	// Registered first so that it runs last, once the scheduler and the
	// agent have stopped and cannot create anything any more.
	t.Cleanup(c.removeContainers)

	c.sched = c.startScheduler("127.0.0.1:0")
	c.schedAddr = c.sched.addr
	c.control = persysv1.NewControlServiceClient(c.dial(c.schedAddr, b.Admin))
	c.agent = c.startAgent()
	c.waitNode(persysv1.NodeState_NODE_STATE_READY)
	c.checkNodeRecord()
	return c
}

func (c *cluster) dial(addr string, f pki.Files) *grpc.ClientConn {
	c.t.Helper()
	cfg, err := pki.ClientTLS(f, "")
	if err != nil {
		c.t.Fatal(err)
	}
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(credentials.NewTLS(cfg)))
	if err != nil {
		c.t.Fatal(err)
	}
	c.root.Cleanup(func() { _ = conn.Close() })
	return conn
}

// listen listens on addr, retrying briefly: a restarted scheduler takes
// over the port its predecessor just released.
func listen(t *testing.T, addr string) net.Listener {
	t.Helper()
	var ln net.Listener
	waitFor(t, "listen on "+addr, 10*time.Second, func() (bool, string) {
		var err error
		ln, err = net.Listen("tcp", addr)
		if err != nil {
			return false, err.Error()
		}
		return true, ""
	})
	return ln
}

// startScheduler runs a new scheduler over the cluster's store, serving on
// addr.
func (c *cluster) startScheduler(addr string) *schedProc {
	t := c.t
	t.Helper()
	serverTLS, err := pki.ServerTLS(c.bundle.Scheduler)
	if err != nil {
		t.Fatal(err)
	}
	clientTLS, err := pki.ClientTLS(c.bundle.Scheduler, "")
	if err != nil {
		t.Fatal(err)
	}
	reg := prometheus.NewRegistry()
	s, err := scheduler.New(scheduler.Config{
		Store:             c.store,
		Agents:            scheduler.TLSDialer{TLS: clientTLS},
		Logger:            testLogger().With("component", "scheduler"),
		Registry:          reg,
		HeartbeatInterval: heartbeat,
		LeaseTTL:          leaseTTL,
		// Long, so that every outcome here comes from the event-driven path
		// and not from the periodic safety net.
		ResyncInterval: 10 * time.Minute,
		RetryBase:      200 * time.Millisecond,
		RetryMax:       2 * time.Second,
	})
	if err != nil {
		t.Fatal(err)
	}
	ln := listen(t, addr)
	ctx, cancel := context.WithCancel(context.Background())
	errs := make(chan error, 2)
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); errs <- s.Run(ctx) }()
	go func() { defer wg.Done(); errs <- scheduler.Serve(ctx, ln, s, serverTLS) }()
	stop := func(t *testing.T) {
		t.Helper()
		cancel()
		done := make(chan struct{})
		go func() { wg.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(stopWithin):
			t.Fatalf("scheduler did not stop within %s of its context ending", stopWithin)
		}
		close(errs)
		for err := range errs {
			if err != nil {
				t.Errorf("scheduler: %v", err)
			}
		}
	}
	p := &schedProc{s: s, reg: reg, addr: ln.Addr().String()}
	p.stop = onceStop(stop)
	c.root.Cleanup(func() { p.stop(c.root) })
	waitFor(t, "scheduler ready", waitLong, func() (bool, string) {
		if err := s.Ready(); err != nil {
			return false, err.Error()
		}
		return true, ""
	})
	c.sched = p
	return p
}

func onceStop(f func(t *testing.T)) func(t *testing.T) {
	var once sync.Once
	return func(t *testing.T) { once.Do(func() { f(t) }) }
}

// startAgent runs a real agent for the cluster's node on the local engine, reporting
// to the cluster's scheduler address, with the cluster's data folder.
func (c *cluster) startAgent() *agentProc {
	t := c.t
	t.Helper()
	files := c.bundle.Agents[c.nodeID]
	clientTLS, err := pki.ClientTLS(files, "")
	if err != nil {
		t.Fatal(err)
	}
	serverTLS, err := pki.ServerTLS(files)
	if err != nil {
		t.Fatal(err)
	}
	conn, err := agent.DialScheduler([]string{c.schedAddr}, clientTLS)
	if err != nil {
		t.Fatal(err)
	}
	rt, err := docker.New(docker.Options{Client: c.docker, Logger: testLogger(), StopTimeout: 2 * time.Second, NodeID: c.nodeID})
	if err != nil {
		t.Fatal(err)
	}
	ln := listen(t, "127.0.0.1:0")
	a, err := agent.New(agent.Config{
		NodeID:            c.nodeID,
		AdvertiseAddr:     ln.Addr().String(),
		Labels:            map[string]string{"zone": "test"},
		Runtimes:          []runtime.Runtime{rt},
		Control:           persysv1.NewControlServiceClient(conn),
		HeartbeatInterval: heartbeat,
		Capacity:          &persysv1.Resources{CpuMillis: 2000, MemoryBytes: 1024 * mib, DiskBytes: 10 * 1024 * mib},
		DataDir:           c.agentDir,
		Logger:            testLogger().With("component", "agent"),
		Registry:          prometheus.NewRegistry(),
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	errs := make(chan error, 2)
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); errs <- agent.Serve(ctx, ln, a, serverTLS) }()
	go func() { defer wg.Done(); errs <- a.Run(ctx) }()
	p := &agentProc{addr: ln.Addr().String()}
	p.stop = onceStop(func(t *testing.T) {
		t.Helper()
		cancel()
		done := make(chan struct{})
		go func() { wg.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(stopWithin):
			t.Fatalf("agent did not stop within %s", stopWithin)
		}
		close(errs)
		for err := range errs {
			if err != nil {
				t.Errorf("agent: %v", err)
			}
		}
		_ = conn.Close()
	})
	c.root.Cleanup(func() { p.stop(c.root) })
	return p
}

// removeContainers removes every container this run created.
func (c *cluster) removeContainers() {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	list, err := c.docker.ContainerList(ctx, container.ListOptions{All: true,
		Filters: filters.NewArgs(filters.Arg("label", runLabel+"="+c.prefix))})
	if err != nil {
		c.t.Errorf("cleanup: list containers: %v", err)
		return
	}
	for _, ct := range list {
		if err := c.docker.ContainerRemove(ctx, ct.ID, container.RemoveOptions{Force: true, RemoveVolumes: true}); err != nil {
			c.t.Errorf("cleanup: remove %s: %v", ct.ID, err)
		}
	}
}

// containers lists the containers of workload name.
func (c *cluster) containers(name string) []container.Summary {
	c.t.Helper()
	list, err := c.docker.ContainerList(context.Background(), container.ListOptions{All: true,
		Filters: filters.NewArgs(filters.Arg("label", runtime.LabelWorkload+"="+name))})
	if err != nil {
		c.t.Fatal(err)
	}
	return list
}

// onlyContainer returns the one container of workload name, failing when
// there are none or several.
func (c *cluster) onlyContainer(name string) container.InspectResponse {
	c.t.Helper()
	list := c.containers(name)
	if len(list) != 1 {
		ids := make([]string, 0, len(list))
		for _, ct := range list {
			ids = append(ids, ct.ID[:12]+" "+ct.State)
		}
		c.t.Fatalf("workload %s: want exactly one container, have %d: %v", name, len(list), ids)
	}
	info, err := c.docker.ContainerInspect(context.Background(), list[0].ID)
	if err != nil {
		c.t.Fatal(err)
	}
	return info
}

func (c *cluster) name(suffix string) string { return c.prefix + "-" + suffix }

func (c *cluster) spec(memory int64, selector map[string]string) *persysv1.WorkloadSpec {
	return &persysv1.WorkloadSpec{
		Type:         persysv1.WorkloadType_WORKLOAD_TYPE_CONTAINER,
		DesiredState: persysv1.DesiredState_DESIRED_STATE_RUNNING,
		Resources:    &persysv1.Resources{CpuMillis: 100, MemoryBytes: memory},
		NodeSelector: selector,
		Container: &persysv1.ContainerSpec{Image: c.image, RestartPolicy: "on-failure",
			Labels: map[string]string{runLabel: c.prefix}},
	}
}

func (c *cluster) apply(name string, spec *persysv1.WorkloadSpec) *persysv1.ApplyResponse {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	resp, err := c.control.ApplyWorkload(ctx, &persysv1.ApplyRequest{Name: name, Spec: spec})
	if err != nil {
		c.t.Fatalf("apply %s: %v", name, err)
	}
	return resp
}

func (c *cluster) get(name string) (*persysv1.WorkloadView, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	return c.control.GetWorkload(ctx, &persysv1.GetWorkloadRequest{Name: name})
}

// waitStatus waits until the workload's status has state and reason.
func (c *cluster) waitStatus(name string, state persysv1.ActualState, reason persysv1.FailureReason) *persysv1.WorkloadView {
	c.t.Helper()
	var v *persysv1.WorkloadView
	waitFor(c.t, fmt.Sprintf("%s to be %s/%s", name, state, reason), waitLong, func() (bool, string) {
		var err error
		v, err = c.get(name)
		if err != nil {
			return false, err.Error()
		}
		st := v.GetStatus()
		return st.GetState() == state && st.GetReason() == reason,
			fmt.Sprintf("%s/%s: %s", st.GetState(), st.GetReason(), st.GetMessage())
	})
	return v
}

func (c *cluster) waitRunning(name string) *persysv1.WorkloadView {
	c.t.Helper()
	return c.waitStatus(name, persysv1.ActualState_ACTUAL_STATE_RUNNING, persysv1.FailureReason_FAILURE_REASON_UNSPECIFIED)
}

func (c *cluster) node() (*persysv1.Node, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	resp, err := c.control.ListNodes(ctx, &persysv1.ListNodesRequest{})
	if err != nil {
		return nil, err
	}
	for _, n := range resp.GetNodes() {
		if n.GetId() == c.nodeID {
			return n, nil
		}
	}
	return nil, fmt.Errorf("node %s not listed (%d nodes)", c.nodeID, len(resp.GetNodes()))
}

func (c *cluster) waitNode(state persysv1.NodeState) *persysv1.Node {
	c.t.Helper()
	var n *persysv1.Node
	waitFor(c.t, "node "+c.nodeID+" "+state.String(), waitLong, func() (bool, string) {
		var err error
		n, err = c.node()
		if err != nil {
			return false, err.Error()
		}
		return n.GetState() == state, n.GetState().String()
	})
	return n
}

// metric reads a counter of the current scheduler's registry; labels
// select one series of a vector.
func (c *cluster) metric(name string, labels map[string]string) float64 {
	c.t.Helper()
	mfs, err := c.sched.reg.Gather()
	if err != nil {
		c.t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			if hasLabels(m, labels) {
				return m.GetCounter().GetValue() + m.GetGauge().GetValue()
			}
		}
	}
	return 0
}

// metricSum adds up every series of a counter of the current scheduler.
func (c *cluster) metricSum(name string) float64 {
	c.t.Helper()
	mfs, err := c.sched.reg.Gather()
	if err != nil {
		c.t.Fatal(err)
	}
	sum := 0.0
	for _, mf := range mfs {
		if mf.GetName() == name {
			for _, m := range mf.GetMetric() {
				sum += m.GetCounter().GetValue()
			}
		}
	}
	return sum
}

func hasLabels(m *dto.Metric, want map[string]string) bool {
	got := map[string]string{}
	for _, lp := range m.GetLabel() {
		got[lp.GetName()] = lp.GetValue()
	}
	for k, v := range want {
		if got[k] != v {
			return false
		}
	}
	return true
}

// waitHeartbeats waits until the current scheduler has handled n more
// heartbeats than it had when called.
func (c *cluster) waitHeartbeats(n int) {
	c.t.Helper()
	const m = "persys_scheduler_heartbeats_total"
	from := c.metric(m, nil)
	waitFor(c.t, fmt.Sprintf("%d heartbeats", n), waitLong, func() (bool, string) {
		got := c.metric(m, nil)
		return got >= from+float64(n), fmt.Sprintf("%v of %v", got-from, n)
	})
}

func (c *cluster) revision() int64 {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	rev, err := c.store.Revision(ctx)
	if err != nil {
		c.t.Fatal(err)
	}
	return rev
}

// keysChangedSince names the keys written after rev (deleted keys are not
// listed).
func (c *cluster) keysChangedSince(rev int64) []string {
	resp, err := c.etcd.Get(context.Background(), c.store.Prefix()+"/", clientv3.WithPrefix(),
		clientv3.WithMinModRev(rev+1), clientv3.WithKeysOnly())
	if err != nil {
		return []string{err.Error()}
	}
	var keys []string
	for _, kv := range resp.Kvs {
		keys = append(keys, string(kv.Key))
	}
	return keys
}

// checkNodeRecord checks the node's record in etcd once registration has
// settled: it is the whole registration (address, capabilities, lease),
// never a bare or stale copy.
func (c *cluster) checkNodeRecord() {
	c.t.Helper()
	c.waitHeartbeats(2)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	n, err := c.store.GetNode(ctx, c.nodeID)
	if err != nil {
		c.t.Fatal(err)
	}
	if n.GetAddress() != c.agent.addr || n.GetLeaseId() == 0 || len(n.GetCapabilities().GetRuntimes()) == 0 ||
		n.GetState() != persysv1.NodeState_NODE_STATE_READY {
		c.t.Fatalf("node record in etcd is not the registration of the agent at %s: %v", c.agent.addr, n)
	}
}

func findRejection(d *persysv1.PlacementDecision, node string) *persysv1.NodeRejection {
	for _, r := range d.GetRejections() {
		if r.GetNodeId() == node {
			return r
		}
	}
	return nil
}

// TestControlLoop drives one scheduler and one real agent through the
// life of a small cluster: placement failures, a running workload, idle
// heartbeats, orphan collection, an agent restart, node loss and return,
// a scheduler restart, and deletion. The subtests share the cluster and
// run in order.
func TestControlLoop(t *testing.T) {
	c := newCluster(t)
	web := c.name("web")
	late := c.name("late")
	big := c.name("big")
	sel := c.name("sel")

	t.Run("no feasible node", func(t *testing.T) {
		c.t = t
		c.apply(big, c.spec(64*1024*mib, nil))
		v := c.waitStatus(big, persysv1.ActualState_ACTUAL_STATE_PENDING, persysv1.FailureReason_FAILURE_REASON_NO_FEASIBLE_NODE)
		r := findRejection(v.GetAssignment().GetDecision(), c.nodeID)
		if r == nil || r.GetReason() != persysv1.RejectReason_REJECT_REASON_INSUFFICIENT_MEMORY {
			t.Fatalf("%s: rejection of %s = %v, want INSUFFICIENT_MEMORY (decision %v)", big, c.nodeID, r, v.GetAssignment().GetDecision())
		}
		if v.GetAssignment().GetNodeId() != "" {
			t.Fatalf("%s: assigned to %q although nothing fits", big, v.GetAssignment().GetNodeId())
		}

		c.apply(sel, c.spec(64*mib, map[string]string{"zone": "nowhere"}))
		v = c.waitStatus(sel, persysv1.ActualState_ACTUAL_STATE_PENDING, persysv1.FailureReason_FAILURE_REASON_NO_FEASIBLE_NODE)
		r = findRejection(v.GetAssignment().GetDecision(), c.nodeID)
		if r == nil || r.GetReason() != persysv1.RejectReason_REJECT_REASON_SELECTOR_MISMATCH {
			t.Fatalf("%s: rejection of %s = %v, want SELECTOR_MISMATCH", sel, c.nodeID, r)
		}
		for _, n := range []string{big, sel} {
			if got := len(c.containers(n)); got != 0 {
				t.Fatalf("%s has %d containers although it was never placed", n, got)
			}
		}
	})

	var webID string
	if !t.Run("running", func(t *testing.T) {
		c.t = t
		if r := c.apply(web, c.spec(64*mib, map[string]string{"zone": "test"})).GetResult(); r != "created" {
			t.Fatalf("apply result %q, want created", r)
		}
		v := c.waitRunning(web)
		if v.GetStatus().GetNodeId() != c.nodeID || v.GetAssignment().GetNodeId() != c.nodeID {
			t.Fatalf("status on %q, assignment on %q; want %s", v.GetStatus().GetNodeId(), v.GetAssignment().GetNodeId(), c.nodeID)
		}
		info := c.onlyContainer(web)
		if !info.State.Running {
			t.Fatalf("container %s is %s, want running", info.ID[:12], info.State.Status)
		}
		webID = info.ID
		if r := c.apply(web, c.spec(64*mib, map[string]string{"zone": "test"})).GetResult(); r != "unchanged" {
			t.Fatalf("second identical apply result %q, want unchanged", r)
		}
	}) {
		t.FailNow()
	}

	t.Run("idle heartbeats do not write etcd", func(t *testing.T) {
		c.t = t
		// Let the report of the new container settle first.
		c.waitHeartbeats(2)
		before := c.revision()
		c.waitHeartbeats(6)
		if after := c.revision(); after != before {
			t.Fatalf("etcd revision moved from %d to %d over 6 idle heartbeats; keys written: %v",
				before, after, c.keysChangedSince(before))
		}
	})

	t.Run("orphan is garbage-collected", func(t *testing.T) {
		c.t = t
		const metric = "persys_scheduler_orphans_removed_total"
		before := c.metric(metric, nil)
		name := c.name("orphan")
		ctx := context.Background()
		created, err := c.docker.ContainerCreate(ctx, &container.Config{
			Image: c.image,
			Labels: map[string]string{
				runtime.LabelManaged:  "true",
				runtime.LabelNode:     c.nodeID,
				docker.LabelRuntime:   "docker",
				runtime.LabelWorkload: name,
				runtime.LabelUID:      "orphan-" + randomHex(4),
				runtime.LabelRevision: "1",
				runLabel:              c.prefix,
			},
		}, &container.HostConfig{}, nil, nil, "persys-"+name)
		if err != nil {
			t.Fatal(err)
		}
		if err := c.docker.ContainerStart(ctx, created.ID, container.StartOptions{}); err != nil {
			t.Fatal(err)
		}
		waitFor(t, "the orphan container to be removed", waitLong, func() (bool, string) {
			n := len(c.containers(name))
			return n == 0, fmt.Sprintf("%d containers", n)
		})
		waitFor(t, metric+" to grow", waitLong, func() (bool, string) {
			got := c.metric(metric, nil)
			return got > before, fmt.Sprintf("%v (was %v)", got, before)
		})
		if _, err := c.get(name); status.Code(err) != codes.NotFound {
			t.Fatalf("orphan %s is known to the scheduler: %v", name, err)
		}
		if info := c.onlyContainer(web); info.ID != webID {
			t.Fatalf("%s was replaced while collecting the orphan: %s, was %s", web, info.ID[:12], webID[:12])
		}
	})

	t.Run("agent restart re-adopts", func(t *testing.T) {
		c.t = t
		before := c.onlyContainer(web)
		c.agent.stop(t)
		c.agent = c.startAgent()
		waitFor(t, "the new agent to register", waitLong, func() (bool, string) {
			n, err := c.node()
			if err != nil {
				return false, err.Error()
			}
			return n.GetAddress() == c.agent.addr && n.GetState() == persysv1.NodeState_NODE_STATE_READY,
				n.GetAddress() + " " + n.GetState().String()
		})
		c.checkNodeRecord()
		c.waitRunning(web)
		after := c.onlyContainer(web)
		if after.ID != before.ID || after.State.StartedAt != before.State.StartedAt || !after.State.Running {
			t.Fatalf("container changed over the agent restart: %s started %s (running %v), was %s started %s",
				after.ID[:12], after.State.StartedAt, after.State.Running, before.ID[:12], before.State.StartedAt)
		}
	})

	t.Run("node loss and return", func(t *testing.T) {
		c.t = t
		before := c.onlyContainer(web)
		c.agent.stop(t)
		v := c.waitStatus(web, persysv1.ActualState_ACTUAL_STATE_UNKNOWN, persysv1.FailureReason_FAILURE_REASON_NODE_LOST)
		if v.GetAssignment().GetNodeId() != c.nodeID {
			t.Fatalf("%s lost its assignment with its node: %v", web, v.GetAssignment())
		}
		c.waitNode(persysv1.NodeState_NODE_STATE_NOT_READY)

		// A workload applied while no node is ready waits, and is placed
		// as soon as the node returns (no timer, no resync needed).
		c.apply(late, c.spec(64*mib, nil))
		v = c.waitStatus(late, persysv1.ActualState_ACTUAL_STATE_PENDING, persysv1.FailureReason_FAILURE_REASON_NO_FEASIBLE_NODE)
		if r := findRejection(v.GetAssignment().GetDecision(), c.nodeID); r.GetReason() != persysv1.RejectReason_REJECT_REASON_NODE_NOT_READY {
			t.Fatalf("%s: rejection of %s = %v, want NODE_NOT_READY", late, c.nodeID, r)
		}

		c.agent = c.startAgent()
		c.waitNode(persysv1.NodeState_NODE_STATE_READY)
		c.checkNodeRecord()
		c.waitRunning(web)
		c.waitRunning(late)
		if after := c.onlyContainer(web); after.ID != before.ID || after.State.StartedAt != before.State.StartedAt {
			t.Fatalf("%s was restarted over the node loss: %s started %s, was %s started %s",
				web, after.ID[:12], after.State.StartedAt, before.ID[:12], before.State.StartedAt)
		}
		c.onlyContainer(late)
		// Nothing failed on the way: losing a node makes its workloads
		// UNKNOWN, and its return must not pass through a failed apply.
		if n := c.metricSum("persys_scheduler_workload_failures_total"); n != 0 {
			t.Fatalf("%v workloads turned FAILED during the run", n)
		}
	})

	t.Run("scheduler restart recovers", func(t *testing.T) {
		c.t = t
		before := map[string]container.InspectResponse{web: c.onlyContainer(web), late: c.onlyContainer(late)}

		// A watch stream open across the restart must not hold the old
		// scheduler up, and must end.
		wctx, wcancel := context.WithCancel(context.Background())
		defer wcancel()
		stream, err := c.control.WatchWorkload(wctx, &persysv1.GetWorkloadRequest{Name: web})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := stream.Recv(); err != nil {
			t.Fatalf("watch %s: %v", web, err)
		}

		c.sched.stop(t)
		recvErr := make(chan error, 1)
		go func() {
			_, err := stream.Recv()
			recvErr <- err
		}()
		select {
		case err := <-recvErr:
			if err == nil {
				t.Fatal("watch stream still delivers after its scheduler stopped")
			}
		case <-time.After(stopWithin):
			t.Fatalf("watch stream still open %s after its scheduler stopped", stopWithin)
		}

		c.startScheduler(c.schedAddr)
		// Wait until the new scheduler has heard the agent, so that what it
		// reports is what it saw and not only what etcd remembered.
		c.waitHeartbeats(3)
		for _, name := range []string{web, late} {
			c.waitRunning(name)
			after := c.onlyContainer(name)
			if after.ID != before[name].ID || after.State.StartedAt != before[name].State.StartedAt {
				t.Fatalf("%s changed over the scheduler restart: %s started %s, was %s started %s",
					name, after.ID[:12], after.State.StartedAt, before[name].ID[:12], before[name].State.StartedAt)
			}
		}
		// The agent's reports told it everything runs: nothing to re-apply.
		if n := c.metricSum("persys_scheduler_applies_total"); n != 0 {
			t.Fatalf("the new scheduler sent %v applies for workloads the node reported running", n)
		}
		c.waitNode(persysv1.NodeState_NODE_STATE_READY)
	})

	t.Run("delete", func(t *testing.T) {
		c.t = t
		for _, name := range []string{web, late, big, sel} {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			_, err := c.control.DeleteWorkload(ctx, &persysv1.DeleteRequest{Name: name})
			cancel()
			if err != nil && status.Code(err) != codes.NotFound { // NotFound: an earlier subtest failed
				t.Fatalf("delete %s: %v", name, err)
			}
		}
		for _, name := range []string{web, late, big, sel} {
			waitFor(t, name+" to be gone", waitLong, func() (bool, string) {
				_, err := c.get(name)
				n := len(c.containers(name))
				return status.Code(err) == codes.NotFound && n == 0, fmt.Sprintf("get: %v; %d containers", err, n)
			})
		}
	})
}

// TestNodeCallsBeforeLoad checks that a scheduler serving before its cache
// is loaded refuses calls instead of answering from an empty cache: an
// agent registering then would have every workload it runs taken for an
// orphan and deleted.
func TestNodeCallsBeforeLoad(t *testing.T) {
	st, _ := storetest.New(t)
	const nodeID = "st-node-before-load"
	b, err := pki.Bootstrap(t.TempDir(), []string{nodeID}, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	serverTLS, err := pki.ServerTLS(b.Scheduler)
	if err != nil {
		t.Fatal(err)
	}
	clientTLS, err := pki.ClientTLS(b.Scheduler, "")
	if err != nil {
		t.Fatal(err)
	}
	s, err := scheduler.New(scheduler.Config{Store: st, Agents: scheduler.TLSDialer{TLS: clientTLS},
		Logger: testLogger(), Registry: prometheus.NewRegistry(), HeartbeatInterval: heartbeat, LeaseTTL: leaseTTL})
	if err != nil {
		t.Fatal(err)
	}
	ln := listen(t, "127.0.0.1:0")
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	defer wg.Wait()
	defer cancel()
	wg.Add(1)
	go func() {
		defer wg.Done()
		if err := scheduler.Serve(ctx, ln, s, serverTLS); err != nil {
			t.Errorf("serve: %v", err)
		}
	}()

	c := &cluster{t: t, root: t}
	agentCli := persysv1.NewControlServiceClient(c.dial(ln.Addr().String(), b.Agents[nodeID]))
	adminCli := persysv1.NewControlServiceClient(c.dial(ln.Addr().String(), b.Admin))
	register := func(workloads ...*persysv1.WorkloadStatus) error {
		rctx, rcancel := context.WithTimeout(ctx, 10*time.Second)
		defer rcancel()
		_, err := agentCli.RegisterNode(rctx, &persysv1.RegisterNodeRequest{
			NodeId: nodeID, Address: "127.0.0.1:1",
			Capabilities: &persysv1.NodeCapabilities{Capacity: &persysv1.Resources{CpuMillis: 1000, MemoryBytes: 512 * mib},
				Runtimes: []persysv1.WorkloadType{persysv1.WorkloadType_WORKLOAD_TYPE_CONTAINER}},
			Workloads: workloads,
		})
		return err
	}

	calls := []struct {
		name string
		call func() error
	}{
		{"RegisterNode", func() error {
			// What a restarted agent reports: a workload the scheduler
			// assigned to it, which an empty cache would take for an orphan.
			return register(&persysv1.WorkloadStatus{Name: "known-elsewhere", Uid: "u1", Revision: 1,
				State: persysv1.ActualState_ACTUAL_STATE_RUNNING})
		}},
		{"Heartbeat", func() error {
			_, err := agentCli.Heartbeat(ctx, &persysv1.HeartbeatRequest{NodeId: nodeID})
			return err
		}},
		{"GetWorkload", func() error {
			_, err := adminCli.GetWorkload(ctx, &persysv1.GetWorkloadRequest{Name: "known-elsewhere"})
			return err
		}},
		{"ListWorkloads", func() error {
			_, err := adminCli.ListWorkloads(ctx, &persysv1.ListWorkloadsRequest{})
			return err
		}},
	}
	for _, tc := range calls {
		t.Run(tc.name+" before load", func(t *testing.T) {
			if err := tc.call(); status.Code(err) != codes.Unavailable {
				t.Fatalf("%s before the cache is loaded: %v, want Unavailable", tc.name, err)
			}
		})
	}

	wg.Add(1)
	go func() {
		defer wg.Done()
		if err := s.Run(ctx); err != nil && !errors.Is(err, context.Canceled) {
			t.Errorf("run: %v", err)
		}
	}()
	waitFor(t, "register after load", waitLong, func() (bool, string) {
		err := register()
		return err == nil, fmt.Sprint(err)
	})
}
