package agent

import (
	"slices"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	persysv1 "github.com/persys-dev/compute/api/persys/v1"
)

func digestOf(ws []*persysv1.WorkloadStatus) uint64 { return digestWhole(ws).digest }

func TestReportDigest(t *testing.T) {
	status := func(name string, edit func(*persysv1.WorkloadStatus)) *persysv1.WorkloadStatus {
		st := &persysv1.WorkloadStatus{Name: name, Uid: "u-" + name, Revision: 3, NodeId: "n1",
			State: persysv1.ActualState_ACTUAL_STATE_RUNNING, RuntimeId: "r-" + name,
			Details: map[string]string{"a": "1", "b": "2", "c": "3"}}
		if edit != nil {
			edit(st)
		}
		return st
	}
	base := []*persysv1.WorkloadStatus{status("a", nil), status("b", nil), status("c", nil)}
	d := digestOf(base)
	if d == 0 {
		t.Fatal("digest of a list is 0, which means none on the wire")
	}
	if e := digestOf(nil); e == 0 || e == d {
		t.Fatalf("digest of the empty list = %#x (list: %#x), want non-zero and different", e, d)
	}

	for _, tc := range []struct {
		name  string
		list  []*persysv1.WorkloadStatus
		equal bool
	}{
		{"same list", []*persysv1.WorkloadStatus{status("a", nil), status("b", nil), status("c", nil)}, true},
		{"other order", []*persysv1.WorkloadStatus{status("c", nil), status("a", nil), status("b", nil)}, true},
		{"state changed", []*persysv1.WorkloadStatus{status("a", nil), status("b", func(st *persysv1.WorkloadStatus) {
			st.State = persysv1.ActualState_ACTUAL_STATE_FAILED
		}), status("c", nil)}, false},
		{"message changed", []*persysv1.WorkloadStatus{status("a", nil), status("b", nil), status("c", func(st *persysv1.WorkloadStatus) {
			st.Message = "exited"
		})}, false},
		{"restart counted", []*persysv1.WorkloadStatus{status("a", func(st *persysv1.WorkloadStatus) {
			st.RestartCount = 1
		}), status("b", nil), status("c", nil)}, false},
		{"detail changed", []*persysv1.WorkloadStatus{status("a", nil), status("b", func(st *persysv1.WorkloadStatus) {
			st.Details["b"] = "3"
		}), status("c", nil)}, false},
		{"one missing", []*persysv1.WorkloadStatus{status("a", nil), status("c", nil)}, false},
		{"one more", []*persysv1.WorkloadStatus{status("a", nil), status("b", nil), status("c", nil), status("d", nil)}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := digestOf(tc.list); (got == d) != tc.equal {
				t.Fatalf("digest %#x, base %#x: equal = %v, want %v", got, d, got == d, tc.equal)
			}
		})
	}

	t.Run("does not reorder the list", func(t *testing.T) {
		list := []*persysv1.WorkloadStatus{status("c", nil), status("a", nil)}
		before := []*persysv1.WorkloadStatus{list[0], list[1]}
		digestOf(list)
		for i := range list {
			if list[i] != before[i] || !proto.Equal(list[i], before[i]) {
				t.Fatalf("digestWhole changed the list it was given at %d", i)
			}
		}
	})
}

func TestSentListDelta(t *testing.T) {
	st := func(name string, state persysv1.ActualState) *persysv1.WorkloadStatus {
		return &persysv1.WorkloadStatus{Name: name, Uid: "u-" + name, State: state}
	}
	const running, failed = persysv1.ActualState_ACTUAL_STATE_RUNNING, persysv1.ActualState_ACTUAL_STATE_FAILED
	first := []*persysv1.WorkloadStatus{st("a", running), st("b", running), st("c", running)}
	sent := acked(nil, digestWhole(first), first, nil, time.Time{})
	for _, tc := range []struct {
		name        string
		now         []*persysv1.WorkloadStatus
		wantChanged []string
		wantRemoved []string
	}{
		{"unchanged", []*persysv1.WorkloadStatus{st("c", running), st("a", running), st("b", running)}, nil, nil},
		{"one failed", []*persysv1.WorkloadStatus{st("a", running), st("b", failed), st("c", running)}, []string{"b"}, nil},
		{"one added", []*persysv1.WorkloadStatus{st("a", running), st("b", running), st("c", running), st("d", running)}, []string{"d"}, nil},
		{"two removed", []*persysv1.WorkloadStatus{st("b", running)}, nil, []string{"a", "c"}},
		{"all gone", nil, nil, []string{"a", "b", "c"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := sent.delta(tc.now)
			var names []string
			for _, st := range c.changed {
				names = append(names, st.GetName())
			}
			if !slices.Equal(names, tc.wantChanged) || !slices.Equal(c.removed, tc.wantRemoved) {
				t.Fatalf("delta = changed %v removed %v, want changed %v removed %v", names, c.removed, tc.wantChanged, tc.wantRemoved)
			}
			// The digest made from the change alone is the whole list's.
			if whole := digestOf(tc.now); c.digest != whole {
				t.Fatalf("digest from the delta %#x, of the whole list %#x", c.digest, whole)
			}
		})
	}
	if (sentList{}).base(nil) {
		t.Fatal("an empty sentList is a base for a delta")
	}

	// Acknowledged, a delta becomes the base of the next one.
	next := []*persysv1.WorkloadStatus{st("a", running), st("b", failed), st("d", running)}
	c := sent.delta(next)
	sent.apply(c, nil, time.Time{})
	if again := sent.delta(next); len(again.changed)+len(again.removed) != 0 || again.digest != digestOf(next) || sent.digest != again.digest {
		t.Fatalf("after apply: delta of the same list changed %d removed %v digest %#x, want none and %#x",
			len(again.changed), again.removed, again.digest, digestOf(next))
	}
	after := []*persysv1.WorkloadStatus{st("a", failed), st("d", running)}
	if c := sent.delta(after); c.digest != digestOf(after) {
		t.Fatalf("second delta's digest %#x, whole list's %#x", c.digest, digestOf(after))
	}

	// Two statuses of one name: no digest from the delta, the list goes whole.
	if c := sent.delta([]*persysv1.WorkloadStatus{st("a", running), st("a", failed)}); c.digest != 0 {
		t.Fatalf("a list with a name twice got digest %#x from a delta, want 0 (send it whole)", c.digest)
	}
}
