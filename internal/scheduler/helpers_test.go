package scheduler_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/client"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"

	persysv1 "github.com/persys-dev/compute/api/persys/v1"
	"github.com/persys-dev/compute/api/persys/v1/persysv1grpc"
	"github.com/persys-dev/compute/internal/agent"
	"github.com/persys-dev/compute/internal/nodechannel"
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

// clusterOptions shape a test cluster.
type clusterOptions struct {
	// nodes is how many agents (nodes) the cluster has; default 1. Node i
	// is nodeIDs[i]; the first is nodeID.
	nodes int
	// config adjusts the Config of every scheduler the cluster starts.
	config func(*scheduler.Config)
	// agentHeartbeat is what agents use before the scheduler tells them
	// (default heartbeat).
	agentHeartbeat time.Duration
	// nodeIDs, when set, are the nodes' ids (and their number), instead of
	// ids unique to the run: two clusters may then share one.
	nodeIDs []string
}

// cluster is a scheduler and one or more agents over an embedded etcd and
// the local Docker engine, all talking mTLS. Every agent has a node id of
// its own (unique per run), so the agents sharing the engine never see
// each other's containers.
type cluster struct {
	// t is the running (sub)test, for failures; root owns the cleanups of
	// everything the cluster starts.
	t         *testing.T
	root      *testing.T
	opts      clusterOptions
	bundle    *pki.Bundle
	emb       *store.Embedded
	store     *store.Store
	etcd      *clientv3.Client
	docker    *client.Client
	image     string
	prefix    string
	nodeID    string
	nodeIDs   []string
	schedAddr string
	agentDirs map[string]string
	control   persysv1grpc.ControlServiceClient

	sched  *schedProc
	agent  *agentProc
	agents map[string]*agentProc
}

type schedProc struct {
	s    *scheduler.Scheduler
	reg  *prometheus.Registry
	addr string
	// cancel ends the scheduler's context without waiting; stop cancels
	// and waits until Run and Serve returned.
	cancel func()
	stop   func(t *testing.T)
}

type agentProc struct {
	addr string
	stop func(t *testing.T)
}

// newCluster starts one scheduler and one agent.
func newCluster(t *testing.T) *cluster {
	t.Helper()
	return newClusterWith(t, clusterOptions{})
}

// newClusterWith starts one scheduler and opts.nodes agents, and waits
// until every node is ready.
func newClusterWith(t *testing.T, opts clusterOptions) *cluster {
	t.Helper()
	c := newBareCluster(t, opts)
	c.sched = c.startScheduler("127.0.0.1:0")
	c.schedAddr = c.sched.addr
	c.control = persysv1grpc.NewControlServiceClient(c.dial(c.schedAddr, c.bundle.Admin))
	for _, id := range c.nodeIDs {
		c.startAgentOn(id, []string{c.schedAddr})
	}
	c.agent = c.agents[c.nodeID]
	for _, id := range c.nodeIDs {
		c.waitNodeState(id, persysv1.NodeState_NODE_STATE_READY)
	}
	c.checkNodeRecord()
	return c
}

