package scheduler_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/moby/moby/api/types/container"
	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/persys-dev/compute/api/persys/contract"
	persysv1 "github.com/persys-dev/compute/api/persys/v1"
	"github.com/persys-dev/compute/api/persys/v1/persysv1grpc"
	"github.com/persys-dev/compute/internal/store"
)

const electionTTL = 2 * time.Second

// replica is one scheduler of several, with an etcd client of its own so
// that a crash (the client cut off) can be simulated for it alone.
type replica struct {
	p      *schedProc
	etcd   *clientv3.Client
	client persysv1grpc.ControlServiceClient
}

func (c *cluster) startReplica(addr string) *replica {
	c.t.Helper()
	cli, err := c.emb.Client()
	if err != nil {
		c.t.Fatal(err)
	}
	// Registered before the scheduler's stop, so it runs after it.
	c.root.Cleanup(func() { _ = cli.Close() })
	p := c.startSchedulerWith(schedOptions{addr: addr, store: store.New(cli, store.Options{}), electionTTL: electionTTL})
	return &replica{p: p, etcd: cli, client: c.adminClient(p.addr)}
}

func (r *replica) leader() (*persysv1.LeaderInfo, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	return r.client.GetLeader(ctx, &persysv1.GetLeaderRequest{})
}

// waitLeads waits until r leads and serves writes, and returns how long
// that took from since.
func (c *cluster) waitLeads(r *replica, since time.Time) time.Duration {
	c.t.Helper()
	var took time.Duration
	waitFor(c.t, r.p.addr+" to lead", waitLong, func() (bool, string) {
		info, err := r.leader()
		if err != nil {
			return false, err.Error()
		}
		if !info.GetIsLeader() {
			return false, fmt.Sprintf("leader %q, is_leader false", info.GetAddress())
		}
		took = time.Since(since)
		if err := r.p.s.Ready(); err != nil {
			return false, err.Error()
		}
		return true, ""
	})
	return took
}

// use makes r the replica the cluster's helpers talk to.
func (c *cluster) use(r *replica) {
	c.sched, c.schedAddr, c.control = r.p, r.p.addr, r.client
}

// refused calls ApplyWorkload on r and returns the error and the leader
// named in the trailer.
func refused(t *testing.T, r *replica, name string, spec *persysv1.WorkloadSpec) (error, []string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var trailer metadata.MD
	_, err := r.client.ApplyWorkload(ctx, &persysv1.ApplyRequest{Name: name, Spec: spec}, grpc.Trailer(&trailer))
	if err == nil {
		t.Fatalf("apply %s on %s (not the leader) succeeded", name, r.p.addr)
	}
	return err, trailer.Get(contract.MetadataLeader)
}

