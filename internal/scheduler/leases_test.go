package scheduler_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	persysv1 "github.com/persys-dev/compute/api/persys/v1"
	"github.com/persys-dev/compute/internal/scheduler"
	"github.com/persys-dev/compute/internal/store"
	"github.com/persys-dev/compute/internal/store/storetest"
)

// A node's lease grows with the cluster: the first node registers with
// the configured TTL; once more nodes joined than the heartbeat rate
// target lets beat at a third of it, later nodes get a TTL of three
// spread intervals, and the first node's lease is moved to one of that
// TTL on its next heartbeat, without a gap in its liveness, and only
// then is it told the longer interval. Its record names the new lease.
func TestNodeLeaseGrowsWithTheCluster(t *testing.T) {
	st, _ := storetest.New(t)
	reg := prometheus.NewRegistry()
	// One heartbeat a second in all: six nodes spread to 6 s, an 18 s TTL.
	ctx, s := startLeaseScheduler(t, scheduler.Config{Store: st, Registry: reg, ClusterID: "lease-grows",
		LeaseTTL: 3 * time.Second, HeartbeatInterval: 100 * time.Millisecond, MaxHeartbeatRate: 1})
	register := func(id string) *persysv1.RegisterNodeResponse { return registerLeaseNode(ctx, t, s, "lease-grows", id) }
	first := register("n1")
	if first.GetLeaseTtlSeconds() != 3 || first.GetHeartbeatIntervalMs() != 1000 {
		t.Fatalf("first node: lease TTL %ds, interval %dms; want 3s and 1000ms (one node, one a second)",
			first.GetLeaseTtlSeconds(), first.GetHeartbeatIntervalMs())
	}
	rec, err := st.GetNode(ctx, "n1")
	if err != nil {
		t.Fatal(err)
	}
	firstLease := rec.GetLeaseId()
	var last *persysv1.RegisterNodeResponse
	for i := 2; i <= 6; i++ {
		last = register(fmt.Sprintf("n%d", i))
	}
	if last.GetLeaseTtlSeconds() != 18 || last.GetHeartbeatIntervalMs() != 6000 {
		t.Fatalf("sixth node: lease TTL %ds, interval %dms; want 18s and 6000ms", last.GetLeaseTtlSeconds(), last.GetHeartbeatIntervalMs())
	}

	// n1 beats at its lease's pace until its lease is extended.
	waitFor(t, "n1 told the longer interval", waitLong, func() (bool, string) {
		resp, err := s.Heartbeat(ctx, &persysv1.HeartbeatRequest{NodeId: "n1", Usage: &persysv1.Resources{}})
		if err != nil {
			return false, err.Error()
		}
		if resp.GetReregister() {
			t.Fatal("n1 was asked to register again: its liveness had a gap")
		}
		if ms := resp.GetHeartbeatIntervalMs(); ms != 6000 {
			if ms > 1000 {
				t.Fatalf("n1 told %dms on a 3 s lease", ms)
			}
			return false, fmt.Sprintf("interval %dms", ms)
		}
		return true, ""
	})
	if err := st.KeepAliveNode(ctx, firstLease); !errors.Is(err, store.ErrLeaseNotFound) {
		t.Fatalf("n1's first lease after the extension: %v, want revoked", err)
	}
	if alive, err := st.NodeAlive(ctx, "n1"); !alive || err != nil {
		t.Fatalf("n1 alive %v (%v) after the extension", alive, err)
	}
	rec, err = st.GetNode(ctx, "n1")
	if err != nil || rec.GetLeaseId() == firstLease || st.KeepAliveNode(ctx, rec.GetLeaseId()) != nil {
		t.Fatalf("n1's record names lease %x (first %x, %v): want the extended one, alive", rec.GetLeaseId(), firstLease, err)
	}
	if n := counterSum(t, reg, "persys_scheduler_node_lease_extensions_total"); n < 1 {
		t.Fatalf("lease extensions counted %v, want at least 1", n)
	}
}

