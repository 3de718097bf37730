package statecache

import (
	"slices"
	"testing"

	persysv1 "github.com/persys-dev/compute/api/persys/v1"
	"github.com/persys-dev/compute/internal/reportdigest"
)

// A delta applies to the list a node last sent whole only when the result
// has the digest the agent named; otherwise nothing changes.
func TestApplyDelta(t *testing.T) {
	st := func(name string, state persysv1.ActualState) *persysv1.WorkloadStatus {
		return &persysv1.WorkloadStatus{Name: name, Uid: "u-" + name, NodeId: "n1", State: state}
	}
	const running, failed = persysv1.ActualState_ACTUAL_STATE_RUNNING, persysv1.ActualState_ACTUAL_STATE_FAILED
	c := New(Config{})
	c.NodeChanged("n1", &persysv1.Node{Id: "n1"}, 1, false)
	if _, ok := c.ApplyDelta("n1", nil, nil, 1); ok {
		t.Fatal("a delta applied before the node sent any list whole")
	}
	full := []*persysv1.WorkloadStatus{st("a", running), st("b", running), st("c", running)}
	c.StoreReports("n1", full, reportdigest.Of(full))

	next := []*persysv1.WorkloadStatus{st("a", running), st("b", failed)}
	for _, tc := range []struct {
		name    string
		changed []*persysv1.WorkloadStatus
		removed []string
		digest  uint64
		ok      bool
	}{
		{"wrong digest", []*persysv1.WorkloadStatus{st("b", failed)}, []string{"c"}, reportdigest.Of(next) ^ 1, false},
		{"missing a removal", []*persysv1.WorkloadStatus{st("b", failed)}, nil, reportdigest.Of(next), false},
		{"no digest", []*persysv1.WorkloadStatus{st("b", failed)}, []string{"c"}, 0, false},
		{"unknown node", nil, nil, reportdigest.Of(full), false},
		{"applies", []*persysv1.WorkloadStatus{st("b", failed)}, []string{"c"}, reportdigest.Of(next), true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			node := "n1"
			if tc.name == "unknown node" {
				node = "n2"
			}
			r, ok := c.ApplyDelta(node, tc.changed, tc.removed, tc.digest)
			if ok != tc.ok {
				t.Fatalf("ApplyDelta ok = %v, want %v", ok, tc.ok)
			}
			if !ok {
				if c.Report("n1", "c") == nil || c.Report("n1", "b").GetState() != running {
					t.Fatal("a refused delta changed the list held")
				}
				return
			}
			slices.Sort(r.Changed)
			if !slices.Equal(r.Changed, []string{"b", "c"}) {
				t.Fatalf("changed %v, want [b c]", r.Changed)
			}
			if c.Report("n1", "c") != nil || c.Report("n1", "b").GetState() != failed {
				t.Fatal("the delta was not applied to the list held")
			}
			if _, ok := c.DigestOrphans("n1", reportdigest.Of(next)); !ok {
				t.Fatal("the digest of the list made by the delta is not held")
			}
		})
	}
}

// A heartbeat finds the orphans its node runs without checking every
// report: what an assignment moved away from, a workload deleted or
// created again (another uid), and, after the cache is loaded again, all
// it holds. An orphan is found again on each heartbeat until its report
// goes, so a removal that failed is asked for again.
func TestHeartbeatsFindOrphansAsAssignmentsMove(t *testing.T) {
	const running = persysv1.ActualState_ACTUAL_STATE_RUNNING
	c := New(Config{})
	for _, id := range []string{"n1", "n2"} {
		c.NodeChanged(id, &persysv1.Node{Id: id}, 1, false)
		c.SetAlive(id, true)
	}
	rev := int64(10)
	place := func(name, uid, node string) {
		rev++
		c.WorkloadWritten(workloadNamed(name, uid, 10), rev)
		rev++
		c.AssignmentChanged(name, &persysv1.Assignment{Name: name, Uid: uid, NodeId: node, Revision: 1}, rev, false)
	}
	for _, n := range []string{"a", "b", "c", "d"} {
		place(n, "u-"+n, "n1")
	}
	st := func(name, uid string) *persysv1.WorkloadStatus {
		return &persysv1.WorkloadStatus{Name: name, Uid: uid, NodeId: "n1", State: running, Revision: 1}
	}
	list := []*persysv1.WorkloadStatus{st("a", "u-a"), st("b", "u-b"), st("c", "u-c"), st("d", "u-d")}
	if r := c.StoreReports("n1", list, reportdigest.Of(list)); len(r.Orphans) != 0 {
		t.Fatalf("orphans %v in a list of what is assigned to the node", r.Orphans)
	}
	digest := reportdigest.Of(list)
	orphans := func(when string, got []Orphan, ok bool, want ...string) {
		t.Helper()
		if !ok {
			t.Fatalf("%s: the list held is not the agent's", when)
		}
		var names []string
		for _, o := range got {
			names = append(names, o.Name+"/"+o.UID)
		}
		slices.Sort(names)
		if !slices.Equal(names, want) {
			t.Fatalf("%s: orphans %v, want %v", when, names, want)
		}
	}
	o, ok := c.DigestOrphans("n1", digest)
	orphans("nothing moved", o, ok)

	// a moves to n2; b is deleted; c is created again with another uid.
	rev++
	c.AssignmentChanged("a", &persysv1.Assignment{Name: "a", Uid: "u-a", NodeId: "n2", Revision: 2}, rev, false)
	rev++
	c.WorkloadChanged("b", nil, rev, true)
	rev++
	c.WorkloadChanged("c", workloadNamed("c", "u-c2", 10), rev, false)
	o, ok = c.DigestOrphans("n1", digest)
	orphans("after the moves", o, ok, "a/u-a", "b/u-b", "c/u-c")
	o, ok = c.DigestOrphans("n1", digest)
	orphans("their removal not seen yet", o, ok, "a/u-a", "b/u-b", "c/u-c")

	// The node removed a and b, and d changed; c is still there.
	next := []*persysv1.WorkloadStatus{st("c", "u-c"), st("d", "u-d")}
	next[1].Message = "still running"
	r, ok := c.ApplyDelta("n1", next[1:], []string{"a", "b"}, reportdigest.Of(next))
	orphans("a delta that left c", r.Orphans, ok, "c/u-c")

	// d moves away while the node sends a delta that does not name it.
	rev++
	c.AssignmentChanged("d", &persysv1.Assignment{Name: "d", Uid: "u-d", NodeId: "n2", Revision: 2}, rev, false)
	next[0] = st("c", "u-c")
	next[0].Message = "also still running"
	r, ok = c.ApplyDelta("n1", next[:1], nil, reportdigest.Of(next))
	orphans("d moved away", r.Orphans, ok, "c/u-c", "d/u-d")

	// A cache loaded again (a watch failure) under the reports kept checks
	// them all: e is an orphan of the workloads loaded, which do not have it.
	c.Load(Snapshot{Workloads: map[string]*persysv1.Workload{}, Nodes: map[string]*persysv1.Node{"n1": {Id: "n1"}},
		AliveNodes: map[string]bool{"n1": true}})
	o, ok = c.DigestOrphans("n1", reportdigest.Of(next))
	orphans("after a reload", o, ok, "c/u-c", "d/u-d")
}
