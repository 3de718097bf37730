package agent_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"testing"
	"time"

	persysv1 "github.com/persys-dev/compute/api/persys/v1"
	"github.com/persys-dev/compute/internal/testutil/cluster"
)

// newRealEnv is a test's PKI and a real scheduler on embedded etcd; the
// agent registers with it and heartbeats to it as in production.
func newRealEnv(t *testing.T) (*env, *cluster.Scheduler) {
	t.Helper()
	s := cluster.Start(t, cluster.Options{Nodes: []string{nodeID}, LeaseTTL: 2 * time.Second})
	var rnd [4]byte
	_, _ = rand.Read(rnd[:])
	return &env{bundle: s.Bundle, addr: s.Addr, image: "app:1", prefix: "agt-" + hex.EncodeToString(rnd[:])}, s
}

// TestAgentWithRealScheduler: the node the agent registers is READY at a
// real scheduler with the agent's labels and capacity, and stays READY for
// several lease TTLs: the heartbeats (at the interval the scheduler told,
// not the agent's 10 minutes) renew its lease.
func TestAgentWithRealScheduler(t *testing.T) {
	e, s := newRealEnv(t)
	ra, _ := e.startSimAgent(t)
	admin := s.Admin(t)
	node := func() *persysv1.Node {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		n, err := admin.GetNode(ctx, &persysv1.GetNodeRequest{Id: nodeID})
		if err != nil {
			return nil
		}
		return n
	}
	deadline := time.Now().Add(waitFor)
	for n := node(); n.GetState() != persysv1.NodeState_NODE_STATE_READY; n = node() {
		if time.Now().After(deadline) {
			t.Fatalf("node never READY at the scheduler: %v", n)
		}
		time.Sleep(50 * time.Millisecond)
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
