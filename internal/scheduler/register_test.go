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
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	persysv1 "github.com/persys-dev/compute/api/persys/v1"
	"github.com/persys-dev/compute/api/persys/v1/persysv1grpc"
	"github.com/persys-dev/compute/internal/nodechannel"
	"github.com/persys-dev/compute/internal/pki"
	"github.com/persys-dev/compute/internal/runtime"
	"github.com/persys-dev/compute/internal/scheduler"
	"github.com/persys-dev/compute/internal/store/storetest"
)

// TestRegisterNodeIdentity: the scheduler tells its cluster id at
// registration; while a node's lease is alive, only the agent instance
// holding it registers again under its id (a restart); another instance,
// or an agent whose data dir belongs to another cluster, is refused with a
// reason naming the field. The same holds for a registration in the
// control stream's hello and for the unary RegisterNode that agents of
// the previous release call. A node that registers on its stream appears
// Ready with a lease; a hello naming another node than the certificate's
// is refused and registers nothing.
func TestRegisterNodeIdentity(t *testing.T) {
	st, _ := storetest.New(t)
	const nodeID, streamNode = "st-node-identity", "st-node-on-stream"
	b, err := pki.Bootstrap(t.TempDir(), []string{nodeID, streamNode}, nil, nil)
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
	agentConn := c.dial(ln.Addr().String(), b.Agents[nodeID])
	agentCli := persysv1grpc.NewControlServiceClient(agentConn)
	request := func(node, instance, cluster string) *persysv1.RegisterNodeRequest {
		return &persysv1.RegisterNodeRequest{
			NodeId: node, Address: "127.0.0.1:1", InstanceId: instance, ClusterId: cluster,
			Capabilities: &persysv1.NodeCapabilities{Capacity: &persysv1.Resources{CpuMillis: 1000, MemoryBytes: 512 * mib},
				Runtimes: []persysv1.WorkloadType{persysv1.WorkloadType_WORKLOAD_TYPE_CONTAINER}},
		}
	}
	unary := func(instance, cluster string) (*persysv1.RegisterNodeResponse, error) {
		rctx, rcancel := context.WithTimeout(ctx, 10*time.Second)
		defer rcancel()
		return agentCli.RegisterNode(rctx, request(nodeID, instance, cluster))
	}
	// onStream registers in the hello of a new control stream over conn,
	// which then ends.
	onStream := func(conn *grpc.ClientConn, hello string, req *persysv1.RegisterNodeRequest) (*persysv1.RegisterNodeResponse, error) {
		rctx, rcancel := context.WithTimeout(ctx, 10*time.Second)
		defer rcancel()
		stream, err := persysv1grpc.NewNodeChannelServiceClient(conn).Connect(rctx)
		if err != nil {
			return nil, err
		}
		var resp *persysv1.RegisterNodeResponse
		took := errors.New("registered")
		err = nodechannel.Serve(rctx, stream, nodechannel.Agent{NodeID: hello, Server: persysv1grpc.UnimplementedAgentServiceServer{},
			Register: req, Registered: func(r *persysv1.RegisterNodeResponse) error { resp = r; return took }})
		if errors.Is(err, took) {
			return resp, nil
		}
		if err == nil {
			err = errors.New("the stream ended before its hello was answered")
		}
		return nil, err
	}
	stream := func(instance, cluster string) (*persysv1.RegisterNodeResponse, error) {
		return onStream(agentConn, nodeID, request(nodeID, instance, cluster))
	}

	var first *persysv1.RegisterNodeResponse
	waitFor(t, "first registration", waitLong, func() (bool, string) {
		first, err = unary("instance-a", "")
		return err == nil, fmt.Sprint(err)
	})
	if first.GetClusterId() != b.ClusterID {
		t.Fatalf("cluster_id told = %q, want the CA's %q", first.GetClusterId(), b.ClusterID)
	}
	if s.ClusterID() != b.ClusterID {
		t.Fatalf("ClusterID() = %q, want %q", s.ClusterID(), b.ClusterID)
	}

	for _, path := range []struct {
		name     string
		register func(instance, cluster string) (*persysv1.RegisterNodeResponse, error)
	}{{"unary RegisterNode (previous release)", unary}, {"in the stream's hello", stream}} {
		t.Run(path.name, func(t *testing.T) {
			register := path.register
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
		})
	}

	admin := persysv1grpc.NewControlServiceClient(c.dial(ln.Addr().String(), b.Admin))
	listed := func(id string) *persysv1.Node {
		t.Helper()
		resp, err := admin.ListNodes(ctx, &persysv1.ListNodesRequest{})
		if err != nil {
			t.Fatal(err)
		}
		for _, n := range resp.GetNodes() {
			if n.GetId() == id {
				return n
			}
		}
		return nil
	}
	t.Run("a hello naming another node than the certificate's", func(t *testing.T) {
		_, err := onStream(agentConn, streamNode, request(streamNode, "instance-s", b.ClusterID))
		if status.Code(err) != codes.PermissionDenied || !strings.Contains(err.Error(), "hello.node_id") {
			t.Fatalf("register: %v, want PermissionDenied naming hello.node_id", err)
		}
		if n := listed(streamNode); n != nil {
			t.Fatalf("the refused node was registered: %v", n)
		}
	})
	t.Run("a node registers on its stream alone", func(t *testing.T) {
		conn := c.dial(ln.Addr().String(), b.Agents[streamNode])
		resp, err := onStream(conn, streamNode, request(streamNode, "instance-s", b.ClusterID))
		if err != nil || resp.GetClusterId() != b.ClusterID || resp.GetLeaseTtlSeconds() != 60 {
			t.Fatalf("register: %v, %v; want the cluster id and the lease TTL", resp, err)
		}
		n := listed(streamNode)
		if n.GetState() != persysv1.NodeState_NODE_STATE_READY || n.GetLeaseId() == 0 {
			t.Fatalf("node after registering on its stream: %v; want Ready with a lease", n)
		}
	})
	t.Run("the node declares how many calls it takes at once", func(t *testing.T) {
		conn := c.dial(ln.Addr().String(), b.Agents[streamNode])
		for _, tc := range []struct {
			declared uint32
			want     int // the scheduler's own bound is 8
			code     codes.Code
		}{{declared: 2, want: 2}, {declared: 0, want: 8}, {declared: 100, want: 8}, {declared: 5000, want: 8, code: codes.InvalidArgument}} {
			req := request(streamNode, "instance-s", b.ClusterID)
			req.MaxConcurrentCalls = tc.declared
			_, err := onStream(conn, streamNode, req)
			if status.Code(err) != tc.code {
				t.Fatalf("declared %d: %v, want %s", tc.declared, err, tc.code)
			}
			if err != nil && !strings.Contains(err.Error(), "max_concurrent_calls") {
				t.Fatalf("declared %d: refusal %v does not name max_concurrent_calls", tc.declared, err)
			}
			if got := s.CallLimit(streamNode); got != tc.want {
				t.Fatalf("declared %d: the scheduler sends %d calls at once, want %d", tc.declared, got, tc.want)
			}
		}
	})
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
