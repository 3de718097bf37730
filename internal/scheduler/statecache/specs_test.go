package statecache

import (
	"testing"
	"time"
	"unsafe"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	persysv1 "github.com/persys-dev/compute/api/persys/v1"
)

// Workloads with equal specs hold one spec, and each still reads back as
// written, every field kept; a different spec is its own.
func TestEqualSpecsAreHeldOnce(t *testing.T) {
	c := New(Config{})
	now := timestamppb.New(time.Unix(1_800_000_000, 0))
	mk := func(name, image string) *persysv1.Workload {
		return &persysv1.Workload{Name: name, Uid: "u-" + name, Labels: map[string]string{"app": name}, Revision: 3,
			CreatedAt: now, UpdatedAt: now, Deleting: true, AppliedBy: "ann", AppliedRole: "admin",
			Owner: &persysv1.ServiceOwner{Service: "s", ServiceUid: "su", Revision: 2},
			Spec: &persysv1.WorkloadSpec{Type: persysv1.WorkloadType_WORKLOAD_TYPE_CONTAINER,
				Resources: &persysv1.Resources{CpuMillis: 10}, Container: &persysv1.ContainerSpec{Image: image}}}
	}
	a, b, other := mk("a", "img:1"), mk("b", "img:1"), mk("c", "img:2")
	c.WorkloadWritten(a, 1)
	c.WorkloadChanged("b", b, 2, false)
	c.WorkloadWritten(other, 3)
	ra, _ := c.Read("a")
	rb, _ := c.Read("b")
	rc, _ := c.Read("c")
	if ra.Workload.GetSpec() != rb.Workload.GetSpec() {
		t.Error("a and b hold two equal specs")
	}
	if rc.Workload.GetSpec() == ra.Workload.GetSpec() {
		t.Error("c shares a's spec, which differs")
	}
	for _, tc := range []struct{ got, want *persysv1.Workload }{{ra.Workload, a}, {rb.Workload, b}, {rc.Workload, other}} {
		if !proto.Equal(tc.got, tc.want) {
			t.Errorf("read back %v, want %v", tc.got, tc.want)
		}
	}
	if b.GetSpec() == a.GetSpec() {
		t.Error("the caller's workload was changed")
	}
}

// A decoded workload never updated holds one timestamp for both of its
// times; one updated keeps both.
func TestEqualTimesAreHeldOnce(t *testing.T) {
	c := New(Config{})
	at := time.Unix(1_800_000_000, 5)
	fresh := wire(t, &persysv1.Workload{Name: "a", Uid: "ua", CreatedAt: timestamppb.New(at), UpdatedAt: timestamppb.New(at)})
	updated := wire(t, &persysv1.Workload{Name: "b", Uid: "ub", CreatedAt: timestamppb.New(at), UpdatedAt: timestamppb.New(at.Add(time.Second))})
	c.WorkloadChanged("a", fresh, 1, false)
	c.WorkloadChanged("b", updated, 2, false)
	ra, _ := c.Read("a")
	rb, _ := c.Read("b")
	if ra.Workload.GetCreatedAt() != ra.Workload.GetUpdatedAt() || !proto.Equal(ra.Workload, fresh) {
		t.Errorf("a: %v, want %v with one timestamp", ra.Workload, fresh)
	}
	if fresh.GetCreatedAt() == fresh.GetUpdatedAt() {
		t.Error("the caller's workload was changed")
	}
	if !proto.Equal(rb.Workload, updated) {
		t.Errorf("b: %v, want %v", rb.Workload, updated)
	}
}

// The maps keyed by workload name hold the workload's own string, not
// the equal ones callers passed.
func TestNameKeysShareTheWorkloadsString(t *testing.T) {
	c := New(Config{})
	benchNodes(c, 1)
	var rev int64 = 10
	placeRunning(t, c, 1, &rev)
	w := c.workloads["bench-0000001"].w
	same := func(where, key string) {
		t.Helper()
		if unsafe.StringData(key) != unsafe.StringData(w.GetName()) {
			t.Errorf("%s holds its own copy of %q", where, key)
		}
	}
	for key := range c.workloads {
		same("the cache", key)
	}
	for key := range c.byNode["node-00000"] {
		same("the node index", key)
	}
	for key := range c.snap.held {
		same("the snapshot", key)
	}
	for key := range c.nodes["node-00000"].reports {
		same("the reports", key)
	}
}
