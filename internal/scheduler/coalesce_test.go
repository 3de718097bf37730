package scheduler

import (
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
