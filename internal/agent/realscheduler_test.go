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
	"github.com/persys-dev/compute/internal/testutil/eventually"
	"github.com/persys-dev/compute/internal/testutil/freeport"
	"github.com/persys-dev/compute/internal/testutil/realsched"
)

// newRealEnv is a test's PKI and a real scheduler on embedded etcd; the
// agent registers with it and heartbeats to it as in production.
func newRealEnv(t *testing.T) (*env, *realsched.Cluster) {
	t.Helper()
	s := realsched.Start(t, realsched.Options{Nodes: []string{nodeID}, NoSecrets: true, Config: shortLeases})
	return &env{bundle: s.Bundle, addr: s.Addrs[0], image: "app:1", prefix: randomPrefix()}, s
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
	deadline := time.Now().Add(within)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		n, err := admin.GetNode(ctx, &persysv1.GetNodeRequest{Id: nodeID})
		cancel()
		if err == nil && n.GetState() == persysv1.NodeState_NODE_STATE_READY {
			return n
		}
		if time.Now().After(deadline) {
			t.Fatalf("node never READY at the scheduler: %v, %v", n, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
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
	if err := ra.agent.Ready(); err != nil {
		t.Errorf("agent not ready after registering: %v", err)
	}
	// Three lease TTLs: without renewing heartbeats the lease would lapse.
	end := time.Now().Add(3 * 2 * time.Second)
	for time.Now().Before(end) {
		if st := node().GetState(); st != persysv1.NodeState_NODE_STATE_READY {
			t.Fatalf("node went %s while the agent heartbeats", st)
		}
		time.Sleep(200 * time.Millisecond)
	}
}
