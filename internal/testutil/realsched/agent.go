package realsched

import (
	"context"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	persysv1 "github.com/persys-dev/compute/api/persys/v1"
	"github.com/persys-dev/compute/api/persys/v1/persysv1grpc"
	"github.com/persys-dev/compute/internal/agent"
	"github.com/persys-dev/compute/internal/pki"
	persysruntime "github.com/persys-dev/compute/internal/runtime"
	"github.com/persys-dev/compute/internal/runtime/sim"
	"github.com/persys-dev/compute/internal/testutil/eventually"
)

// StartAgent runs a real agent for node id (one of Options.Nodes) on a sim
// runtime with opts, following the schedulers' leader, and waits until the
// scheduler reports the node READY. It stops when the test ends.
func (c *Cluster) StartAgent(t testing.TB, id string, opts sim.Options) *sim.Runtime {
	t.Helper()
	return c.StartAgentConfig(t, id, opts, nil)
}

// StartAgentConfig is StartAgent with edit applied to the agent's
// configuration before the agent is made (nil: none).
func (c *Cluster) StartAgentConfig(t testing.TB, id string, opts sim.Options, edit func(*agent.Config)) *sim.Runtime {
	t.Helper()
	files, ok := c.Bundle.Agents[id]
	if !ok {
		t.Fatalf("realsched: node %q is not in Options.Nodes", id)
	}
	rt, err := sim.New(opts)
	if err != nil {
		t.Fatal(err)
	}
	clientTLS, err := pki.ClientTLS(files, "")
	if err != nil {
		t.Fatal(err)
	}
	scheds, err := agent.DialSchedulers(c.Addrs, clientTLS)
	if err != nil {
		t.Fatal(err)
	}
	cfg := agent.Config{
		NodeID: id, AdvertiseAddr: "127.0.0.1", Labels: map[string]string{"node": id},
		Runtimes: []persysruntime.Runtime{rt}, Schedulers: scheds, HeartbeatInterval: 200 * time.Millisecond,
		Capacity: &persysv1.Resources{CpuMillis: 4000, MemoryBytes: 4 << 30, DiskBytes: 40 << 30},
		DataDir:  t.TempDir(), Logger: slog.New(slog.NewJSONHandler(c.logs, nil)).With("component", "agent", "node", id),
		Registry: prometheus.NewRegistry(),
	}
	if edit != nil {
		edit(&cfg)
	}
	a, err := agent.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { defer wg.Done(); _ = a.Run(ctx) }()
	t.Cleanup(func() { cancel(); wg.Wait(); _ = scheds.Close() })
	control := persysv1grpc.NewControlServiceClient(c.Conn(t, c.Addrs[0]))
	eventually.Eventually(t, "node "+id+" READY", 30*time.Second, func() (bool, string) {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		n, err := control.GetNode(ctx, &persysv1.GetNodeRequest{Id: id})
		if err != nil {
			return false, err.Error()
		}
		return n.GetState() == persysv1.NodeState_NODE_STATE_READY, n.GetState().String()
	})
	return rt
}
