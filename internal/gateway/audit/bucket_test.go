package audit

import (
	"testing"
	"time"
)

func TestAnonymousAuditBucket(t *testing.T) {
	b := newBucket(2, 3)
	now := time.Unix(5000, 0)
	var got []bool
	var reports []int
	step := func(advance time.Duration) {
		now = now.Add(advance)
		ok, report := b.allow(now)
		got = append(got, ok)
		reports = append(reports, report)
	}
	for range 5 {
		step(0) // burst of 3, then two suppressed
	}
	step(500 * time.Millisecond) // one token back
	step(0)                      // none
	step(11 * time.Second)       // refilled to the burst
	want := []bool{true, true, true, false, false, true, false, true}
	wantReports := []int{0, 0, 0, 1, 0, 0, 0, 0}
	for i := range want {
		if got[i] != want[i] || reports[i] != wantReports[i] {
			t.Fatalf("step %d: allowed %v report %d, want %v %d (all: %v %v)", i, got[i], reports[i], want[i], wantReports[i], got, reports)
		}
	}
	// The two suppressed since the last report are reported, with this
	// one, at the first suppression after the gap.
	for range 2 {
		step(0)
	}
	if ok, report := b.allow(now); ok || report != 3 {
		t.Fatalf("after the gap: allowed %v report %d, want a report of 3", ok, report)
	}
}
