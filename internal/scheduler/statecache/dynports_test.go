package statecache

import (
	"slices"
	"testing"

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