// TestLeaderElection runs scheduler replicas on one etcd: exactly one
// leads, followers refuse writes naming the leader, and leadership moves
// to a follower when the leader stops and when it crashes (its etcd
// client cut off), with workloads applied through the new leader reaching
// RUNNING on a real agent.
func TestLeaderElection(t *testing.T) {
	c := newBareCluster(t, clusterOptions{config: fastConfig})
	r1 := c.startReplica("127.0.0.1:0")
	r2 := c.startReplica("127.0.0.1:0")

	var leader, follower *replica
	waitFor(t, "exactly one leader, known to both", waitLong, func() (bool, string) {
		i1, err1 := r1.leader()
		i2, err2 := r2.leader()
		if err1 != nil || err2 != nil {
			return false, fmt.Sprint(err1, err2)
		}
		detail := fmt.Sprintf("%s: %v; %s: %v", r1.p.addr, i1, r2.p.addr, i2)
		if i1.GetIsLeader() == i2.GetIsLeader() || i1.GetAddress() != i2.GetAddress() {
			return false, detail
		}
		leader, follower = r1, r2
		if i2.GetIsLeader() {
			leader, follower = r2, r1
		}
		return i1.GetAddress() == leader.p.addr, detail
	})
	c.waitLeads(leader, time.Now())
	c.use(leader)
	w1, w2, w3 := c.name("w1"), c.name("w2"), c.name("w3")

	t.Run("follower refuses writes and names the leader", func(t *testing.T) {
		c.t = t
		err, named := refused(t, follower, w1, c.spec(64*mib, nil))
		if status.Code(err) != codes.FailedPrecondition {
			t.Errorf("apply on the follower: %v, want FailedPrecondition", err)
		}
		if len(named) != 1 || named[0] != leader.p.addr {
			t.Errorf("trailer %s = %q, want [%s]", contract.MetadataLeader, named, leader.p.addr)
		}
		if _, err := c.get(w1); status.Code(err) != codes.NotFound {
			t.Errorf("the refused apply reached the leader: %v", err)
		}
	})

	// The agent lists both replicas, the follower first: it reaches the
	// leader by the follower's hint, and follows leadership from then on.
	node := c.nodeID
	c.startFollowingAgent(node, []string{follower.p.addr, leader.p.addr})
	c.waitNodeState(node, persysv1.NodeState_NODE_STATE_READY)
	c.waitHeartbeats(2)
	c.apply(w1, c.spec(64*mib, nil))
	c.waitRunningOn(w1, node)
	first := c.onlyContainer(w1)

	t.Run("leader stops", func(t *testing.T) {
		c.t = t
		start := time.Now()
		leader.p.cancel()
		took := c.waitLeads(follower, start)
		t.Logf("failover after the leader's context ended: %s", took.Round(time.Millisecond))
		leader.p.stop(t)
		old := leader
		leader, follower = follower, nil
		c.use(leader)

		info, err := leader.leader()
		if err != nil || info.GetAddress() != leader.p.addr {
			t.Fatalf("GetLeader on the new leader: %v, %v; want its own address %s", info, err, leader.p.addr)
		}
		// The agent moves to the remaining replica by itself: its
		// heartbeats reach the new leader.
		c.waitHeartbeats(3)
		c.waitNodeState(node, persysv1.NodeState_NODE_STATE_READY)
		c.apply(w2, c.spec(64*mib, nil))
		c.waitRunningOn(w2, node)
		c.waitRunningOn(w1, node)
		if got := c.onlyContainer(w1); got.ID != first.ID || got.State.StartedAt != first.State.StartedAt {
			t.Errorf("%s was replaced or restarted over the failover", w1)
		}
		// A replica back at the old address stands by as a follower.
		follower = c.startReplica(old.p.addr)
		waitFor(t, "the new replica to follow "+leader.p.addr, waitLong, func() (bool, string) {
			info, err := follower.leader()
			if err != nil {
				return false, err.Error()
			}
			return !info.GetIsLeader() && info.GetAddress() == leader.p.addr, fmt.Sprint(info)
		})
	})
	if t.Failed() {
		t.FailNow()
	}

	t.Run("leader crashes", func(t *testing.T) {
		c.t = t
		crashed := leader
		start := time.Now()
		// Cut the leader off etcd: its session is not revoked and expires
		// after the TTL, as when the process dies.
		_ = crashed.etcd.Close()
		took := c.waitLeads(follower, start)
		t.Logf("failover after the leader lost etcd: %s (election TTL %s)", took.Round(time.Millisecond), electionTTL)
		leader, follower = follower, crashed
		c.use(leader)

		waitFor(t, "the cut-off replica to step down", waitLong, func() (bool, string) {
			info, err := crashed.leader()
			if err != nil {
				return false, err.Error()
			}
			return !info.GetIsLeader(), fmt.Sprint(info)
		})
		// It cannot know the new leader, and must not name itself.
		err, named := refused(t, crashed, w3, c.spec(64*mib, nil))
		if code := status.Code(err); code != codes.FailedPrecondition && code != codes.Unavailable {
			t.Errorf("apply on the cut-off replica: %v, want FailedPrecondition or Unavailable", err)
		}
		for _, n := range named {
			if n == crashed.p.addr {
				t.Errorf("the cut-off replica names itself as the leader in %s", contract.MetadataLeader)
			}
		}

		// The agent leaves the cut-off replica (it refuses without naming
		// a leader) for the next listed one, the new leader.
		c.apply(w3, c.spec(64*mib, nil))
		c.waitHeartbeats(3)
		c.waitNodeState(node, persysv1.NodeState_NODE_STATE_READY)
		c.waitRunningOn(w3, node)
		for _, n := range []string{w1, w2} {
			c.waitRunningOn(n, node)
		}
		if got := c.onlyContainer(w1); got.ID != first.ID || got.State.StartedAt != first.State.StartedAt {
			t.Errorf("%s was replaced or restarted over the second failover", w1)
		}
	})
	if t.Failed() {
		t.FailNow()
	}

	t.Run("leader loses its session and leads again", func(t *testing.T) { leaderReelected(t, c, leader, node, first, w1, w2, w3) })
}

// leaderReelected revokes the session of leader, the only replica in
// touch with etcd: it leads again, and w1 (first) runs on unchanged.
func leaderReelected(t *testing.T, c *cluster, leader *replica, node string, first container.InspectResponse, w1, w2, w3 string) {
	c.t = t
	// The only replica still in touch with etcd loses its session (as
	// after a long pause): it steps down, campaigns again and, alone,
	// leads again in the same process.
	elected := c.metricSum("persys_scheduler_placements_total")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	resp, err := c.etcd.Get(ctx, c.store.Prefix()+"/election/", clientv3.WithPrefix())
	if err != nil {
		t.Fatal(err)
	}
	var lease clientv3.LeaseID
	for _, kv := range resp.Kvs {
		if string(kv.Value) == leader.p.addr {
			lease = clientv3.LeaseID(kv.Lease)
		}
	}
	if lease == 0 {
		t.Fatalf("no election key of %s under %s/election/: %v", leader.p.addr, c.store.Prefix(), resp.Kvs)
	}
	start := time.Now()
	if _, err := c.etcd.Revoke(ctx, lease); err != nil {
		t.Fatal(err)
	}
	waitFor(t, leader.p.addr+" to start a new term", waitLong, func() (bool, string) {
		resp, err := c.etcd.Get(ctx, c.store.Prefix()+"/election/", clientv3.WithPrefix())
		if err != nil {
			return false, err.Error()
		}
		for _, kv := range resp.Kvs {
			if string(kv.Value) == leader.p.addr && clientv3.LeaseID(kv.Lease) != lease {
				return true, ""
			}
		}
		return false, fmt.Sprint(resp.Kvs)
	})
	took := c.waitLeads(leader, start)
	t.Logf("re-elected after losing its session: %s", took.Round(time.Millisecond))
	w4 := c.name("w4")
	c.apply(w4, c.spec(64*mib, nil))
	for _, n := range []string{w1, w2, w3, w4} {
		c.waitRunningOn(n, node)
	}
	if got := c.onlyContainer(w1); got.ID != first.ID || got.State.StartedAt != first.State.StartedAt {
		t.Errorf("%s was replaced or restarted over the re-election", w1)
	}
	if got := c.metricSum("persys_scheduler_placements_total"); got != elected+1 {
		t.Errorf("placements over the re-election: %v, want only %s's (1)", got-elected, w4)
	}
}
