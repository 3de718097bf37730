package scheduler

import "sync"

// dispatcher runs the applies the workers hand off, so that no worker waits
// for a start: a worker commits the decision, hands the agent call to the
// node's outbox and takes the next workload. Each node runs at most perNode
// of them at once, in the order handed off; the rest wait as closures (a
// few hundred bytes each), not as goroutines. The workload stays being
// processed in the queue until its call ends (queue.Done), so nothing else
// is decided about it meanwhile, as when the worker held it.
type dispatcher struct {
	perNode int
	mu      sync.Mutex
	nodes   map[string]*outbox
	// running counts the goroutines of every outbox, for wait.
	running sync.WaitGroup
}

// outbox is one node's handed-off calls: those waiting, and how many run.
type outbox struct {
	waiting []func()
	running int
}

func newDispatcher(perNode int) *dispatcher {
	return &dispatcher{perNode: max(1, perNode), nodes: map[string]*outbox{}}
}

// submit runs fn for node now, or after the node's earlier calls when it
// has perNode running.
func (d *dispatcher) submit(node string, fn func()) {
	d.mu.Lock()
	o := d.nodes[node]
	if o == nil {
		o = &outbox{}
		d.nodes[node] = o
	}
	if o.running >= d.perNode {
		o.waiting = append(o.waiting, fn)
		d.mu.Unlock()
		return
	}
	o.running++
	d.running.Add(1)
	d.mu.Unlock()
	go d.run(node, o, fn)
}

// run calls fn, then the node's waiting calls one after the other, until
// none waits.
func (d *dispatcher) run(node string, o *outbox, fn func()) {
	defer d.running.Done()
	for fn != nil {
		fn()
		d.mu.Lock()
		if len(o.waiting) > 0 {
			fn = o.waiting[0]
			o.waiting[0] = nil
			o.waiting = o.waiting[1:]
		} else {
			fn = nil
			o.running--
			if o.running == 0 {
				delete(d.nodes, node)
			}
		}
		d.mu.Unlock()
	}
}

// wait returns once every handed-off call ran (they end quickly once the
// term's context is cancelled).
func (d *dispatcher) wait() { d.running.Wait() }
