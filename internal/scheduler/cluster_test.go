package scheduler_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/moby/moby/client"

	"github.com/moby/moby/api/types/container"
	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	persysv1 "github.com/persys-dev/compute/api/persys/v1"
	"github.com/persys-dev/compute/api/persys/v1/persysv1grpc"
	"github.com/persys-dev/compute/internal/pki"
	"github.com/persys-dev/compute/internal/runtime"
	"github.com/persys-dev/compute/internal/runtime/docker"
	"github.com/persys-dev/compute/internal/scheduler"
	"github.com/persys-dev/compute/internal/store/storetest"
)

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
	past := c.name("past")

	t.Run("no feasible node", func(t *testing.T) { loopNoFeasibleNode(t, c, big, past, sel) })

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

	t.Run("orphan is garbage-collected", func(t *testing.T) { loopOrphanCollected(t, c, web, webID) })

	t.Run("agent restart re-adopts", func(t *testing.T) {
		c.t = t
		before := c.onlyContainer(web)
		prev, err := c.node()
		if err != nil {
			t.Fatal(err)
		}
		c.agent.stop(t)
		c.agent = c.startAgent()
		waitFor(t, "the new agent to register", waitLong, func() (bool, string) {
			n, err := c.node()
			if err != nil {
				return false, err.Error()
			}
			return n.GetRegisteredAt().AsTime().After(prev.GetRegisteredAt().AsTime()) && n.GetState() == persysv1.NodeState_NODE_STATE_READY,
				n.GetRegisteredAt().AsTime().String() + " " + n.GetState().String()
		})
		c.checkNodeRecord()
		c.waitRunning(web)
		after := c.onlyContainer(web)
		if after.ID != before.ID || after.State.StartedAt != before.State.StartedAt || !after.State.Running {
			t.Fatalf("container changed over the agent restart: %s started %s (running %v), was %s started %s",
				after.ID[:12], after.State.StartedAt, after.State.Running, before.ID[:12], before.State.StartedAt)
		}
	})

	t.Run("node loss and return", func(t *testing.T) { loopNodeLossAndReturn(t, c, web, late) })

	t.Run("scheduler restart recovers", func(t *testing.T) { loopSchedulerRestart(t, c, web, late) })

	t.Run("delete", func(t *testing.T) {
		c.t = t
		for _, name := range []string{web, late, big, sel, past} {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			_, err := c.control.DeleteWorkload(ctx, &persysv1.DeleteRequest{Name: name})
			cancel()
			if err != nil && status.Code(err) != codes.NotFound { // NotFound: an earlier subtest failed
				t.Fatalf("delete %s: %v", name, err)
			}
		}
		for _, name := range []string{web, late, big, sel, past} {
			waitFor(t, name+" to be gone", waitLong, func() (bool, string) {
				_, err := c.get(name)
				n := len(c.containers(name))
				return status.Code(err) == codes.NotFound && n == 0, fmt.Sprintf("get: %v; %d containers", err, n)
			})
		}
	})
}

// loopNoFeasibleNode applies big, past and sel, which fit nowhere.
func loopNoFeasibleNode(t *testing.T, c *cluster, big, past, sel string) {
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

	// 900 MiB fits the node's 1 GiB but not the 80% its agent admits:
	// the scheduler must not place what the agent would refuse.
	c.apply(past, c.spec(900*mib, nil))
	v = c.waitStatus(past, persysv1.ActualState_ACTUAL_STATE_PENDING, persysv1.FailureReason_FAILURE_REASON_NO_FEASIBLE_NODE)
	if r := findRejection(v.GetAssignment().GetDecision(), c.nodeID); r.GetReason() != persysv1.RejectReason_REJECT_REASON_INSUFFICIENT_MEMORY {
		t.Fatalf("%s: rejection of %s = %v, want INSUFFICIENT_MEMORY (past the agent's threshold)", past, c.nodeID, r)
	}

	c.apply(sel, c.spec(64*mib, map[string]string{"zone": "nowhere"}))
	v = c.waitStatus(sel, persysv1.ActualState_ACTUAL_STATE_PENDING, persysv1.FailureReason_FAILURE_REASON_NO_FEASIBLE_NODE)
	r = findRejection(v.GetAssignment().GetDecision(), c.nodeID)
	if r == nil || r.GetReason() != persysv1.RejectReason_REJECT_REASON_SELECTOR_MISMATCH {
		t.Fatalf("%s: rejection of %s = %v, want SELECTOR_MISMATCH", sel, c.nodeID, r)
	}
	for _, n := range []string{big, sel, past} {
		if got := len(c.containers(n)); got != 0 {
			t.Fatalf("%s has %d containers although it was never placed", n, got)
		}
	}
}

// loopOrphanCollected starts a managed container the scheduler does not
// know; web, in container webID, stays.
func loopOrphanCollected(t *testing.T, c *cluster, web, webID string) {
	c.t = t
	const metric = "persys_scheduler_orphans_removed_total"
	before := c.metric(metric, nil)
	name := c.name("orphan")
	ctx := context.Background()
	created, err := c.docker.ContainerCreate(ctx, client.ContainerCreateOptions{Config: &container.Config{
		Image: c.image,
		Labels: map[string]string{
			runtime.LabelManaged: "true",
			runtime.LabelNode:    c.nodeID,
			// An orphan of this cluster: unlabelled ones are
			// another agent's (see the agent's cluster rules).
			runtime.LabelCluster:  c.sched.s.ClusterID(),
			docker.LabelRuntime:   "docker",
			runtime.LabelWorkload: name,
			runtime.LabelUID:      "orphan-" + randomHex(4),
			runtime.LabelRevision: "1",
			runLabel:              c.prefix,
		},
	}, HostConfig: &container.HostConfig{}, Name: "persys-" + name})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.docker.ContainerStart(ctx, created.ID, client.ContainerStartOptions{}); err != nil {
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
}

// loopNodeLossAndReturn stops the agent past its lease and brings it back.
func loopNodeLossAndReturn(t *testing.T, c *cluster, web, late string) {
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
}

// loopSchedulerRestart restarts the scheduler: it recovers from etcd.
func loopSchedulerRestart(t *testing.T, c *cluster, web, late string) {
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
	s, err := scheduler.New(scheduler.Config{Store: st, Logger: testLogger(), Registry: prometheus.NewRegistry(), HeartbeatInterval: heartbeat, LeaseTTL: leaseTTL})
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
	agentCli := persysv1grpc.NewControlServiceClient(c.dial(ln.Addr().String(), b.Agents[nodeID]))
	adminCli := persysv1grpc.NewControlServiceClient(c.dial(ln.Addr().String(), b.Admin))
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
