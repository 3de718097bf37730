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

// TestCoalescerNeverOverlapsAndSpacesRuns: a kick during every run (fn
// kicks itself, as each pass's registrations asked for the next) never
// starts a second fn at once, and each run after the first waits spacing
// times the last run's length, so fn (a pass under the cache's lock)
// cannot hold the lock all the time.
func TestCoalescerNeverOverlapsAndSpacesRuns(t *testing.T) {
	const took, runs = 20 * time.Millisecond, 6
	var inFlight, overlaps atomic.Int64
	var mu sync.Mutex
	var starts, ends []time.Time
	var c *coalescer
	c = &coalescer{spacing: 3, fn: func() {
		if inFlight.Add(1) > 1 {
			overlaps.Add(1)
		}
		mu.Lock()
		starts = append(starts, time.Now())
		again := len(starts) < runs
		mu.Unlock()
		if again {
			c.kick() // arrives while fn runs: asks for one more run
		}
		time.Sleep(took) // the pass's work
		mu.Lock()
		ends = append(ends, time.Now())
		mu.Unlock()
		inFlight.Add(-1)
	}}
	c.kick()
	eventually.Eventually(t, "every run's end", 10*time.Second, eventually.True(func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(ends) == runs && inFlight.Load() == 0
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
