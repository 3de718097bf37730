package agent_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"testing"
	"time"

	persysv1 "github.com/persys-dev/compute/api/persys/v1"
	"github.com/persys-dev/compute/api/persys/v1/persysv1grpc"
	"github.com/persys-dev/compute/internal/scheduler"
	"github.com/persys-dev/compute/internal/testutil/callrec"
	"github.com/persys-dev/compute/internal/testutil/eventually"
	"github.com/persys-dev/compute/internal/testutil/freeport"
	"github.com/persys-dev/compute/internal/testutil/images"
	"github.com/persys-dev/compute/internal/testutil/realsched"
)

// newRealEnv is a test's PKI and a real scheduler on embedded etcd; the
// agent registers with it and heartbeats to it as in production.
func newRealEnv(t *testing.T) (*env, *realsched.Cluster) {
	t.Helper()
	s := realsched.Start(t, realsched.Options{Nodes: []string{nodeID}, NoSecrets: true, Config: shortLeases})
	return &env{bundle: s.Bundle, addr: s.Addrs[0], sched: s, image: "app:1", prefix: randomPrefix()}, s
}

// shortLeases makes a node's lease and heartbeats short, so that a test
// sees several renewals.
func shortLeases(c *scheduler.Config) {
	c.HeartbeatInterval, c.LeaseTTL = 200*time.Millisecond, 2*time.Second
}

func randomPrefix() string {
	var rnd [4]byte
	_, _ = rand.Read(rnd[:])
	return "agt-" + hex.EncodeToString(rnd[:])
}

// waitNodeReady waits until the scheduler reports the node READY.
func waitNodeReady(t *testing.T, admin persysv1grpc.ControlServiceClient, within time.Duration) *persysv1.Node {
	t.Helper()
	var n *persysv1.Node
	eventually.Eventually(t, "node READY at the scheduler", within, func() (bool, string) {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		var err error
		if n, err = admin.GetNode(ctx, &persysv1.GetNodeRequest{Id: nodeID}); err != nil {
			return false, err.Error()
		}
		return n.GetState() == persysv1.NodeState_NODE_STATE_READY, n.GetState().String()
	})
	return n
}

// TestAgentRetriesUntilSchedulerStarts: an agent started before any
// scheduler answers keeps retrying its registration (not ready meanwhile)
// and registers once a real scheduler serves its address.
func TestAgentRetriesUntilSchedulerStarts(t *testing.T) {
	b := realsched.NewBundle(t, nodeID)
	addr := freeport.Addr(t, "127.0.0.1")
	e := &env{bundle: b, addr: addr, image: "app:1", prefix: randomPrefix()}
	ra, _ := e.startSimAgent(t)
	// Several attempts fail meanwhile, each counted, and the agent is not
	// ready through them.
	eventually.Eventually(t, "two failed registrations", waitFor, func() (bool, string) {
		n := metricValue(t, ra.registry, "persys_agent_registration_failures_total", nil)
		return n >= 2, fmt.Sprintf("%v failed", n)
	})
	if err := ra.agent.Ready(); err == nil {
		t.Fatal("agent ready without a scheduler")
	}
	s := realsched.Start(t, realsched.Options{Bundle: b, Addr: addr, NoSecrets: true, Config: shortLeases})
	waitNodeReady(t, s.Admin(t), waitFor)
	eventually.Eventually(t, "agent ready after the scheduler registered it", waitFor, func() (bool, string) {
		if err := ra.agent.Ready(); err != nil {
			return false, err.Error()
		}
		return true, ""
	})
}

