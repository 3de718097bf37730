package scheduler

import (
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
type coalescer struct {
	delay time.Duration
	fn    func()
	due   atomic.Bool
	runs  atomic.Int64
}

func (c *coalescer) kick() {
	if !c.due.CompareAndSwap(false, true) {
		return // a run is due and has not started: it sees this change
	}
	go func() {
		time.Sleep(c.delay)
		// Cleared before fn reads anything, so a kick from here on
		// starts another run.
		c.due.Store(false)
		c.runs.Add(1)
		c.fn()
	}()
}
