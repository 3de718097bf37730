// Package watchhub owns the scheduler's resumable watches: one etcd watch
// (store.WatchAll) feeds a materialized copy of what clients can watch
// (workload views, nodes, services, recent events) and, per kind, a
// bounded ring of the latest changes, each stamped with its etcd revision
// and its index within that revision. A client watch starts either from
// the current list or from a position it saw before; positions older than
// the ring fail with ErrCompacted. Each watcher has a bounded buffer that
// the hub fills without ever blocking; a watcher whose buffer is full is
// cut off with ErrFellBehind.
//
// One goroutine (Run) owns the etcd watch and the dispatch; callers run
// Run while the scheduler serves, and read their Watcher from their own
// goroutine (the gRPC stream's). There is no goroutine per key or per
// watcher inside the hub.
package watchhub

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	persysv1 "github.com/persys-dev/compute/api/persys/v1"
	"github.com/persys-dev/compute/internal/store"
)

// Errors a watch ends with; callers map them to gRPC codes.
var (
	// ErrCompacted: the position asked for is older than what the hub
	// keeps; the client must list again.
	ErrCompacted = errors.New("revision is compacted")
	// ErrFellBehind: the watcher did not read fast enough.
	ErrFellBehind = errors.New("watch fell behind")
	// ErrStopped: the hub stopped or restarted (leadership lost, etcd
	// watch lost); the client may resume from its last position.
	ErrStopped = errors.New("watch hub stopped")
)

// Kind is what a watch follows.
type Kind int

// Kinds.
const (
	Workloads Kind = iota
	Nodes
	Services
	Events
	numKinds
)

func (k Kind) String() string {
	return [...]string{"workloads", "nodes", "services", "events"}[k]
}

// Op is what an Item says.
type Op int

// Ops, as the wire's WatchEventType.
const (
	OpSnapshot Op = iota + 1
	OpPut
	OpDelete
	OpBookmark
)

// Item is one change, one object of a snapshot, or a bookmark. Items are
// shared by every watcher and never modified once published.
type Item struct {
	Op       Op
	Revision int64
	Index    int32
	Kind     Kind
	Workload *persysv1.WorkloadView
	Node     *persysv1.Node
	Service  *persysv1.ServiceView
	Event    *persysv1.Event
	// PrevLabels are the workload's labels before a PUT, so that a
	// selector watch sees a workload leave its selection as a DELETE.
	PrevLabels map[string]string
	// prevMatched is set for PUTs of workloads that existed before.
	existed bool
}

// Source is the store as the hub uses it.
type Source interface {
	LoadWatchState(ctx context.Context, eventKeys int) (*store.WatchSnapshot, error)
	WatchAll(ctx context.Context, fromRevision int64) <-chan store.Batch
}

// Config sizes the hub. Zero values take the defaults.
type Config struct {
	Source Source
	Logger *slog.Logger
	// RingSize is how many changes per kind a client can resume across
	// (default 8192).
	RingSize int
	// Buffer is each watcher's buffer, in items (default 1024).
	Buffer int
	// Bookmark is how often watchers get a bookmark (default 5s).
	Bookmark time.Duration
	// EventTail is how many events a new events watch starts with
	// (default 100); EventKeys how many event keys the hub loads for it
	// (default 64).
	EventTail int
	EventKeys int
}