// newBareCluster prepares the store, the certificates and the image, and
// starts nothing.
func newBareCluster(t *testing.T, opts clusterOptions) *cluster {
	t.Helper()
	if opts.nodes <= 0 {
		opts.nodes = 1
	}
	if opts.agentHeartbeat <= 0 {
		opts.agentHeartbeat = heartbeat
	}
	cli, image := images.HelloImage(t)
	emb := storetest.Embedded(t)
	etcd, err := emb.Client()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = etcd.Close() })
	st := store.New(etcd, store.Options{})
	run := randomHex(4)
	var nodes []string
	dirs := map[string]string{}
	if len(opts.nodeIDs) > 0 {
		opts.nodes = len(opts.nodeIDs)
	}
	for i := 0; i < opts.nodes; i++ {
		// A node id of its own keeps this run's containers apart from
		// those of other agents on the shared engine (the runtime scopes
		// to its node).
		id := fmt.Sprintf("st-node-%s-%c", run, 'a'+i)
		if len(opts.nodeIDs) > 0 {
			id = opts.nodeIDs[i]
		}
		nodes = append(nodes, id)
		dirs[id] = t.TempDir()
	}
	b, err := pki.Bootstrap(t.TempDir(), nodes, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	c := &cluster{t: t, root: t, opts: opts, bundle: b, emb: emb, store: st, etcd: etcd, docker: cli, image: image,
		prefix: "st" + run, nodeID: nodes[0], nodeIDs: nodes, agentDirs: dirs, agents: map[string]*agentProc{}}
	// Registered first so that it runs last, once the schedulers and the
	// agents have stopped and cannot create anything any more.
	t.Cleanup(c.removeContainers)
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

// adminClient is a ControlService client with the admin identity.
func (c *cluster) adminClient(addr string) persysv1grpc.ControlServiceClient {
	return persysv1grpc.NewControlServiceClient(c.dial(addr, c.bundle.Admin))
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
// addr, waits until it is ready and makes it the cluster's scheduler.
func (c *cluster) startScheduler(addr string) *schedProc {
	c.t.Helper()
	p := c.startSchedulerWith(schedOptions{addr: addr})
	c.sched = p
	return p
}

// schedOptions shape one scheduler replica.
type schedOptions struct {
	addr string
	// store defaults to the cluster's.
	store *store.Store
	// electionTTL, when set, makes the scheduler a replica that campaigns
	// with its listen address.
	electionTTL time.Duration
}

// startSchedulerWith runs a scheduler; with an election it does not wait
// to lead, only to serve.
func (c *cluster) startSchedulerWith(o schedOptions) *schedProc {
	t := c.t
	t.Helper()
	serverTLS, err := pki.ServerTLS(c.bundle.Scheduler)
	if err != nil {
		t.Fatal(err)
	}
	st := o.store
	if st == nil {
		st = c.store
	}
	ln := listen(t, o.addr)
	addr := ln.Addr().String()
	reg := prometheus.NewRegistry()
	cfg := scheduler.Config{
		Store:             st,
		Logger:            testLogger().With("component", "scheduler", "scheduler", addr),
		Registry:          reg,
		HeartbeatInterval: heartbeat,
		LeaseTTL:          leaseTTL,
		// Long, so that every outcome here comes from the event-driven path
		// and not from the periodic safety net.
		ResyncInterval: 10 * time.Minute,
		RetryBase:      200 * time.Millisecond,
		RetryMax:       2 * time.Second,
	}
	if c.opts.config != nil {
		c.opts.config(&cfg)
	}
	if o.electionTTL > 0 {
		cfg.Election = &scheduler.ElectionConfig{Address: addr, TTL: o.electionTTL}
	}
	s, err := scheduler.New(cfg)
	if err != nil {
		_ = ln.Close()
		t.Fatal(err)
	}
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
			t.Fatalf("scheduler %s did not stop within %s of its context ending", addr, stopWithin)
		}
		close(errs)
		for err := range errs {
			if err != nil {
				t.Errorf("scheduler %s: %v", addr, err)
			}
		}
		if d := s.NodeIndexDrift(); d != "" {
			t.Errorf("scheduler %s: workloads-by-node index drifted from the cache: %s", addr, d)
		}
	}
	p := &schedProc{s: s, reg: reg, addr: addr, cancel: cancel}
	p.stop = onceStop(stop)
	c.root.Cleanup(func() { p.stop(c.root) })
	waitFor(t, "scheduler ready", waitLong, func() (bool, string) {
		if err := s.Ready(); err != nil {
			return false, err.Error()
		}
		return true, ""
	})
	return p
}

func onceStop(f func(t *testing.T)) func(t *testing.T) {
	var once sync.Once
	return func(t *testing.T) { once.Do(func() { f(t) }) }
}

// startAgent runs a real agent for the cluster's first node, reporting to
// the cluster's scheduler address.
func (c *cluster) startAgent() *agentProc {
	c.t.Helper()
	return c.startAgentOn(c.nodeID, []string{c.schedAddr})
}

// startAgentOn runs a real agent for node id on the local engine, with the
// node's data folder, reporting through one gRPC connection to the
// schedulers at addrs (the first reachable one is used).
func (c *cluster) startAgentOn(id string, addrs []string) *agentProc {
	c.t.Helper()
	return c.startAgentWith(id, addrs, false)
}

// startFollowingAgent is startAgentOn with an agent that follows the
// scheduler leader among the replicas at addrs (agent.DialSchedulers: the
// x-persys-leader hint of a follower's refusal, round robin otherwise).
func (c *cluster) startFollowingAgent(id string, addrs []string) *agentProc {
	c.t.Helper()
	return c.startAgentWith(id, addrs, true)
}

