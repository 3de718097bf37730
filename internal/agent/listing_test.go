package agent

import (
	"context"
	"testing"
	"time"

	persysv1 "github.com/persys-dev/compute/api/persys/v1"
	"github.com/persys-dev/compute/api/persys/v1/persysv1grpc"
	"github.com/persys-dev/compute/internal/runtime"
	"github.com/persys-dev/compute/internal/runtime/sim"
)

// gatedRuntime lists only when the test lets it, like an engine that holds
// an inspect while a container starts.
type gatedRuntime struct {
	runtime.Runtime
	gate chan struct{}
}

func (g gatedRuntime) List(ctx context.Context) ([]*persysv1.WorkloadStatus, error) {
	select {
	case <-g.gate:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	return g.Runtime.List(ctx)
}

func TestHeartbeatListDoesNotWaitForSlowRuntimes(t *testing.T) {
	rt, err := sim.New(sim.Options{})
	if err != nil {
		t.Fatal(err)
	}
	gate := make(chan struct{}, 16)
	a, err := New(Config{NodeID: "n1", AdvertiseAddr: "127.0.0.1", Runtimes: []runtime.Runtime{gatedRuntime{rt, gate}},
		Channel:  persysv1grpc.NewNodeChannelServiceClient(nil),
		Capacity: &persysv1.Resources{CpuMillis: 1000, MemoryBytes: 1 << 30}})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if _, _, err := rt.Apply(ctx, runtime.Instance{Name: "w1", UID: "u1", Revision: 1, Spec: &persysv1.WorkloadSpec{
		Type: persysv1.WorkloadType_WORKLOAD_TYPE_CONTAINER, Container: &persysv1.ContainerSpec{Image: "x:1"}}}); err != nil {
		t.Fatal(err)
	}

	// No complete list yet: the first heartbeat waits for one.
	gate <- struct{}{}
	ws, fresh, err := a.heartbeatList(ctx, 10*time.Millisecond)
	if err != nil || !fresh || len(ws) != 1 {
		t.Fatalf("first list = %d workloads, fresh %v, %v; want 1 fresh", len(ws), fresh, err)
	}

	// The runtime now hangs: the heartbeat goes out with the last list.
	ws, fresh, err = a.heartbeatList(ctx, 10*time.Millisecond)
	if err != nil || fresh || len(ws) != 1 || ws[0].GetName() != "w1" {
		t.Fatalf("while listing hangs = %v, fresh %v, %v; want the previous list", ws, fresh, err)
	}

	// Once the runtime answers, the listing in flight serves the next one.
	gate <- struct{}{}
	deadline := time.Now().Add(10 * time.Second)
	for {
		_, fresh, err = a.heartbeatList(ctx, 100*time.Millisecond)
		if err != nil {
			t.Fatal(err)
		}
		if fresh {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("no fresh list after the runtime answered")
		}
		gate <- struct{}{}
	}
}

// After a (re)start the registration's list is the last complete one: the
// first heartbeat must not wait for a runtime that hangs (it would miss
// the lease, and the node would be lost while it is busy stopping).
func TestFirstHeartbeatAfterRegistrationDoesNotWait(t *testing.T) {
	rt, err := sim.New(sim.Options{})
	if err != nil {
		t.Fatal(err)
	}
	a, err := New(Config{NodeID: "n1", AdvertiseAddr: "127.0.0.1", Runtimes: []runtime.Runtime{gatedRuntime{rt, make(chan struct{})}},
		Channel:  persysv1grpc.NewNodeChannelServiceClient(nil),
		Capacity: &persysv1.Resources{CpuMillis: 1000, MemoryBytes: 1 << 30}})
	if err != nil {
		t.Fatal(err)
	}
	registered := []*persysv1.WorkloadStatus{{Name: "w1", NodeId: "n1"}}
	a.lister.seed(registered)

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	ws, fresh, err := a.heartbeatList(ctx, 10*time.Millisecond)
	if err != nil || fresh || len(ws) != 1 || ws[0].GetName() != "w1" {
		t.Fatalf("first heartbeat list = %v, fresh %v, %v; want the registration's list", ws, fresh, err)
	}
}