func (c *Config) defaults() {
	if c.RingSize <= 0 {
		c.RingSize = 8192
	}
	if c.Buffer <= 0 {
		c.Buffer = 1024
	}
	if c.Bookmark <= 0 {
		c.Bookmark = 5 * time.Second
	}
	if c.EventTail <= 0 {
		c.EventTail = 100
	}
	if c.EventKeys <= 0 {
		c.EventKeys = 64
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
}

// Hub is the fan-out. Make it with New and run it with Run.
type Hub struct {
	cfg Config

	mu sync.Mutex
	// ready is closed when the first state is loaded; readyCh is
	// replaced on every restart.
	ready   chan struct{}
	loaded  bool
	st      *state
	rings   [numKinds]*ring
	subs    [numKinds]map[*Watcher]struct{}
	stopped bool
}

// New returns a hub over cfg.Source; call Run.
func New(cfg Config) *Hub {
	cfg.defaults()
	h := &Hub{cfg: cfg, ready: make(chan struct{})}
	for k := range h.subs {
		h.subs[k] = map[*Watcher]struct{}{}
	}
	return h
}

// Run loads the state, follows etcd and feeds the watchers until ctx
// ends; when the etcd watch fails it ends every watcher (ErrStopped) and
// starts over from a new load.
func (h *Hub) Run(ctx context.Context) error {
	defer h.stop()
	for ctx.Err() == nil {
		ws, err := h.cfg.Source.LoadWatchState(ctx, h.cfg.EventKeys)
		if err != nil {
			h.cfg.Logger.Warn("watch hub: load", "err", err)
			if !sleep(ctx, time.Second) {
				return nil
			}
			continue
		}
		h.reset(ws)
		err = h.follow(ctx, ws.Revision)
		if ctx.Err() == nil {
			h.cfg.Logger.Warn("watch hub: etcd watch ended; reloading", "err", err)
		}
	}
	return nil
}

// follow applies etcd's batches and sends bookmarks until the watch ends.
func (h *Hub) follow(ctx context.Context, rev int64) error {
	ch := h.cfg.Source.WatchAll(ctx, rev)
	tick := time.NewTicker(h.cfg.Bookmark)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			for range ch {
			}
			return ctx.Err()
		case <-tick.C:
			h.bookmark()
		case b, ok := <-ch:
			if !ok {
				return errors.New("watch channel closed")
			}
			if b.Err != nil {
				for range ch {
				}
				return b.Err
			}
			h.apply(b)
		}
	}
}

// reset installs a freshly loaded state: watchers of the previous one
// end (their positions may be resumable on the new rings, or not).
func (h *Hub) reset(ws *store.WatchSnapshot) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.endAllLocked(fmt.Errorf("%w: state reloaded at revision %d", ErrStopped, ws.Revision))
	h.st = newState(ws, h.cfg.EventTail)
	for k := range h.rings {
		h.rings[k] = newRing(h.cfg.RingSize, ws.Revision)
	}
	h.stopped = false
	if !h.loaded {
		h.loaded = true
		close(h.ready)
	}
}

func (h *Hub) stop() {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.stopped = true
	h.endAllLocked(fmt.Errorf("%w: the scheduler stopped serving watches", ErrStopped))
}

func (h *Hub) endAllLocked(err error) {
	for k := range h.subs {
		for w := range h.subs[k] {
			w.end(err)
		}
		h.subs[k] = map[*Watcher]struct{}{}
	}
}

// apply turns one revision's changes into items and hands them out.
func (h *Hub) apply(b store.Batch) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if b.Revision <= h.st.rev {
		return
	}
	h.st.rev = b.Revision
	items := h.st.apply(b)
	for _, it := range items {
		h.rings[it.Kind].push(it)
		h.publishLocked(it)
	}
}

// publishLocked gives it to every watcher of its kind without blocking;
// a watcher with a full buffer is cut off.
func (h *Hub) publishLocked(it *Item) {
	for w := range h.subs[it.Kind] {
		select {
		case w.ch <- it:
		default:
			delete(h.subs[it.Kind], w)
			w.end(fmt.Errorf("%w: watch fell %d events behind at revision %d; resume from your last revision or list again",
				ErrFellBehind, cap(w.ch), it.Revision))
		}
	}
}

// bookmark tells every watcher the hub's revision; a full buffer skips
// it (the watcher is behind anyway).
func (h *Hub) bookmark() {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.st == nil {
		return
	}
	for k := range h.subs {
		it := &Item{Op: OpBookmark, Revision: h.st.rev, Kind: Kind(k)}
		for w := range h.subs[k] {
			select {
			case w.ch <- it:
			default:
			}
		}
	}
}

// Revision is the newest revision the hub has applied (0 before Run
// loaded).
func (h *Hub) Revision() int64 {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.st == nil {
		return 0
	}
	return h.st.rev
}

// Watchers counts open watchers of every kind.
func (h *Hub) Watchers() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	n := 0
	for k := range h.subs {
		n += len(h.subs[k])
	}
	return n
}

func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}