func (c *cluster) startAgentWith(id string, addrs []string, follow bool) *agentProc {
	t := c.t
	t.Helper()
	files := c.bundle.Agents[id]
	clientTLS, err := pki.ClientTLS(files, "")
	if err != nil {
		t.Fatal(err)
	}
	var channel persysv1grpc.NodeChannelServiceClient
	var schedulers *agent.Schedulers
	var closeControl func() error
	if follow {
		schedulers, err = agent.DialSchedulers(addrs, clientTLS)
		if err != nil {
			t.Fatal(err)
		}
		closeControl = schedulers.Close
	} else {
		conn, err := agent.DialScheduler(addrs, clientTLS)
		if err != nil {
			t.Fatal(err)
		}
		closeControl = conn.Close
		channel = persysv1grpc.NewNodeChannelServiceClient(conn)
	}
	// As persys agent does: the agent learns the cluster id, the runtime
	// labels and scopes by it.
	cl := runtime.NewCluster()
	rt, err := docker.New(docker.Options{Client: c.docker, Logger: testLogger(), StopTimeout: 2 * time.Second, NodeID: id, Cluster: cl})
	if err != nil {
		t.Fatal(err)
	}
	a, err := agent.New(agent.Config{
		NodeID:            id,
		AdvertiseAddr:     "127.0.0.1",
		Labels:            map[string]string{"zone": "test"},
		Runtimes:          []runtime.Runtime{rt},
		Channel:           channel,
		Schedulers:        schedulers,
		HeartbeatInterval: c.opts.agentHeartbeat,
		Capacity:          &persysv1.Resources{CpuMillis: 2000, MemoryBytes: 1024 * mib, DiskBytes: 10 * 1024 * mib},
		DataDir:           c.agentDirs[id],
		Cluster:           cl,
		Logger:            testLogger().With("component", "agent", "node", id),
		Registry:          prometheus.NewRegistry(),
	})
	if err != nil {
		_ = closeControl()
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	errs := make(chan error, 1)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { defer wg.Done(); errs <- a.Run(ctx) }()
	p := &agentProc{addr: "127.0.0.1"}
	p.stop = onceStop(func(t *testing.T) {
		t.Helper()
		cancel()
		done := make(chan struct{})
		go func() { wg.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(stopWithin):
			t.Fatalf("agent %s did not stop within %s", id, stopWithin)
		}
		close(errs)
		for err := range errs {
			if err != nil {
				t.Errorf("agent %s: %v", id, err)
			}
		}
		_ = closeControl()
	})
	c.root.Cleanup(func() { p.stop(c.root) })
	c.agents[id] = p
	return p
}

// removeContainers removes every container this run created.
func (c *cluster) removeContainers() {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	listRes, err := c.docker.ContainerList(ctx, client.ContainerListOptions{All: true,
		Filters: make(client.Filters).Add("label", runLabel+"="+c.prefix)})
	list := listRes.Items
	if err != nil {
		c.t.Errorf("cleanup: list containers: %v", err)
		return
	}
	for _, ct := range list {
		if _, err := c.docker.ContainerRemove(ctx, ct.ID, client.ContainerRemoveOptions{Force: true, RemoveVolumes: true}); err != nil {
			c.t.Errorf("cleanup: remove %s: %v", ct.ID, err)
		}
	}
}

// containers lists the containers of workload name, on every node.
func (c *cluster) containers(name string) []container.Summary {
	c.t.Helper()
	listRes, err := c.docker.ContainerList(context.Background(), client.ContainerListOptions{All: true,
		Filters: make(client.Filters).Add("label", runtime.LabelWorkload+"="+name)})
	list := listRes.Items
	if err != nil {
		c.t.Fatal(err)
	}
	return list
}

// copies counts the containers of workload name by node: all of them, and
// the running ones.
func (c *cluster) copies(name string) (all, running map[string]int) {
	c.t.Helper()
	all, running = map[string]int{}, map[string]int{}
	for _, ct := range c.containers(name) {
		n := ct.Labels[runtime.LabelNode]
		all[n]++
		if ct.State == container.StateRunning {
			running[n]++
		}
	}
	return all, running
}

// onlyContainer returns the one container of workload name, failing when
// there are none or several.
func (c *cluster) onlyContainer(name string) container.InspectResponse {
	c.t.Helper()
	list := c.containers(name)
	if len(list) != 1 {
		ids := make([]string, 0, len(list))
		for _, ct := range list {
			ids = append(ids, ct.ID[:12]+" "+string(ct.State)+" on "+ct.Labels[runtime.LabelNode])
		}
		c.t.Fatalf("workload %s: want exactly one container, have %d: %v", name, len(list), ids)
	}
	infoRes, err := c.docker.ContainerInspect(context.Background(), list[0].ID, client.ContainerInspectOptions{})
	info := infoRes.Container
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
			fmt.Sprintf("%s/%s on %s: %s", st.GetState(), st.GetReason(), st.GetNodeId(), st.GetMessage())
	})
	return v
}

