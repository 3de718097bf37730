package watchhub

import (
	"context"
	"fmt"
	"math"
	"strings"
	"sync"
	"time"
)

// Position is a point in a kind's stream of changes: after every change
// up to Revision, or, when Index is not WholeRevision, after the change
// with that index within Revision.
type Position struct {
	Revision int64
	Index    int32
}

// WholeRevision is the Index of a position that covers all of its revision.
const WholeRevision = math.MaxInt32

// before reports whether p comes before q.
func (p Position) before(q Position) bool {
	return p.Revision < q.Revision || p.Revision == q.Revision && p.Index < q.Index
}

func (it *Item) pos() Position { return Position{it.Revision, it.Index} }

// ring keeps the newest changes of one kind. floor is the position of
// the newest change no longer kept (or of the load): every change after
// floor is in the ring.
type ring struct {
	buf      []*Item
	start, n int
	floor    Position
}

func newRing(size int, rev int64) *ring {
	return &ring{buf: make([]*Item, size), floor: Position{rev, WholeRevision}}
}

func (r *ring) push(it *Item) {
	if r.n < len(r.buf) {
		r.buf[(r.start+r.n)%len(r.buf)] = it
		r.n++
		return
	}
	r.floor = r.buf[r.start].pos()
	r.buf[r.start] = it
	r.start = (r.start + 1) % len(r.buf)
}

// after returns the kept changes after p; ErrCompacted when some of them
// are no longer kept.
func (r *ring) after(p Position) ([]*Item, error) {
	if p.before(r.floor) {
		return nil, fmt.Errorf("%w: revision %d is compacted (the oldest this scheduler can resume from is %d); list again",
			ErrCompacted, p.Revision, r.floor.Revision)
	}
	var out []*Item
	for i := 0; i < r.n; i++ {
		it := r.buf[(r.start+i)%len(r.buf)]
		if p.before(it.pos()) {
			out = append(out, it)
		}
	}
	return out, nil
}

// Request says what to watch. Since zero starts with the current list.
type Request struct {
	Kind  Kind
	Since Position
	// Selector keeps workloads whose labels hold every pair.
	Selector map[string]string
	// Workload and Type keep only matching events (Type in any case).
	Workload, Type string
}

// Watcher is one client's watch; read it with Next from one goroutine
// and Close it when done.
type Watcher struct {
	hub     *Hub
	req     Request
	pos     Position
	pending []*Item
	ch      chan *Item
	done    chan struct{}
	once    sync.Once
	err     error
}

// Watch starts a watch once the hub has loaded (or ctx ends), waking a
// dormant hub. A Since older than the hub keeps fails with ErrCompacted.
func (h *Hub) Watch(ctx context.Context, req Request) (*Watcher, error) {
	for {
		h.mu.Lock()
		if h.stopped {
			h.mu.Unlock()
			return nil, fmt.Errorf("%w: the scheduler is not serving watches", ErrStopped)
		}
		if h.st != nil {
			defer h.mu.Unlock()
			return h.watchLocked(req)
		}
		ready := h.wantLocked()
		h.mu.Unlock()
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-ready:
		}
	}
}

func (h *Hub) watchLocked(req Request) (*Watcher, error) {
	w := &Watcher{hub: h, req: req, ch: make(chan *Item, h.cfg.Buffer), done: make(chan struct{})}
	if req.Since.Revision == 0 {
		w.pending = h.listLocked(req)
		w.pos = Position{h.st.rev, WholeRevision}
	} else {
		items, err := h.rings[req.Kind].after(req.Since)
		if err != nil {
			return nil, err
		}
		// A bookmark right after the replay: the client hears at once
		// that it is caught up (dropped by filter when Since is newer).
		w.pending = append(items, &Item{Op: OpBookmark, Kind: req.Kind, Revision: h.st.rev})
		w.pos = req.Since
	}
	h.subs[req.Kind][w] = struct{}{}
	h.lastUsed = time.Now()
	return w, nil
}

