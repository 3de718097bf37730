package statecache

import (
	"slices"
	"testing"
	"time"

	persysv1 "github.com/persys-dev/compute/api/persys/v1"
)

func workloadNamed(name, uid string, cpu int64) *persysv1.Workload {
	return &persysv1.Workload{Name: name, Uid: uid, Revision: 1, Spec: &persysv1.WorkloadSpec{
		Type:      persysv1.WorkloadType_WORKLOAD_TYPE_CONTAINER,
		Resources: &persysv1.Resources{CpuMillis: cpu, MemoryBytes: 1 << 20}}}
}

// A deleted workload stays deleted: neither a late write-back of the
// scheduler's own nor a lagging watch event at an older revision brings
// it back; a newer write (a new workload of that name) does.
func TestTombstoneKeepsADeletedWorkloadOut(t *testing.T) {
	c := New(Config{})
	w := workloadNamed("web", "u1", 100)
	if !c.WorkloadWritten(w, 4) {
		t.Fatal("first write of web was not news")
	}
	if c.WorkloadChanged("web", w, 4, false) {
		t.Error("the watch's echo of our own write was news")
	}
	if !c.WorkloadChanged("web", nil, 5, true) || c.Has("web") {
		t.Fatal("deletion at 5 did not remove web")
	}
	if c.WorkloadWritten(w, 4) || c.WorkloadChanged("web", w, 5, false) || c.Has("web") {
		t.Fatal("a write at or before the deletion brought web back")
	}
	if !c.WorkloadWritten(workloadNamed("web", "u2", 100), 6) || !c.Has("web") {
		t.Fatal("a new workload web at 6 was not cached")
	}
}

// A chosen node is held before the commit, so a concurrent choice sees it
// taken; a release gives it back, and a commit keeps it held.
func TestChooseHoldsTheNodeUntilReleased(t *testing.T) {
	c := New(Config{})
	c.NodeChanged("n1", &persysv1.Node{Id: "n1", Capabilities: &persysv1.NodeCapabilities{
		Runtimes: []persysv1.WorkloadType{persysv1.WorkloadType_WORKLOAD_TYPE_CONTAINER},
		Capacity: &persysv1.Resources{CpuMillis: 1000, MemoryBytes: 1 << 30, DiskBytes: 1 << 30}}}, 1, false)
	c.SetAlive("n1", true)
	a, b := workloadNamed("a", "ua", 600), workloadNamed("b", "ub", 600)
	c.WorkloadWritten(a, 2)
	c.WorkloadWritten(b, 3)

	dec, held, _ := c.Choose("a", a.GetSpec())
	if dec.NodeID != "n1" {
		t.Fatalf("a: placed on %q, want n1 (%+v)", dec.NodeID, dec)
	}
	if dec, _, _ := c.Choose("b", b.GetSpec()); dec.Placed() {
		t.Fatalf("b placed on %s while a holds 600 of its 1000 millicores", dec.NodeID)
	}
	c.Release("a", held)
	dec, _, _ = c.Choose("b", b.GetSpec())
	if dec.NodeID != "n1" {
		t.Fatalf("b: placed on %q after a's release, want n1", dec.NodeID)
	}
	c.Placed(Placement{Name: "b", WorkloadRev: 3, Rev: 4,
		Assignment: &persysv1.Assignment{Name: "b", Uid: "ub", NodeId: "n1", Revision: 1},
		Status:     &persysv1.WorkloadStatus{Name: "b", State: persysv1.ActualState_ACTUAL_STATE_SCHEDULED}})
	if got := c.AssignedTo("n1"); len(got) != 1 || got[0] != "b" {
		t.Fatalf("n1 holds %v after b's commit, want [b]", got)
	}
	c.NodeChanged("n1", &persysv1.Node{Id: "n1", Capabilities: &persysv1.NodeCapabilities{
		Runtimes: []persysv1.WorkloadType{persysv1.WorkloadType_WORKLOAD_TYPE_CONTAINER},
		Capacity: &persysv1.Resources{CpuMillis: 1000, MemoryBytes: 1 << 30, DiskBytes: 1 << 30}}}, 1, false)
	if dec, _, _ := c.Choose("a", a.GetSpec()); dec.Placed() {
		t.Fatalf("a placed on %s after the snapshot's rebuild while b holds 600 of its 1000 millicores", dec.NodeID)
	}
	if d := c.IndexDrift(); d != "" {
		t.Fatal(d)
	}
}

// The scheduler's own node write goes to the cache first; the watch's
// event of an older record (a registration before it) must not undo it,
// or a cordon read back at once shows the node uncordoned.
func TestStaleNodeEventDoesNotUndoAWrite(t *testing.T) {
	c := New(Config{})
	c.NodeChanged("n1", &persysv1.Node{Id: "n1"}, 3, false)
	if c.SetCordon("n1", true, false) == nil {
		t.Fatal("n1 not cached")
	}
	c.NodeWritten("n1", 5)
	c.NodeChanged("n1", &persysv1.Node{Id: "n1"}, 4, false)
	if v := c.NodeViews("n1"); len(v) != 1 || !v[0].GetCordoned() {
		t.Fatalf("after a stale event: %v, want n1 cordoned", v)
	}
	c.NodeChanged("n1", &persysv1.Node{Id: "n1", Address: "a:1"}, 6, false)
	if v := c.NodeViews("n1"); len(v) != 1 || v[0].GetAddress() != "a:1" || v[0].GetCordoned() {
		t.Fatalf("after a newer event: %v, want its record", v)
	}
}

