package scheduler

import (
	"sync"
	"sync/atomic"
	"time"
)

// coalescer runs fn once for all the kicks that arrive while a run is
// due: fn starts delay after the first of them, and a kick that arrives
// once fn has started asks for one more run, so no change is missed.
// queuePending uses it: each of its passes walks every cached workload
// under the cache's lock, and a pass per trigger (a burst of node
// registrations after a failover, of deletes) held that lock long enough
// to starve heartbeats, whose late handling declared more nodes lost.
//
// Runs never overlap, and the next run waits spacing times as long as the
// last one took (at least delay): with a million workloads a pass takes
// tens of milliseconds, and back-to-back passes, each asked for by the
// registrations the previous starvation caused, held the lock all the
// time (heartbeats 0/s, every node lost, at 200,000 of 500,000 placed).
type coalescer struct {
	delay time.Duration
	// spacing bounds the share of time fn runs to 1/(spacing+1) while
	// kicks keep coming (0: only delay spaces runs).
	spacing int
	fn      func()
	runs    atomic.Int64

	mu      sync.Mutex
	due     bool // a run is scheduled and has not started
	running bool
	again   bool // a kick arrived while fn ran
	last    time.Duration
}

func (c *coalescer) kick() {
	c.mu.Lock()
	defer c.mu.Unlock()
	switch {
	case c.due:
		return // a run is due and has not started: it sees this change
	case c.running:
		c.again = true // fn may have read the state already
		return
	}
	c.due = true
	go c.run(c.waitLocked())
}

// waitLocked is how long the next run waits.
func (c *coalescer) waitLocked() time.Duration {
	return max(c.delay, time.Duration(c.spacing)*c.last)
}

func (c *coalescer) run(wait time.Duration) {
	for {
		time.Sleep(wait)
		c.mu.Lock()
		// Cleared before fn reads anything, so a kick from here on asks
		// for another run.
		c.due, c.running = false, true
		c.mu.Unlock()
		start := time.Now()
		c.runs.Add(1)
		c.fn()
		c.mu.Lock()
		c.running, c.last = false, time.Since(start)
		if !c.again {
			c.mu.Unlock()
			return
		}
		c.again, c.due = false, true
		wait = c.waitLocked()
		c.mu.Unlock()
	}
}
