package scheduler

import (
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/persys-dev/compute/internal/testutil/eventually"
)

func TestCoalescerRunsOnceForABurst(t *testing.T) {
	var ran atomic.Int64
	c := &coalescer{delay: 50 * time.Millisecond, fn: func() { ran.Add(1) }}
	const kicks = 1000
	for range kicks {
		c.kick()
	}
	eventually.Eventually(t, "the burst's run", 10*time.Second, eventually.True(func() bool { return ran.Load() >= 1 }))
	if n := c.runs.Load(); n >= kicks {
		t.Fatalf("%d kicks ran fn %d times: nothing was coalesced", kicks, n)
	}
}

func TestCoalescerRunsAgainForAKickDuringARun(t *testing.T) {
	started := make(chan struct{}, 2)
	release := make(chan struct{})
	var ran atomic.Int64
	c := &coalescer{fn: func() {
		started <- struct{}{}
		<-release
		ran.Add(1)
	}}
	c.kick()
	<-started
	// fn has started and may have read the state already: this change
	// must get a run of its own.
	c.kick()
	close(release)
	eventually.Eventually(t, "a second run", 10*time.Second, eventually.True(func() bool { return ran.Load() == 2 }))
}

// TestCoalescerNeverOverlapsAndSpacesRuns: kicks that keep coming while
// fn runs never start a second fn at once, and each run after the first
// waits spacing times the last run's length, so fn (a pass under the
// cache's lock) cannot hold the lock all the time.
func TestCoalescerNeverOverlapsAndSpacesRuns(t *testing.T) {
	const took = 20 * time.Millisecond
	var inFlight, overlaps atomic.Int64
	var mu sync.Mutex
	var starts, ends []time.Time
	c := &coalescer{spacing: 3, fn: func() {
		if inFlight.Add(1) > 1 {
			overlaps.Add(1)
		}
		mu.Lock()
		starts = append(starts, time.Now())
		mu.Unlock()
		time.Sleep(took)
		mu.Lock()
		ends = append(ends, time.Now())
		mu.Unlock()
		inFlight.Add(-1)
	}}
	stop := time.Now().Add(400 * time.Millisecond)
	for time.Now().Before(stop) {
		c.kick()
		time.Sleep(time.Millisecond)
	}
	eventually.Eventually(t, "the last run's end", 10*time.Second, eventually.True(func() bool {
		mu.Lock()
		defer mu.Unlock()
		return inFlight.Load() == 0 && len(starts) == len(ends) && len(ends) >= 2
	}))
	if n := overlaps.Load(); n != 0 {
		t.Fatalf("%d runs started while another ran", n)
	}
	mu.Lock()
	defer mu.Unlock()
	for i := 1; i < len(starts); i++ {
		ran := ends[i-1].Sub(starts[i-1])
		if gap := starts[i].Sub(ends[i-1]); gap < 3*ran {
			t.Fatalf("run %d started %v after run %d ended, which took %v: want at least 3x that", i, gap, i-1, ran)
		}
	}
}
