package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/spf13/cobra"
	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"

	persysv1 "github.com/persys-dev/compute/api/persys/v1"
	"github.com/persys-dev/compute/api/persys/v1/persysv1grpc"
	"github.com/persys-dev/compute/internal/agent"
	"github.com/persys-dev/compute/internal/pki"
	"github.com/persys-dev/compute/internal/runtime/sim"
	"github.com/persys-dev/compute/internal/store"
	"github.com/persys-dev/compute/internal/store/storetest"
	"github.com/persys-dev/compute/internal/testutil/eventually"
)

const (
	burst      = 200
	killAfter  = 60 // applies acknowledged before the etcd leader is killed
	burstNodes = 3
)

// TestSchedulerSurvivesEtcdMemberLoss runs persys scheduler (its flags and
// wiring, in process) against a three-member etcd cluster over TLS with
// certificate auth, three agents on the sim runtime, and kills the etcd
// leader in the middle of a burst of applies. Every acknowledged workload
// must be in the store exactly once and run on exactly one node.
func TestSchedulerSurvivesEtcdMemberLoss(t *testing.T) {
	etcd := storetest.NewCluster(t, 3)
	nodes := make([]string, burstNodes)
	for i := range nodes {
		nodes[i] = fmt.Sprintf("kill-node-%d", i)
	}
	// The cluster's CA again, now with the agents' identities.
	b, err := pki.Bootstrap(etcd.Bundle.Dir, nodes, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var daemons sync.WaitGroup
	t.Cleanup(func() { cancel(); daemons.Wait() })

	o := schedulerOptions{}
	o.flags(&cobra.Command{}) // the defaults of persys scheduler
	o.listen, o.metricsListen = "127.0.0.1:0", ""
	o.ca, o.cert, o.key = b.Scheduler.CA, b.Scheduler.Cert, b.Scheduler.Key
	o.etcdEndpoints = strings.Join(etcd.Endpoints(), ",")
	o.etcdCA, o.etcdCert, o.etcdKey = b.CA, b.Scheduler.Cert, b.Scheduler.Key
	o.heartbeatInterval, o.leaseTTL = time.Second, 6*time.Second
	// A status write lost in the leader change waits for the resync (the
	// default 30s made the scheduler's view converge 30s after the start).
	o.resyncInterval = 5 * time.Second
	if err := o.validate(); err != nil {
		t.Fatal(err)
	}
	started := make(chan string, 1)
	schedErr := make(chan error, 1)
	daemons.Add(1)
	go func() { defer daemons.Done(); schedErr <- runScheduler(ctx, &o, quietLogger(), started) }()
	var schedAddr string
	select {
	case schedAddr = <-started:
	case err := <-schedErr:
		t.Fatalf("scheduler: %v", err)
	case <-time.After(30 * time.Second):
		t.Fatal("scheduler did not start")
	}

	var simMu sync.Mutex
	sims := map[string]*sim.Runtime{}
	simStarted = func(id string, rt *sim.Runtime) {
		simMu.Lock()
		sims[id] = rt
		simMu.Unlock()
	}
	t.Cleanup(func() { simStarted = nil })
	for _, id := range nodes {
		f := b.Agents[id]
		ao := agentOptions{
			nodeID: id, advertise: "127.0.0.1", schedulers: schedAddr,
			ca: f.CA, cert: f.Cert, key: f.Key, dataDir: t.TempDir(),
			heartbeatInterval: time.Second, utilizationThreshold: 0.8, auditInterval: agent.DefaultAuditInterval,
			maxConcurrentCalls: agent.DefaultMaxConcurrentCalls,
			runtime:            "sim", extra: runtimeOptions{vm: "off"},
		}
		daemons.Add(1)
		go func() {
			defer daemons.Done()
			if err := runAgent(ctx, ao); err != nil && ctx.Err() == nil {
				t.Errorf("agent %s: %v", id, err)
			}
		}()
	}
	control := persysv1grpc.NewControlServiceClient(dialTLS(t, schedAddr, b.Admin))
	eventually.Eventually(t, "3 ready nodes", 60*time.Second, func() (bool, string) {
		resp, err := control.ListNodes(ctx, &persysv1.ListNodesRequest{})
		if err != nil {
			return false, err.Error()
		}
		ready := 0
		for _, n := range resp.GetNodes() {
			if n.GetState() == persysv1.NodeState_NODE_STATE_READY {
				ready++
			}
		}
		return ready == burstNodes, fmt.Sprintf("%d ready", ready)
	})

	// The burst: ten clients, each apply retried until acknowledged (an
	// apply is declarative, so a retry of one that did commit is a no-op).
	var (
		next, acked   atomic.Int64
		retries       atomic.Int64
		killOnce      sync.Once
		recoverMu     sync.Mutex // guards killAt, firstAfter, slowestAround
		killAt        time.Time
		firstAfter    time.Duration = -1
		slowestAround time.Duration
	)
	killDone := make(chan struct{})
	killLeader := func() {
		leader := etcd.Leader()
		if leader < 0 {
			t.Error("no etcd leader to kill")
			return
		}
		recoverMu.Lock()
		killAt = time.Now()
		recoverMu.Unlock()
		t.Logf("killing etcd member %d (the leader) after %d acknowledged applies", leader, acked.Load())
		// Closing takes a while; the burst goes on meanwhile.
		go func() { defer close(killDone); etcd.Kill(leader) }()
	}
	var clients sync.WaitGroup
	burstStart := time.Now()
	for range 10 {
		clients.Add(1)
		go func() {
			defer clients.Done()
			for {
				i := next.Add(1) - 1
				if i >= burst {
					return
				}
				name := fmt.Sprintf("burst-%03d", i)
				began := time.Now()
				for attempt := 0; ; attempt++ {
					actx, acancel := context.WithTimeout(ctx, 5*time.Second)
					_, err := control.ApplyWorkload(actx, &persysv1.ApplyRequest{Name: name, Spec: simSpec()})
					acancel()
					if err == nil {
						break
					}
					retries.Add(1)
					if time.Since(began) > 60*time.Second {
						t.Errorf("apply %s: not acknowledged in 60s: %v", name, err)
						return
					}
					time.Sleep(100 * time.Millisecond)
				}
				done := time.Now()
				if acked.Add(1) == killAfter {
					killOnce.Do(killLeader)
				}
				recoverMu.Lock()
				if !killAt.IsZero() {
					// An apply begun after the kill and acknowledged: the
					// store answers again.
					if began.After(killAt) && (firstAfter < 0 || done.Sub(killAt) < firstAfter) {
						firstAfter = done.Sub(killAt)
					}
					if began.Before(killAt) && done.After(killAt) {
						slowestAround = max(slowestAround, done.Sub(killAt))
					}
				}
				recoverMu.Unlock()
			}
		}()
	}
	clients.Wait()
	burstTook := time.Since(burstStart)
	killOnce.Do(func() { close(killDone) }) // never killed: nothing to wait for
	<-killDone
	if t.Failed() {
		t.FailNow()
	}
	if acked.Load() != burst {
		t.Fatalf("%d of %d applies acknowledged", acked.Load(), burst)
	}

	names := make([]string, burst)
	for i := range names {
		names[i] = fmt.Sprintf("burst-%03d", i)
	}
	// where lists the nodes each workload runs on, as the agents' runtimes
	// say.
	where := func() map[string][]string {
		on := map[string][]string{}
		simMu.Lock()
		defer simMu.Unlock()
		if len(sims) != len(nodes) {
			t.Fatalf("%d of %d sim runtimes started", len(sims), len(nodes))
		}
		for id, rt := range sims {
			ws, err := rt.List(ctx)
			if err != nil {
				t.Fatalf("agent %s: list: %v", id, err)
			}
			for _, w := range ws {
				on[w.GetName()] = append(on[w.GetName()], id)
			}
		}
		return on
	}
	eventually.Eventually(t, "every workload on a node", 90*time.Second, func() (bool, string) {
		n := len(where())
		return n == burst, fmt.Sprintf("%d of %d on nodes", n, burst)
	})
	onNodes := time.Since(burstStart)

	// Every workload runs, as the scheduler sees it: a status write that
	// failed in the leader change waits for the periodic resync.
	eventually.Eventually(t, "every workload running", 90*time.Second, func() (bool, string) {
		resp, err := control.ListWorkloads(ctx, &persysv1.ListWorkloadsRequest{})
		if err != nil {
			return false, err.Error()
		}
		running := 0
		for _, v := range resp.GetWorkloads() {
			if v.GetStatus().GetState() == persysv1.ActualState_ACTUAL_STATE_RUNNING {
				running++
			}
		}
		return running == burst, fmt.Sprintf("%d of %d running (%d listed)", running, burst, len(resp.GetWorkloads()))
	})
	settled := time.Since(burstStart)

	// The store, read by the two members left: each workload once, each
	// assigned to one node.
	cli := etcd.Client(t)
	st := store.New(cli, store.Options{Prefix: o.prefix})
	resp, err := cli.Get(ctx, o.prefix+"/workloads/", clientv3.WithPrefix(), clientv3.WithKeysOnly())
	if err != nil {
		t.Fatal(err)
	}
	var stored []string
	for _, kv := range resp.Kvs {
		stored = append(stored, strings.TrimPrefix(string(kv.Key), o.prefix+"/workloads/"))
	}
	slices.Sort(stored)
	lost, dup := compareSets(names, stored)
	assigned := map[string]string{}
	for _, n := range names {
		a, _, err := st.GetAssignment(ctx, n)
		if err != nil || a.GetNodeId() == "" {
			t.Errorf("assignment of %s: %v, %v", n, a, err)
			continue
		}
		assigned[n] = a.GetNodeId()
	}

	// The agents: each workload on exactly one node, the assigned one.
	running := where()
	onTwo := 0
	for _, n := range names {
		switch on := running[n]; {
		case len(on) == 0:
			t.Errorf("%s runs on no node", n)
		case len(on) > 1:
			onTwo++
			t.Errorf("%s runs on %v", n, on)
		case on[0] != assigned[n]:
			t.Errorf("%s runs on %s, assigned to %s", n, on[0], assigned[n])
		}
	}
	t.Logf("burst of %d applies: %s, %d retried attempts; all on nodes after %s, all running in the scheduler's view after %s; lost %d, duplicated in the store %d, on two nodes %d",
		burst, burstTook.Round(time.Millisecond), retries.Load(), onNodes.Round(time.Millisecond), settled.Round(time.Millisecond), len(lost), len(dup), onTwo)
	t.Logf("after the kill: first apply begun later acknowledged in %s; slowest apply in flight at the kill %s",
		firstAfter.Round(time.Millisecond), slowestAround.Round(time.Millisecond))
	if len(lost) > 0 || len(dup) > 0 || len(stored) != burst {
		t.Fatalf("store holds %d workloads; lost %v, unexpected %v", len(stored), lost, dup)
	}
	if firstAfter < 0 {
		t.Fatal("no apply begun after the kill")
	}
}

// compareSets returns what want has and got lacks, and what got has beyond
// want (a name twice in got counts once more).
func compareSets(want, got []string) (missing, extra []string) {
	seen := map[string]int{}
	for _, g := range got {
		seen[g]++
	}
	for _, w := range want {
		if seen[w] == 0 {
			missing = append(missing, w)
			continue
		}
		seen[w]--
	}
	for g, n := range seen {
		for range n {
			extra = append(extra, g)
		}
	}
	return missing, extra
}

func simSpec() *persysv1.WorkloadSpec {
	return &persysv1.WorkloadSpec{
		Type:         persysv1.WorkloadType_WORKLOAD_TYPE_CONTAINER,
		DesiredState: persysv1.DesiredState_DESIRED_STATE_RUNNING,
		Resources:    &persysv1.Resources{CpuMillis: 10, MemoryBytes: 1 << 20},
		Container:    &persysv1.ContainerSpec{Image: "sim/burst:1"},
	}
}

func dialTLS(t *testing.T, addr string, f pki.Files) *grpc.ClientConn {
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

func quietLogger() *slog.Logger {
	var w io.Writer = io.Discard
	if testing.Verbose() {
		w = os.Stderr
	}
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: slog.LevelInfo}))
}
