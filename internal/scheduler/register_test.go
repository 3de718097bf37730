package scheduler_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	persysv1 "github.com/persys-dev/compute/api/persys/v1"
	"github.com/persys-dev/compute/internal/pki"
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
	clientTLS, err := pki.ClientTLS(b.Scheduler, "")
	if err != nil {
		t.Fatal(err)
	}
	s, err := scheduler.New(scheduler.Config{Store: st, Agents: scheduler.TLSDialer{TLS: clientTLS},
		Logger: testLogger(), Registry: prometheus.NewRegistry(), LeaseTTL: time.Minute, ClusterID: b.ClusterID})
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
	agentCli := persysv1.NewControlServiceClient(c.dial(ln.Addr().String(), b.Agents[nodeID]))
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