func (c *cluster) waitRunning(name string) *persysv1.WorkloadView {
	c.t.Helper()
	return c.waitStatus(name, persysv1.ActualState_ACTUAL_STATE_RUNNING, persysv1.FailureReason_FAILURE_REASON_UNSPECIFIED)
}

// waitRunningOn waits until the workload runs on node, as the scheduler
// sees it (status and assignment).
func (c *cluster) waitRunningOn(name, node string) *persysv1.WorkloadView {
	c.t.Helper()
	var v *persysv1.WorkloadView
	waitFor(c.t, fmt.Sprintf("%s to run on %s", name, node), waitLong, func() (bool, string) {
		var err error
		v, err = c.get(name)
		if err != nil {
			return false, err.Error()
		}
		st := v.GetStatus()
		return st.GetState() == persysv1.ActualState_ACTUAL_STATE_RUNNING && st.GetNodeId() == node &&
				v.GetAssignment().GetNodeId() == node,
			fmt.Sprintf("%s/%s on %s (assigned to %s): %s", st.GetState(), st.GetReason(), st.GetNodeId(),
				v.GetAssignment().GetNodeId(), st.GetMessage())
	})
	return v
}

func (c *cluster) nodeByID(id string) (*persysv1.Node, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	resp, err := c.control.ListNodes(ctx, &persysv1.ListNodesRequest{})
	if err != nil {
		return nil, err
	}
	for _, n := range resp.GetNodes() {
		if n.GetId() == id {
			return n, nil
		}
	}
	return nil, fmt.Errorf("node %s not listed (%d nodes)", id, len(resp.GetNodes()))
}

func (c *cluster) node() (*persysv1.Node, error) { return c.nodeByID(c.nodeID) }

func (c *cluster) waitNode(state persysv1.NodeState) *persysv1.Node {
	c.t.Helper()
	return c.waitNodeState(c.nodeID, state)
}

func (c *cluster) waitNodeState(id string, state persysv1.NodeState) *persysv1.Node {
	c.t.Helper()
	var n *persysv1.Node
	waitFor(c.t, "node "+id+" "+state.String(), waitLong, func() (bool, string) {
		var err error
		n, err = c.nodeByID(id)
		if err != nil {
			return false, err.Error()
		}
		return n.GetState() == state, n.GetState().String()
	})
	return n
}

// events lists the workload's events, oldest first.
func (c *cluster) events(name string) []*persysv1.Event {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	resp, err := c.control.ListEvents(ctx, &persysv1.ListEventsRequest{Workload: name, Limit: 1000})
	if err != nil {
		c.t.Fatalf("list events of %s: %v", name, err)
	}
	return resp.GetEvents()
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
	return counterSum(c.t, c.sched.reg, name)
}

// counterSum adds up every series of the counter name in g.
func counterSum(t testing.TB, g prometheus.Gatherer, name string) float64 {
	t.Helper()
	mfs, err := g.Gather()
	if err != nil {
		t.Fatal(err)
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

// checkNodeRecord checks the first node's record in etcd once registration
// has settled: it is the whole registration (address, capabilities,
// lease), never a bare or stale copy.
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

// serveChannel holds node id's control stream over conn, answering with
// srv, until the test ends: an agent whose loop does not run.
func serveChannel(t *testing.T, conn grpc.ClientConnInterface, id string, srv persysv1grpc.AgentServiceServer) *nodechannel.Link {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	accepted := make(chan struct{})
	done := make(chan error, 1)
	var link *nodechannel.Link
	go func() {
		stream, err := persysv1grpc.NewNodeChannelServiceClient(conn).Connect(ctx)
		if err == nil {
			err = nodechannel.Serve(ctx, stream, nodechannel.Agent{NodeID: id, Server: srv,
				Linked: func(l *nodechannel.Link) { link = l; close(accepted) }})
		}
		done <- err
	}()
	t.Cleanup(func() { cancel(); <-done })
	select {
	case <-accepted:
	case err := <-done:
		done <- err
		t.Fatalf("node %s control stream: %v", id, err)
	case <-time.After(30 * time.Second):
		t.Fatalf("node %s control stream not accepted", id)
	}
	return link
}
