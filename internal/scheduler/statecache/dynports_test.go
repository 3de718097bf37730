package statecache

import (
	"slices"
	"testing"
	"time"

	persysv1 "github.com/persys-dev/compute/api/persys/v1"
	"github.com/persys-dev/compute/internal/placement"
)

func dynamicNode(c *Cache, id string, first, last uint32) {
	c.NodeChanged(id, &persysv1.Node{Id: id, Capabilities: &persysv1.NodeCapabilities{
		Runtimes:     []persysv1.WorkloadType{persysv1.WorkloadType_WORKLOAD_TYPE_CONTAINER},
		Capacity:     &persysv1.Resources{CpuMillis: 1000, MemoryBytes: 1 << 30, DiskBytes: 1 << 30},
		DynamicPorts: &persysv1.PortRange{First: first, Last: last}}}, 1, false)
	c.SetAlive(id, true)
}

func dynamicWorkload(name string) *persysv1.Workload {
	w := workloadNamed(name, "u"+name, 10)
	w.Spec.Container = &persysv1.ContainerSpec{Ports: []*persysv1.PortMapping{{ContainerPort: 80, Protocol: "tcp", Dynamic: true}}}
	return w
}

// A chosen dynamic port is held from the choice on: the next choice gets
// the next number, a release gives it back, and a committed assignment
// keeps it taken across a rebuild of the snapshot, on both nodes while
// the workload moves.
func TestChooseHoldsDynamicPorts(t *testing.T) {
	c := New(Config{})
	dynamicNode(c, "n1", 20000, 20001)
	a, b, x := dynamicWorkload("a"), dynamicWorkload("b"), dynamicWorkload("x")
	c.WorkloadWritten(a, 2)
	c.WorkloadWritten(b, 3)
	c.WorkloadWritten(x, 4)

	_, ha, _ := c.Choose("a", a.GetSpec())
	_, hb, _ := c.Choose("b", b.GetSpec())
	if !slices.Equal(ha.DynamicPorts(), []uint32{20000}) || !slices.Equal(hb.DynamicPorts(), []uint32{20001}) {
		t.Fatalf("a got %v, b got %v; want 20000 and 20001", ha.DynamicPorts(), hb.DynamicPorts())
	}
	if dec, _, _ := c.Choose("x", x.GetSpec()); dec.Placed() || dec.Rejections[0].Reason != placement.PortConflict {
		t.Fatalf("x placed (%+v) with the range taken", dec)
	}
	c.Release("b", hb)
	if _, h, _ := c.Choose("x", x.GetSpec()); !slices.Equal(h.DynamicPorts(), []uint32{20001}) {
		t.Fatalf("x got %v after b's release, want 20001", h.DynamicPorts())
	}

	// Committed, a moving to n2 with its old copy on n1: both hold 20000.
	c2 := New(Config{})
	dynamicNode(c2, "n1", 20000, 20000)
	dynamicNode(c2, "n2", 20000, 20000)
	c2.WorkloadWritten(a, 2)
	c2.WorkloadWritten(b, 3)
	c2.Placed(Placement{Name: "a", WorkloadRev: 2, Rev: 5,
		Assignment: &persysv1.Assignment{Name: "a", Uid: "ua", NodeId: "n2", Revision: 1, DynamicHostPorts: []uint32{20000},
			PreviousNodeId: "n1", PreviousDynamicHostPorts: []uint32{20000}},
		Status: &persysv1.WorkloadStatus{Name: "a", State: persysv1.ActualState_ACTUAL_STATE_SCHEDULED}})
	dynamicNode(c2, "n1", 20000, 20000) // drops the snapshot
	if dec, _, _ := c2.Choose("b", b.GetSpec()); dec.Placed() {
		t.Fatalf("b placed on %s while a's copies hold port 20000 on both nodes", dec.NodeID)
	}
}

// A dynamic port a start found taken is blocked on its node: the
// workload gets the next free one (its own old port still counts until
// the new assignment is cached), the next choice skips both, and the
// block ends after PortBlockFor. A range with no other port answers
// false.
func TestRepickDynamicBlocksTakenPort(t *testing.T) {
	now := time.Unix(1_000_000, 0)
	c := New(Config{Now: func() time.Time { return now }})
	dynamicNode(c, "n1", 20000, 20002)
	a, b := dynamicWorkload("a"), dynamicWorkload("b")
	c.WorkloadWritten(a, 2)
	c.WorkloadWritten(b, 3)
	place := func(name string, wrev int64, ports []uint32, rev int64) {
		t.Helper()
		c.Placed(Placement{Name: name, WorkloadRev: wrev, Rev: rev,
			Assignment: &persysv1.Assignment{Name: name, Uid: "u" + name, NodeId: "n1", Revision: 1, DynamicHostPorts: ports},
			Status:     &persysv1.WorkloadStatus{Name: name, State: persysv1.ActualState_ACTUAL_STATE_SCHEDULED}})
	}
	_, ha, _ := c.Choose("a", a.GetSpec())
	place("a", 2, ha.DynamicPorts(), 4)

	chosen, ok := c.RepickDynamic("a", "n1", a.GetSpec(), []uint32{20000}, now.Add(PortBlockFor))
	if !ok || !slices.Equal(chosen, []uint32{20001}) {
		t.Fatalf("repick = %v, %v; want 20001", chosen, ok)
	}
	next := &persysv1.Assignment{Name: "a", Uid: "ua", NodeId: "n1", Revision: 1, DynamicHostPorts: chosen}
	c.RepickDone("a", 2, next, 5)
	if r, _ := c.Read("a"); !slices.Equal(r.Assignment.GetDynamicHostPorts(), chosen) {
		t.Fatalf("cached assignment %v, want ports %v", r.Assignment.Proto(), chosen)
	}
	if _, hb, _ := c.Choose("b", b.GetSpec()); !slices.Equal(hb.DynamicPorts(), []uint32{20002}) {
		t.Fatalf("b got %v; want 20002 (20000 blocked, 20001 a's)", hb.DynamicPorts())
	} else {
		c.Release("b", hb)
	}

	// 20001 taken too: 20002 is the last; with it taken (and the commit
	// of the choice failed, so a still holds 20001) nothing is left.
	if got, ok := c.RepickDynamic("a", "n1", a.GetSpec(), chosen, now.Add(PortBlockFor)); !ok || !slices.Equal(got, []uint32{20002}) {
		t.Fatalf("repick with 20000 and 20001 blocked = %v, %v; want 20002", got, ok)
	}
	c.RepickDone("a", 2, nil, 0)
	if got, ok := c.RepickDynamic("a", "n1", a.GetSpec(), []uint32{20002}, now.Add(PortBlockFor)); ok {
		t.Fatalf("repick with the whole range blocked or held gave %v", got)
	}
	c.RepickDone("a", 2, nil, 0)

	now = now.Add(PortBlockFor)
	dynamicNode(c, "n1", 20000, 20002) // drops the snapshot
	if _, hb, _ := c.Choose("b", b.GetSpec()); !slices.Equal(hb.DynamicPorts(), []uint32{20000}) {
		t.Fatalf("b got %v once the blocks ended; want 20000", hb.DynamicPorts())
	}
}
