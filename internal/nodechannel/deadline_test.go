package nodechannel

import (
	"testing"
	"time"

	persysv1 "github.com/persys-dev/compute/api/persys/v1"
)

// TestFrameDeadline: the time left a frame carries counts from its
// arrival by the agent's clock and wins over the absolute deadline, which
// is read only from schedulers that send nothing else.
func TestFrameDeadline(t *testing.T) {
	now := time.Date(2026, 12, 7, 12, 0, 0, 0, time.UTC)
	skewed := now.Add(-time.Hour)
	for _, tc := range []struct {
		name   string
		frame  *persysv1.SchedulerFrame
		want   time.Time
		wantOK bool
	}{
		{name: "none", frame: &persysv1.SchedulerFrame{}},
		{name: "time left", frame: &persysv1.SchedulerFrame{TimeoutNanos: int64(5 * time.Second)}, want: now.Add(5 * time.Second), wantOK: true},
		{name: "time left wins over a skewed absolute", frame: &persysv1.SchedulerFrame{TimeoutNanos: int64(5 * time.Second),
			DeadlineUnixNano: skewed.Add(5 * time.Second).UnixNano()}, want: now.Add(5 * time.Second), wantOK: true},
		{name: "absolute only (previous release)", frame: &persysv1.SchedulerFrame{DeadlineUnixNano: skewed.UnixNano()},
			want: skewed, wantOK: true},
		{name: "no time left", frame: &persysv1.SchedulerFrame{TimeoutNanos: 1}, want: now.Add(1), wantOK: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, ok := frameDeadline(tc.frame, now)
			if ok != tc.wantOK || !got.Equal(tc.want) {
				t.Fatalf("frameDeadline = %v, %v; want %v, %v", got, ok, tc.want, tc.wantOK)
			}
		})
	}
	for _, tc := range []struct {
		left time.Duration
		want int64
	}{{5 * time.Second, int64(5 * time.Second)}, {0, 1}, {-time.Second, 1}} {
		if got := timeoutNanos(tc.left); got != tc.want {
			t.Errorf("timeoutNanos(%s) = %d, want %d", tc.left, got, tc.want)
		}
	}
}
