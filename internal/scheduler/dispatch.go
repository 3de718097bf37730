package scheduler

import "sync"

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
	// running counts the goroutines, for wait.
	running sync.WaitGroup
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
	go d.run(node, o, fn)
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
// term's context is cancelled).
func (d *dispatcher) wait() { d.running.Wait() }
