package scheduler

import (
	"slices"
	"sync"
	"time"
)

// runnerIdle is how long a runner that ran out of calls waits for the
// next one before it ends. A goroutine that made an agent call has grown
// its stack to what the call needs; a new one per call grew (copied) it
// again each time, 3 % of the scheduler's CPU at 250,000 placements.
const runnerIdle = 5 * time.Second

// dispatcher runs the applies the workers hand off, so that no worker waits
// for a start: a worker commits the decision, hands the agent call to the
// node's outbox and takes the next workload. Each node runs at most its
// limit (callLimits) of calls at once, in the order handed off, and all nodes together at most
// maxTotal (each running call holds a goroutine and its connection's
// buffers; a million queued starts must not); the rest wait as closures (a
// few hundred bytes each), not as goroutines. The workload stays being
// processed in the queue until its call ends (queue.Done), so nothing else
// is decided about it meanwhile, as when the worker held it.
type dispatcher struct {
	limits   *callLimits
	maxTotal int

	mu    sync.Mutex
	nodes map[string]*outbox
	total int
	// starved lists nodes with calls waiting for a slot of maxTotal (not
	// of their own limit), oldest first.
	starved []string
	// running counts the calls being run, for wait.
	running sync.WaitGroup
	// idle holds the runners waiting for a call, the last parked last.
	idle []chan runnerCall
	// runners counts the runner goroutines started.
	runners int
}

// runnerCall is what startLocked hands a runner: fn, then node's waiting
// calls.
type runnerCall struct {
	node string
	o    *outbox
	fn   func()
}

// outbox is one node's handed-off calls: those waiting, and how many run.
type outbox struct {
	waiting []func()
	running int
	starved bool
}

func newDispatcher(limits *callLimits, maxTotal int) *dispatcher {
	return &dispatcher{limits: limits, maxTotal: max(1, maxTotal), nodes: map[string]*outbox{}}
}

// submit runs fn for node now, or once the node and the dispatcher have a
// free slot, after the node's earlier calls.
func (d *dispatcher) submit(node string, fn func()) {
	d.mu.Lock()
	defer d.mu.Unlock()
	o := d.nodes[node]
	if o == nil {
		o = &outbox{}
		d.nodes[node] = o
	}
	limit := d.limits.of(node)
	if o.running < limit && d.total < d.maxTotal && len(o.waiting) == 0 {
		d.startLocked(node, o, fn)
		return
	}
	o.waiting = append(o.waiting, fn)
	if o.running < limit && !o.starved {
		o.starved = true
		d.starved = append(d.starved, node)
	}
}

func (d *dispatcher) startLocked(node string, o *outbox, fn func()) {
	o.running++
	d.total++
	d.running.Add(1)
	c := runnerCall{node: node, o: o, fn: fn}
	if n := len(d.idle); n > 0 {
		ch := d.idle[n-1]
		d.idle[n-1] = nil
		d.idle = d.idle[:n-1]
		ch <- c // buffered, and only this hand-off sends
		return
	}
	d.runners++
	go d.runner(c)
}

// runner runs c and then each call handed to it while it is idle, until
// none comes for runnerIdle or wait releases it.
func (d *dispatcher) runner(c runnerCall) {
	ch := make(chan runnerCall, 1)
	t := time.NewTimer(runnerIdle)
	defer t.Stop()
	for {
		d.run(c.node, c.o, c.fn)
		d.mu.Lock()
		d.idle = append(d.idle, ch)
		d.mu.Unlock()
		t.Reset(runnerIdle)
		var ok bool
		select {
		case c, ok = <-ch:
			if !ok {
				return // released by wait
			}
			continue
		case <-t.C:
		}
		d.mu.Lock()
		if i := slices.Index(d.idle, ch); i >= 0 {
			d.idle = slices.Delete(d.idle, i, i+1)
			d.mu.Unlock()
			return
		}
		d.mu.Unlock()
		// A call was handed over between the timeout and the lock.
		if c, ok = <-ch; !ok {
			return
		}
	}
}

// run calls fn, then the node's waiting calls one after the other, until
// none waits; its slot then goes to a starved node, if any.
func (d *dispatcher) run(node string, o *outbox, fn func()) {
	defer d.running.Done()
	for fn != nil {
		fn()
		d.mu.Lock()
		fn = o.next()
		if fn == nil {
			o.running--
			d.total--
			if o.running == 0 && len(o.waiting) == 0 {
				delete(d.nodes, node)
			}
			d.feedStarvedLocked()
		}
		d.mu.Unlock()
	}
}

// next takes the outbox's oldest waiting call (nil when none).
func (o *outbox) next() func() {
	if len(o.waiting) == 0 {
		return nil
	}
	fn := o.waiting[0]
	o.waiting[0] = nil
	o.waiting = o.waiting[1:]
	return fn
}

// feedStarvedLocked starts waiting calls of starved nodes while the
// dispatcher has free slots.
func (d *dispatcher) feedStarvedLocked() {
	for d.total < d.maxTotal && len(d.starved) > 0 {
		node := d.starved[0]
		d.starved[0] = ""
		d.starved = d.starved[1:]
		o := d.nodes[node]
		if o == nil {
			continue
		}
		o.starved = false
		limit := d.limits.of(node)
		for o.running < limit && d.total < d.maxTotal {
			fn := o.next()
			if fn == nil {
				break
			}
			d.startLocked(node, o, fn)
		}
		if len(o.waiting) > 0 && o.running < limit {
			o.starved = true
			d.starved = append(d.starved, node)
		}
	}
}

// wait returns once every handed-off call ran (they end quickly once the
// term's context is cancelled), and ends the idle runners.
func (d *dispatcher) wait() {
	d.running.Wait()
	d.mu.Lock()
	defer d.mu.Unlock()
	for _, ch := range d.idle {
		close(ch)
	}
	d.idle = nil
}