// Moves to a longer lease are paced (Config.LeaseExtensionRate) and only
// for a node whose lease the cluster outgrew twice over: n1-n3 (3, 6 and
// 9 s leases) outgrew six nodes' 18 s, n4 (12 s) did not and keeps
// beating at a third of its lease; with the pace at one move in all, only
// one of n1-n3 moves.
func TestLeaseExtensionsArePacedAndOnlyForOutgrownLeases(t *testing.T) {
	st, _ := storetest.New(t)
	reg := prometheus.NewRegistry()
	ctx, s := startLeaseScheduler(t, scheduler.Config{Store: st, Registry: reg, ClusterID: "lease-paced",
		LeaseTTL: 3 * time.Second, HeartbeatInterval: 100 * time.Millisecond, MaxHeartbeatRate: 1, LeaseExtensionRate: 1e-9})
	ttls := map[string]int64{}
	for i := 1; i <= 6; i++ {
		id := fmt.Sprintf("n%d", i)
		ttls[id] = registerLeaseNode(ctx, t, s, "lease-paced", id).GetLeaseTtlSeconds()
	}
	if ttls["n1"] != 3 || ttls["n2"] != 6 || ttls["n3"] != 9 || ttls["n4"] != 12 || ttls["n6"] != 18 {
		t.Fatalf("lease TTLs %v; want 3, 6, 9, 12, 15 and 18 s", ttls)
	}
	beat := func(id string) int64 {
		t.Helper()
		resp, err := s.Heartbeat(ctx, &persysv1.HeartbeatRequest{NodeId: id, Usage: &persysv1.Resources{}})
		if err != nil || resp.GetReregister() {
			t.Fatalf("%s heartbeat: %v (reregister %v)", id, err, resp.GetReregister())
		}
		return resp.GetHeartbeatIntervalMs()
	}
	waitFor(t, "one lease moved", waitLong, func() (bool, string) {
		for _, id := range []string{"n4", "n3", "n2", "n1"} { // n4 first: it must not take the one move
			beat(id)
		}
		n := counterSum(t, reg, "persys_scheduler_node_lease_extensions_total")
		return n >= 1, fmt.Sprintf("%v moves", n)
	})
	// Beats enough for every outgrown node to ask again.
	for range 5 {
		for _, id := range []string{"n1", "n2", "n3"} {
			beat(id)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if n := counterSum(t, reg, "persys_scheduler_node_lease_extensions_total"); n != 1 {
		t.Fatalf("lease moves %v at a pace of one in all, want 1", n)
	}
	if ms := beat("n4"); ms != 4000 {
		t.Fatalf("n4 (12 s lease, 18 s wanted) told %dms, want 4000 (a third of its lease: not moved)", ms)
	}
	rec, err := st.GetNode(ctx, "n4")
	if err != nil {
		t.Fatal(err)
	}
	if err := st.KeepAliveNode(ctx, rec.GetLeaseId()); err != nil {
		t.Fatalf("n4's lease: %v, want its first lease kept", err)
	}
}

// startLeaseScheduler runs a scheduler of cfg (its logger the tests') until
// the test ends and waits for it to lead.
func startLeaseScheduler(t *testing.T, cfg scheduler.Config) (context.Context, *scheduler.Scheduler) {
	t.Helper()
	cfg.Logger = testLogger()
	s, err := scheduler.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	t.Cleanup(wg.Wait)
	t.Cleanup(cancel)
	wg.Add(1)
	go func() {
		defer wg.Done()
		if err := s.Run(ctx); err != nil && !errors.Is(err, context.Canceled) {
			t.Errorf("run: %v", err)
		}
	}()
	waitFor(t, "the scheduler to lead", waitLong, func() (bool, string) { return s.Leading(), "not leading" })
	return ctx, s
}

// registerLeaseNode registers a container node id in cluster.
func registerLeaseNode(ctx context.Context, t *testing.T, s *scheduler.Scheduler, cluster, id string) *persysv1.RegisterNodeResponse {
	t.Helper()
	var resp *persysv1.RegisterNodeResponse
	waitFor(t, id+" registered", waitLong, func() (bool, string) {
		var err error
		resp, err = s.RegisterNode(ctx, &persysv1.RegisterNodeRequest{NodeId: id, Address: "127.0.0.1:1", ClusterId: cluster,
			Capabilities: &persysv1.NodeCapabilities{Capacity: &persysv1.Resources{CpuMillis: 1000, MemoryBytes: 512 * mib},
				Runtimes: []persysv1.WorkloadType{persysv1.WorkloadType_WORKLOAD_TYPE_CONTAINER}}})
		return err == nil, fmt.Sprint(err)
	})
	return resp
}