// TestAgentWithRealScheduler: the node the agent registers is READY at a
// real scheduler with the agent's labels and capacity, and stays READY for
// several lease TTLs: the heartbeats (at the interval the scheduler told,
// not the agent's 10 minutes) renew its lease.
func TestAgentWithRealScheduler(t *testing.T) {
	e, s := newRealEnv(t)
	ra, _ := e.startSimAgent(t)
	admin := s.Admin(t)
	waitNodeReady(t, admin, waitFor)
	node := func() *persysv1.Node {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		n, err := admin.GetNode(ctx, &persysv1.GetNodeRequest{Id: nodeID})
		if err != nil {
			return nil
		}
		return n
	}
	n := node()
	if n.GetCapabilities().GetLabels()["zone"] != "test" || n.GetCapabilities().GetCapacity().GetCpuMillis() != 2000 {
		t.Errorf("node at the scheduler = labels %v capacity %v, want zone=test and 2000 millicpu", n.GetCapabilities().GetLabels(), n.GetCapabilities().GetCapacity())
	}
	// The scheduler may show the node READY a moment before the agent has
	// read the registration's answer.
	waitReady(t, ra.agent)
	// Three lease TTLs: without renewing heartbeats the lease would lapse.
	end := time.Now().Add(3 * 2 * time.Second)
	for time.Now().Before(end) {
		if st := node().GetState(); st != persysv1.NodeState_NODE_STATE_READY {
			t.Fatalf("node went %s while the agent heartbeats", st)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// TestAgentRegistersAgainWhenAsked: a scheduler that does not know the
// node answers its heartbeat with reregister, and the agent registers
// with it again. Here the scheduler is restarted after the node's record
// was removed from the store meanwhile. (Registrations refused while no
// scheduler answers: TestAgentRetriesUntilSchedulerStarts.)
// TestAgentRegistersAgainWhenAsked: a scheduler restarted without the
// node's record takes the registration in the hello of the agent's new
// stream; once the node's lease is replaced under a live stream, the
// scheduler answers a heartbeat with reregister, and the agent registers
// again on a new stream.
func TestAgentRegistersAgainWhenAsked(t *testing.T) {
	rec := &callrec.Recorder{}
	s := realsched.Start(t, realsched.Options{Nodes: []string{nodeID}, NoSecrets: true, Config: shortLeases, ServerOptions: rec.ServerOptions()})
	addr := s.Addrs[0]
	e := &env{bundle: s.Bundle, addr: addr, sched: s, image: "app:1", prefix: randomPrefix()}
	ra, _ := e.startSimAgent(t)
	waitNodeCall(t, rec, addr, "Heartbeat")
	s.Stop(0)
	if err := s.Store.DeleteNode(context.Background(), nodeID); err != nil {
		t.Fatal(err)
	}
	before := len(nodeCalls(rec, addr, true))
	s.Restart(t)

	eventually.Eventually(t, "a registration with the restarted scheduler", waitFor, func() (bool, string) {
		calls := nodeCalls(rec, addr, true)[before:]
		return len(calls) > 0, fmt.Sprintf("%d calls answered", len(calls))
	})
	if first := nodeCalls(rec, addr, true)[before]; first.Method != "RegisterNode" {
		t.Fatalf("the restarted scheduler answered %s first, want the registration in the new stream's hello", first.Method)
	}
	waitNodeReady(t, s.Admin(t), waitFor)

	// The lease is replaced under the live stream (as when etcd expired
	// it): the next heartbeat is answered reregister.
	before = len(nodeCalls(rec, addr, true))
	if _, err := s.Store.GrantNodeLease(context.Background(), nodeID, time.Minute); err != nil {
		t.Fatal(err)
	}
	ra.agent.Kick()
	eventually.Eventually(t, "a reregister answer, then a registration", waitFor, func() (bool, string) {
		asked := false
		for _, c := range nodeCalls(rec, addr, true)[before:] {
			if r, ok := c.Response.(*persysv1.HeartbeatResponse); ok && r.GetReregister() {
				asked = true
			}
			if asked && c.Method == "RegisterNode" {
				return true, ""
			}
		}
		return false, fmt.Sprintf("asked to register again: %v", asked)
	})
	waitNodeReady(t, s.Admin(t), waitFor)
	eventually.Eventually(t, "the agent ready", waitFor, func() (bool, string) {
		if err := ra.agent.Ready(); err != nil {
			return false, err.Error()
		}
		return true, ""
	})
}

// realEnv is a real scheduler that records the calls it answers, for an
// agent of node; cfg edits the scheduler's configuration after
// shortLeases.
type realEnv struct {
	*env
	s   *realsched.Cluster
	rec *callrec.Recorder
}

func newRecordedEnv(t *testing.T, node string, cfg func(*scheduler.Config)) *realEnv {
	t.Helper()
	rec := &callrec.Recorder{}
	s := realsched.Start(t, realsched.Options{Nodes: []string{node}, NoSecrets: true, ServerOptions: rec.ServerOptions(),
		Config: func(c *scheduler.Config) {
			shortLeases(c)
			if cfg != nil {
				cfg(c)
			}
		}})
	return &realEnv{env: &env{bundle: s.Bundle, addr: s.Addrs[0], sched: s, image: "app:1", prefix: randomPrefix(), node: node}, s: s, rec: rec}
}

// newDockerEnv is newRecordedEnv with the Docker engine, for a node id of
// the test's own: a scheduler removes what its node runs unplaced, so no
// two runs on one engine may share a node id.
func newDockerEnv(t *testing.T, cfg func(*scheduler.Config)) *realEnv {
	t.Helper()
	prefix := randomPrefix()
	r := newRecordedEnv(t, prefix+"-node", cfg)
	r.prefix = prefix
	r.withDocker(t)
	return r
}

// withDocker gives the env the Docker engine and the test image, and
// removes this run's containers when the test ends.
func (e *env) withDocker(t *testing.T) {
	t.Helper()
	e.cli, e.image = images.HelloImage(t)
	t.Cleanup(func() { e.removeContainers(t) })
}

// apply applies a workload through the scheduler and returns its uid.
func (r *realEnv) apply(t *testing.T, name string, spec *persysv1.WorkloadSpec) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	defer cancel()
	resp, err := r.s.Admin(t).ApplyWorkload(ctx, &persysv1.ApplyRequest{Name: name, Spec: spec})
	if err != nil {
		t.Fatalf("apply %s: %v", name, err)
	}
	return resp.GetWorkload().GetWorkload().GetUid()
}

// waitAgentState waits until the agent reports workload name in a state
// ok accepts, and returns that status.
func waitAgentState(t *testing.T, ra *runningAgent, name, what string, ok func(*persysv1.WorkloadStatus) bool) *persysv1.WorkloadStatus {
	t.Helper()
	var got *persysv1.WorkloadStatus
	eventually.Eventually(t, name+" "+what, waitFor, func() (bool, string) {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		st, err := ra.client.GetWorkloadStatus(ctx, &persysv1.GetWorkloadStatusRequest{Name: name})
		if err != nil {
			return false, err.Error()
		}
		got = st
		return ok(st), st.String()
	})
	return got
}

// heartbeatsTo are the heartbeats the scheduler answered, in order.
func (r *realEnv) heartbeats() []*persysv1.HeartbeatRequest {
	var out []*persysv1.HeartbeatRequest
	for _, c := range nodeCalls(r.rec, r.addr, true) {
		if c.Method == "Heartbeat" {
			out = append(out, c.Request.(*persysv1.HeartbeatRequest))
		}
	}
	return out
}

// waitHeartbeat waits for an answered heartbeat with index >= from that
// satisfies ok and returns it.
func (r *realEnv) waitHeartbeat(t *testing.T, from int, what string, ok func(*persysv1.HeartbeatRequest) bool) *persysv1.HeartbeatRequest {
	t.Helper()
	var got *persysv1.HeartbeatRequest
	eventually.Eventually(t, what, waitFor, func() (bool, string) {
		hbs := r.heartbeats()
		for _, hb := range hbs[min(from, len(hbs)):] {
			if ok(hb) {
				got = hb
				return true, ""
			}
		}
		return false, fmt.Sprintf("%d heartbeats", len(hbs))
	})
	return got
}
