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
