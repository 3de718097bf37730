package scheduler_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/moby/moby/client"
	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	persysv1 "github.com/persys-dev/compute/api/persys/v1"
	"github.com/persys-dev/compute/api/persys/v1/persysv1grpc"
	"github.com/persys-dev/compute/internal/pki"
	"github.com/persys-dev/compute/internal/runtime"
	"github.com/persys-dev/compute/internal/scheduler"
	"github.com/persys-dev/compute/internal/store/storetest"
)

// TestRegisterNodeIdentity: the scheduler tells its cluster id at
// registration; while a node's lease is alive, only the agent instance
// holding it registers again under its id (a restart); another instance,
// or an agent whose data dir belongs to another cluster, is refused with a
// reason naming the field.
func TestRegisterNodeIdentity(t *testing.T) {
	st, _ := storetest.New(t)
	const nodeID = "st-node-identity"
	b, err := pki.Bootstrap(t.TempDir(), []string{nodeID}, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	serverTLS, err := pki.ServerTLS(b.Scheduler)
	if err != nil {
		t.Fatal(err)
	}
	s, err := scheduler.New(scheduler.Config{Store: st, Logger: testLogger(), Registry: prometheus.NewRegistry(), LeaseTTL: time.Minute, ClusterID: b.ClusterID})
	if err != nil {
		t.Fatal(err)
	}
	ln := listen(t, "127.0.0.1:0")
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	defer wg.Wait()
	defer cancel()
	wg.Add(2)
	go func() {
		defer wg.Done()
		if err := scheduler.Serve(ctx, ln, s, serverTLS); err != nil {
			t.Errorf("serve: %v", err)
		}
	}()
	go func() {
		defer wg.Done()
		if err := s.Run(ctx); err != nil && !errors.Is(err, context.Canceled) {
			t.Errorf("run: %v", err)
		}
	}()

	c := &cluster{t: t, root: t}
	agentCli := persysv1grpc.NewControlServiceClient(c.dial(ln.Addr().String(), b.Agents[nodeID]))
	register := func(instance, cluster string) (*persysv1.RegisterNodeResponse, error) {
		rctx, rcancel := context.WithTimeout(ctx, 10*time.Second)
		defer rcancel()
		return agentCli.RegisterNode(rctx, &persysv1.RegisterNodeRequest{
			NodeId: nodeID, Address: "127.0.0.1:1", InstanceId: instance, ClusterId: cluster,
			Capabilities: &persysv1.NodeCapabilities{Capacity: &persysv1.Resources{CpuMillis: 1000, MemoryBytes: 512 * mib},
				Runtimes: []persysv1.WorkloadType{persysv1.WorkloadType_WORKLOAD_TYPE_CONTAINER}},
		})
	}

	var first *persysv1.RegisterNodeResponse
	waitFor(t, "first registration", waitLong, func() (bool, string) {
		first, err = register("instance-a", "")
		return err == nil, fmt.Sprint(err)
	})
	if first.GetClusterId() != b.ClusterID {
		t.Fatalf("cluster_id told = %q, want the CA's %q", first.GetClusterId(), b.ClusterID)
	}
	if s.ClusterID() != b.ClusterID {
		t.Fatalf("ClusterID() = %q, want %q", s.ClusterID(), b.ClusterID)
	}

	for _, tc := range []struct {
		name, instance, cluster string
		code                    codes.Code
		mention                 []string
	}{
		{name: "same instance restarts", instance: "instance-a", cluster: b.ClusterID, code: codes.OK},
		{name: "another instance while the lease lives", instance: "instance-b", cluster: b.ClusterID,
			code: codes.FailedPrecondition, mention: []string{"node_id", nodeID, "another agent instance"}},
		{name: "another cluster's data dir", instance: "instance-a", cluster: "0000000000other",
			code: codes.FailedPrecondition, mention: []string{"cluster_id", "0000000000other", b.ClusterID}},
		{name: "still the holder", instance: "instance-a", cluster: b.ClusterID, code: codes.OK},
	} {
		t.Run(tc.name, func(t *testing.T) {
			resp, err := register(tc.instance, tc.cluster)
			if status.Code(err) != tc.code {
				t.Fatalf("register: %v, want %s", err, tc.code)
			}
			for _, m := range tc.mention {
				if !strings.Contains(status.Convert(err).Message(), m) {
					t.Errorf("refusal %q does not mention %q", status.Convert(err).Message(), m)
				}
			}
			if err == nil && resp.GetClusterId() != b.ClusterID {
				t.Errorf("cluster_id told = %q, want %q", resp.GetClusterId(), b.ClusterID)
			}
		})
	}
}

// TestClustersShareAnEngine: two clusters on one Docker engine, each with
// a node of the same id (the default node id was the host name) and the
// same workload name. Neither scheduler takes the other cluster's
// container for an orphan of its node: both keep running.
func TestClustersShareAnEngine(t *testing.T) {
	node := "st-shared-" + randomHex(4)
	a := newClusterWith(t, clusterOptions{nodeIDs: []string{node}})
	web := a.name("web")
	a.apply(web, a.spec(16*mib, nil))
	runA := a.waitRunningOn(web, node).GetStatus().GetRuntimeId()

	b := newClusterWith(t, clusterOptions{nodeIDs: []string{node}})
	if b.sched.s.ClusterID() == a.sched.s.ClusterID() {
		t.Fatalf("both clusters have the id %s", a.sched.s.ClusterID())
	}
	// The same name in cluster B, with A's spec so that A's cleanup
	// removes both copies.
	if _, err := b.control.ApplyWorkload(ctxT(t), &persysv1.ApplyRequest{Name: web, Spec: a.spec(16*mib, nil)}); err != nil {
		t.Fatalf("apply %s in cluster B: %v", web, err)
	}
	runB := b.waitRunningOn(web, node).GetStatus().GetRuntimeId()
	if runA == runB {
		t.Fatalf("both clusters report container %s", runA)
	}
	// Full lists went both ways since: any orphan removal was started.
	b.waitHeartbeats(3)
	a.waitHeartbeats(3)

	for _, c := range []struct {
		who string
		cl  *cluster
		id  string
	}{{"A", a, runA}, {"B", b, runB}} {
		infoRes, err := a.docker.ContainerInspect(ctxT(t), c.id, client.ContainerInspectOptions{})
		info := infoRes.Container
		if err != nil {
			t.Fatalf("cluster %s's container %s: %v", c.who, c.id, err)
		}
		if !info.State.Running {
			t.Errorf("cluster %s's container is %s", c.who, info.State.Status)
		}
		if got := info.Config.Labels[runtime.LabelCluster]; got != c.cl.sched.s.ClusterID() {
			t.Errorf("cluster %s's container has cluster label %q, want %q", c.who, got, c.cl.sched.s.ClusterID())
		}
		v := c.cl.waitRunningOn(web, node)
		if v.GetStatus().GetRuntimeId() != c.id {
			t.Errorf("cluster %s now runs %s as %s, want its first container %s", c.who, web, v.GetStatus().GetRuntimeId(), c.id)
		}
		for _, e := range c.cl.events(web) {
			if e.GetType() == "OrphanRemoved" {
				t.Errorf("cluster %s removed an orphan of %s: %s", c.who, web, e.GetMessage())
			}
		}
	}
}
