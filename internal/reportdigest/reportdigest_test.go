package reportdigest

import (
	"slices"
	"testing"

	persysv1 "github.com/persys-dev/compute/api/persys/v1"
)

func status(name string, state persysv1.ActualState) *persysv1.WorkloadStatus {
	return &persysv1.WorkloadStatus{Name: name, Uid: name + "-uid", State: state, Revision: 1}
}

func TestOfIgnoresOrderAndSeesEveryChange(t *testing.T) {
	running := persysv1.ActualState_ACTUAL_STATE_RUNNING
	list := []*persysv1.WorkloadStatus{status("a", running), status("b", running), status("c", running)}
	d := Of(list)
	if d == 0 || d == 1 {
		t.Fatalf("Of = %d, want a real digest", d)
	}
	reversed := slices.Clone(list)
	slices.Reverse(reversed)
	if got := Of(reversed); got != d {
		t.Fatalf("Of depends on order: %d then %d", d, got)
	}
	failed := slices.Clone(list)
	failed[1] = status("b", persysv1.ActualState_ACTUAL_STATE_FAILED)
	for name, other := range map[string][]*persysv1.WorkloadStatus{
		"a state changed": failed,
		"one removed":     list[:2],
		"one added":       append(slices.Clone(list), status("d", running)),
		"one twice":       append(slices.Clone(list), status("a", running)),
	} {
		if Of(other) == d {
			t.Errorf("%s: same digest as the list before", name)
		}
	}
	if Of(nil) != 1 {
		t.Errorf("Of(nil) = %d, want 1 (the empty list's digest, never 0)", Of(nil))
	}
}

// TestDigestUpdatesFromChangesAlone: taking out what went or changed and
// adding what is new gives the digest of the new list, as the scheduler
// and the agent do with a heartbeat's delta.
func TestDigestUpdatesFromChangesAlone(t *testing.T) {
	running := persysv1.ActualState_ACTUAL_STATE_RUNNING
	before := []*persysv1.WorkloadStatus{status("a", running), status("b", running), status("c", running)}
	var d Digest
	for _, st := range before {
		h, ok := EntryOf(st)
		if !ok {
			t.Fatal("EntryOf failed")
		}
		d.Add(h)
	}
	if d.Sum() != Of(before) {
		t.Fatalf("sum of entries %d, Of %d", d.Sum(), Of(before))
	}
	bOld, _ := EntryOf(before[1])
	cOld, _ := EntryOf(before[2])
	bNew := status("b", persysv1.ActualState_ACTUAL_STATE_FAILED)
	h, _ := EntryOf(bNew)
	d.Remove(bOld)
	d.Add(h)
	d.Remove(cOld)
	after := []*persysv1.WorkloadStatus{before[0], bNew}
	if d.Sum() != Of(after) {
		t.Fatalf("updated digest %d, Of of the new list %d", d.Sum(), Of(after))
	}
}
