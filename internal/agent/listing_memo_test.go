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

// A listing that finds nothing changed hands out the same statuses as the
// one before (stamped and overlaid once, not copied on every heartbeat),
// so the heartbeat's delta is empty by identity; a workload that changed
// comes as a new status with the change, and the others stay the same.
func TestListingKeepsUnchangedStatuses(t *testing.T) {
	a, rt := simAgent(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	spec := &persysv1.WorkloadSpec{Type: persysv1.WorkloadType_WORKLOAD_TYPE_CONTAINER,
		Container: &persysv1.ContainerSpec{Image: "x:1"}, Resources: &persysv1.Resources{CpuMillis: 10, MemoryBytes: 1 << 20}}
	for _, name := range []string{"a", "b"} {
		if _, _, err := a.apply(ctx, rt, &persysv1.ApplyWorkloadRequest{Name: name, Uid: "u-" + name, Revision: 1, Spec: spec}); err != nil {
			t.Fatal(err)
		}
	}
	first, err := a.listAll(ctx)
	if err != nil || len(first) != 2 {
		t.Fatalf("list: %v (%v)", first, err)
	}
	for _, st := range first {
		if st.GetNodeId() != "n1" || !st.GetReady() {
			t.Fatalf("listed %v: want stamped with the node and ready (running, no checks)", st)
		}
	}
	sent := acked(nil, digestWhole(first), first, nil, time.Time{})
	again, err := a.listAll(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for i := range first {
		if again[i] != first[i] {
			t.Fatalf("status %s listed again unchanged is a new copy", first[i].GetName())
		}
	}
	if c := sent.delta(again); len(c.changed)+len(c.removed) != 0 || c.digest != sent.digest {
		t.Fatalf("delta of an unchanged listing: %d changed, %v removed", len(c.changed), c.removed)
	}

	rt.Kill("a")
	after, err := a.listAll(ctx)
	if err != nil {
		t.Fatal(err)
	}
	c := sent.delta(after)
	if len(c.changed) != 1 || c.changed[0].GetName() != "a" || c.changed[0].GetState() != persysv1.ActualState_ACTUAL_STATE_FAILED ||
		c.changed[0].GetReady() || c.changed[0].GetNodeId() != "n1" {
		t.Fatalf("after a's kill the delta is %v, want a alone, FAILED, not ready, stamped", c.changed)
	}
	if after[1] != first[1] {
		t.Fatal("b, unchanged, is a new copy after a's kill")
	}
	if first[0].GetState() != persysv1.ActualState_ACTUAL_STATE_RUNNING {
		t.Fatal("the kill changed a status listed before it")
	}
}

// simAgent is an agent of node n1 (not running) on a sim runtime.
func simAgent(t *testing.T) (*Agent, *sim.Runtime) {
	t.Helper()
	return simAgentOf(t, &persysv1.Resources{CpuMillis: 1000, MemoryBytes: 1 << 30})
}

// simAgentOf is simAgent with the node's capacity.
func simAgentOf(tb testing.TB, capacity *persysv1.Resources) (*Agent, *sim.Runtime) {
	tb.Helper()
	rt, err := sim.New(sim.Options{})
	if err != nil {
		tb.Fatal(err)
	}
	a, err := New(Config{NodeID: "n1", AdvertiseAddr: "127.0.0.1", Runtimes: []runtime.Runtime{rt},
		Channel: persysv1grpc.NewNodeChannelServiceClient(nil), Capacity: capacity})
	if err != nil {
		tb.Fatal(err)
	}
	return a, rt
}