// Pending lists the unplaced workloads and those of a lost node, from
// indexes kept in step with every change (not a walk of the cache), and
// leaves out placed workloads on live nodes and deleted ones.
func TestPendingFollowsPlacementsAndNodeLoss(t *testing.T) {
	c := New(Config{})
	node := &persysv1.Node{Id: "n1", Capabilities: &persysv1.NodeCapabilities{
		Runtimes: []persysv1.WorkloadType{persysv1.WorkloadType_WORKLOAD_TYPE_CONTAINER},
		Capacity: &persysv1.Resources{CpuMillis: 4000, MemoryBytes: 1 << 30, DiskBytes: 1 << 30}}}
	c.NodeChanged("n1", node, 1, false)
	c.SetAlive("n1", true)
	pending := func() []string { return slices.Sorted(slices.Values(c.Pending())) }
	check := func(when string, want ...string) {
		t.Helper()
		if got := pending(); !slices.Equal(got, want) {
			t.Fatalf("%s: pending %v, want %v", when, got, want)
		}
		if d := c.IndexDrift(); d != "" {
			t.Fatalf("%s: %s", when, d)
		}
	}
	c.WorkloadWritten(workloadNamed("a", "ua", 100), 2)
	c.WorkloadWritten(workloadNamed("b", "ub", 100), 3)
	check("both unplaced", "a", "b")

	c.Placed(Placement{Name: "a", WorkloadRev: 2, Rev: 4,
		Assignment: &persysv1.Assignment{Name: "a", Uid: "ua", NodeId: "n1", Revision: 1},
		Status:     &persysv1.WorkloadStatus{Name: "a", State: persysv1.ActualState_ACTUAL_STATE_SCHEDULED}})
	check("a placed", "b")

	c.SetAlive("n1", false)
	check("n1 lost", "a", "b")
	c.SetAlive("n1", true)
	check("n1 back", "b")

	// A new workload of a's name (another uid) starts unplaced.
	c.WorkloadWritten(workloadNamed("a", "ua2", 100), 5)
	check("a created again", "a", "b")

	if !c.WorkloadChanged("b", nil, 6, true) {
		t.Fatal("b's deletion was not news")
	}
	check("b deleted", "a")
}

// A node's loss, return and registration again with the same record patch
// the placement snapshot instead of rebuilding it (a rebuild walks every
// workload under the lock); placements see the change at once. A record
// that places differently still rebuilds it.
func TestNodeLivenessPatchesTheSnapshot(t *testing.T) {
	c := New(Config{})
	rec := func(cpu int64) *persysv1.Node {
		return &persysv1.Node{Id: "n1", Capabilities: &persysv1.NodeCapabilities{
			Runtimes: []persysv1.WorkloadType{persysv1.WorkloadType_WORKLOAD_TYPE_CONTAINER},
			Capacity: &persysv1.Resources{CpuMillis: cpu, MemoryBytes: 1 << 30, DiskBytes: 1 << 30}}}
	}
	c.NodeChanged("n1", rec(1000), 1, false)
	c.SetAlive("n1", true)
	w := workloadNamed("a", "ua", 100)
	c.WorkloadWritten(w, 2)
	choose := func() string {
		t.Helper()
		dec, held, _ := c.Choose("a", w.GetSpec())
		if dec.Placed() {
			c.Release("a", held)
		}
		return dec.NodeID
	}
	if got := choose(); got != "n1" {
		t.Fatalf("placed on %q, want n1", got)
	}
	snap := c.snap

	c.SetAlive("n1", false)
	if c.snap != snap {
		t.Fatal("a node's loss rebuilt the snapshot")
	}
	if got := choose(); got != "" {
		t.Fatalf("placed on %q while n1 is lost", got)
	}
	c.RegisterNode(rec(1000), time.Now())
	c.NodeChanged("n1", rec(1000), 3, false)
	if c.snap != snap {
		t.Fatal("n1's registration again with the same record rebuilt the snapshot")
	}
	if got := choose(); got != "n1" {
		t.Fatalf("placed on %q after n1 returned, want n1", got)
	}

	c.NodeChanged("n1", rec(50), 4, false)
	if got := choose(); got != "" {
		t.Fatalf("placed on %q: n1's new record has 50 millicores for a 100 one", got)
	}
}

// The Git poller is shown only the workloads whose Git source is polled,
// not every workload: one that stops polling or is deleted drops out.
func TestEachGitPolledSeesOnlyPolledSources(t *testing.T) {
	c := New(Config{})
	polled := func(name string, every int64) *persysv1.Workload {
		w := workloadNamed(name, "u-"+name, 10)
		w.Spec.Type = persysv1.WorkloadType_WORKLOAD_TYPE_COMPOSE
		w.Spec.Compose = &persysv1.ComposeSpec{Git: &persysv1.GitSource{Url: "https://example.test/r.git", PollIntervalSeconds: every}}
		return w
	}
	c.WorkloadWritten(workloadNamed("plain", "u-plain", 10), 2)
	c.WorkloadWritten(polled("git", 60), 3)
	c.WorkloadWritten(polled("git-once", 0), 4)
	c.WorkloadWritten(polled("git-gone", 60), 5)
	seen := func() []string {
		var names []string
		c.EachGitPolled(func(name string, _ *persysv1.Workload, _ persysv1.FailureReason) { names = append(names, name) })
		slices.Sort(names)
		return names
	}
	if got := seen(); !slices.Equal(got, []string{"git", "git-gone"}) {
		t.Fatalf("polled %v, want [git git-gone]", got)
	}
	next := polled("git", 0)
	next.Revision = 2
	c.WorkloadChanged("git", next, 6, false)
	c.WorkloadChanged("git-gone", nil, 7, true)
	if got := seen(); len(got) != 0 {
		t.Fatalf("polled %v after one stopped polling and one was deleted, want none", got)
	}
}
