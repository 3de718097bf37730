package agent

import (
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	persysv1 "github.com/persys-dev/compute/api/persys/v1"
)

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
	d := reportDigest(base)
	if d == 0 {
		t.Fatal("digest of a list is 0, which means none on the wire")
	}
	if e := reportDigest(nil); e == 0 || e == d {
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
			if got := reportDigest(tc.list); (got == d) != tc.equal {
				t.Fatalf("digest %#x, base %#x: equal = %v, want %v", got, d, got == d, tc.equal)
			}
		})
	}

	t.Run("does not reorder the list", func(t *testing.T) {
		list := []*persysv1.WorkloadStatus{status("c", nil), status("a", nil)}
		before := []*persysv1.WorkloadStatus{list[0], list[1]}
		reportDigest(list)
		for i := range list {
			if list[i] != before[i] || !proto.Equal(list[i], before[i]) {
				t.Fatalf("reportDigest changed the list it was given at %d", i)
			}
		}
	})
}

func TestSentListDigestOnly(t *testing.T) {
	t0 := time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)
	for _, tc := range []struct {
		name string
		sent sentList
		d    uint64
		now  time.Time
		want bool
	}{
		{"nothing sent on this registration", sentList{}, 7, t0, false},
		{"same digest", sentList{digest: 7, at: t0}, 7, t0.Add(time.Second), true},
		{"other digest", sentList{digest: 7, at: t0}, 8, t0.Add(time.Second), false},
		{"no digest", sentList{digest: 7, at: t0}, 0, t0.Add(time.Second), false},
		{"just before the full list is due", sentList{digest: 7, at: t0}, 7, t0.Add(fullListEvery - time.Nanosecond), true},
		{"full list due", sentList{digest: 7, at: t0}, 7, t0.Add(fullListEvery), false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := tc.sent.digestOnly(tc.d, tc.now); got != tc.want {
				t.Fatalf("digestOnly(%d) = %v, want %v", tc.d, got, tc.want)
			}
		})
	}
}