// listLocked is the start of a watch without a position: the current
// objects (the newest events for events), then a bookmark.
func (h *Hub) listLocked(req Request) []*Item {
	var list []*Item
	if req.Kind == Events {
		for _, it := range h.st.tail {
			if req.matchEvent(it) {
				list = append(list, it)
			}
		}
		list = list[max(0, len(list)-h.cfg.EventTail):]
		snap := make([]*Item, len(list), len(list)+1)
		for i, it := range list {
			snap[i] = &Item{Op: OpSnapshot, Kind: Events, Revision: h.st.rev, Event: it.Event}
		}
		list = snap
	} else {
		list = h.st.snapshot(req.Kind)
	}
	// Shared snapshots are read-only: the bookmark goes on a copy.
	out := make([]*Item, len(list), len(list)+1)
	copy(out, list)
	return append(out, &Item{Op: OpBookmark, Kind: req.Kind, Revision: h.st.rev})
}

// Next returns the next item for this watcher, skipping what its filter
// drops. It fails with ctx's error, or with the reason the hub ended the
// watch (ErrFellBehind, ErrStopped) once the items already buffered are
// read.
func (w *Watcher) Next(ctx context.Context) (*Item, error) {
	for {
		it, err := w.recv(ctx)
		if err != nil {
			return nil, err
		}
		if out := w.filter(it); out != nil {
			return out, nil
		}
	}
}

func (w *Watcher) recv(ctx context.Context) (*Item, error) {
	if len(w.pending) > 0 {
		it := w.pending[0]
		w.pending[0] = nil
		w.pending = w.pending[1:]
		if len(w.pending) == 0 {
			w.pending = nil // let the list's backing array go
		}
		return it, nil
	}
	select {
	case it := <-w.ch:
		return it, nil
	default:
	}
	select {
	case <-ctx.Done():
		return nil, ctx.Err()
	case it := <-w.ch:
		return it, nil
	case <-w.done:
		select {
		case it := <-w.ch:
			return it, nil
		default:
			return nil, w.err
		}
	}
}

// filter returns what the client gets of it: it, a DELETE for a workload
// that left the selection, or nil.
func (w *Watcher) filter(it *Item) *Item {
	switch it.Op {
	case OpSnapshot:
		if it.Kind == Workloads && !matchLabels(it.Workload.GetWorkload().GetLabels(), w.req.Selector) {
			return nil
		}
		return it
	case OpBookmark:
		if it.Revision < w.pos.Revision {
			return nil
		}
		if it.Revision > w.pos.Revision {
			w.pos = Position{it.Revision, WholeRevision}
		}
		return it
	}
	if !w.pos.before(it.pos()) {
		return nil
	}
	w.pos = it.pos()
	switch it.Kind {
	case Workloads:
		return w.filterWorkload(it)
	case Events:
		if !w.req.matchEvent(it) {
			return nil
		}
	}
	return it
}

func (w *Watcher) filterWorkload(it *Item) *Item {
	if len(w.req.Selector) == 0 {
		return it
	}
	now := matchLabels(it.Workload.GetWorkload().GetLabels(), w.req.Selector)
	switch {
	case now:
		return it
	case it.Op == OpPut && it.existed && matchLabels(it.PrevLabels, w.req.Selector):
		gone := *it
		gone.Op = OpDelete
		return &gone
	}
	return nil
}

func (r Request) matchEvent(it *Item) bool {
	ev := it.Event
	return (r.Workload == "" || ev.GetWorkload() == r.Workload) && (r.Type == "" || strings.EqualFold(ev.GetType(), r.Type))
}

func matchLabels(labels, selector map[string]string) bool {
	for k, v := range selector {
		if labels[k] != v {
			return false
		}
	}
	return true
}

// Close ends the watch; safe to call more than once.
func (w *Watcher) Close() {
	w.hub.mu.Lock()
	delete(w.hub.subs[w.req.Kind], w)
	w.hub.lastUsed = time.Now()
	w.hub.mu.Unlock()
	w.end(ErrStopped)
}

// end records why the watch ended (the first reason wins).
func (w *Watcher) end(err error) {
	w.once.Do(func() {
		w.err = err
		close(w.done)
	})
}
