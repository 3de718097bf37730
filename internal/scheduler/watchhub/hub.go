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
//
// The copy costs a decoded record, status, assignment and view per
// workload (about 180 MB at 100,000 workloads), so the hub holds it only
// while someone watches: Run loads it and opens the etcd watch when the
// first watcher arrives, and drops both once no watcher has been open for
// Config.Linger. A position from before a drop is older than the reloaded
// rings and fails with ErrCompacted, as any position the hub no longer
// keeps: the client lists again.
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
	// Linger is how long the state is kept with no watcher before it is
	// dropped (default DefaultLinger): a client that lists and then
	// watches, or reconnects, finds it loaded.
	Linger time.Duration
}

// DefaultLinger is Config.Linger's default.
const DefaultLinger = 2 * time.Minute

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
	if c.Linger <= 0 {
		c.Linger = DefaultLinger
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
}

// Hub is the fan-out. Make it with New and run it with Run.
type Hub struct {
	cfg Config
	// wake tells Run that wanted turned true.
	wake chan struct{}

	mu sync.Mutex
	// ready is closed when the state is loaded or the hub stops; a new
	// one is made when the state is dropped.
	ready chan struct{}
	// wanted: a caller asked for the state since it was last dropped.
	wanted bool
	// st and rings are nil while the hub is dormant.
	st      *state
	rings   [numKinds]*ring
	subs    [numKinds]map[*Watcher]struct{}
	stopped bool
	// lastUsed is when a watcher last came or went, or the state was
	// loaded: the state is dropped Linger after it with no watcher.
	lastUsed time.Time
}

// errIdle ends follow when the state was dropped for want of watchers.
var errIdle = errors.New("no watchers")

// New returns a hub over cfg.Source; call Run.
func New(cfg Config) *Hub {
	cfg.defaults()
	h := &Hub{cfg: cfg, wake: make(chan struct{}, 1), ready: make(chan struct{})}
	for k := range h.subs {
		h.subs[k] = map[*Watcher]struct{}{}
	}
	return h
}

// Run serves watches until ctx ends: while someone watches it loads the
// state, follows etcd and feeds the watchers; when the etcd watch fails
// it ends every watcher (ErrStopped) and starts over from a new load;
// once no watcher has been open for Config.Linger it drops the state and
// waits for the next one.
func (h *Hub) Run(ctx context.Context) error {
	h.start()
	defer h.stop()
	for h.awaitWanted(ctx) {
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
		switch {
		case ctx.Err() != nil:
		case errors.Is(err, errIdle):
			h.cfg.Logger.Info("watch hub: no watchers; state dropped until the next watch", "linger", h.cfg.Linger)
		default:
			h.cfg.Logger.Warn("watch hub: etcd watch ended; reloading", "err", err)
		}
	}
	return nil
}

// start readies the hub for a Run after an earlier one stopped it.
func (h *Hub) start() {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.stopped {
		h.stopped = false
		h.ready = make(chan struct{})
	}
}

// awaitWanted waits until a caller wants the state; false when ctx ends.
func (h *Hub) awaitWanted(ctx context.Context) bool {
	for {
		h.mu.Lock()
		wanted := h.wanted
		h.mu.Unlock()
		if wanted {
			return ctx.Err() == nil
		}
		select {
		case <-ctx.Done():
			return false
		case <-h.wake:
		}
	}
}

// wantLocked asks Run for the state and returns the channel closed when
// it is loaded (or the hub stops).
func (h *Hub) wantLocked() <-chan struct{} {
	if !h.wanted {
		h.wanted = true
		h.lastUsed = time.Now()
		select {
		case h.wake <- struct{}{}:
		default:
		}
	}
	return h.ready
}

// follow applies etcd's batches and sends bookmarks until the watch ends
// or the state is dropped (errIdle).
func (h *Hub) follow(ctx context.Context, rev int64) error {
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	ch := h.cfg.Source.WatchAll(wctx, rev)
	drain := func() {
		cancel()
		for range ch {
		}
	}
	tick := time.NewTicker(h.cfg.Bookmark)
	defer tick.Stop()
	idle := time.NewTimer(h.cfg.Linger)
	defer idle.Stop()
	for {
		select {
		case <-ctx.Done():
			drain()
			return ctx.Err()
		case <-idle.C:
			if wait := h.dropIfIdle(); wait > 0 {
				idle.Reset(wait)
				continue
			}
			drain()
			return errIdle
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
	h.lastUsed = time.Now()
	closeOnce(h.ready)
}

// dropIfIdle drops the state when no watcher has been open for Linger;
// otherwise it returns how long to wait before asking again.
func (h *Hub) dropIfIdle() time.Duration {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.watchersLocked() > 0 {
		return h.cfg.Linger
	}
	if wait := h.cfg.Linger - time.Since(h.lastUsed); wait > 0 {
		return wait
	}
	h.dropLocked()
	return 0
}

// dropLocked frees the state; the next watch loads it again.
func (h *Hub) dropLocked() {
	h.st = nil
	h.rings = [numKinds]*ring{}
	h.wanted = false
	select {
	case <-h.ready:
		h.ready = make(chan struct{})
	default: // callers already wait on it for the next load
	}
}

func (h *Hub) stop() {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.stopped = true
	h.endAllLocked(fmt.Errorf("%w: the scheduler stopped serving watches", ErrStopped))
	h.dropLocked()
	closeOnce(h.ready) // callers waiting for a load get ErrStopped
}

func closeOnce(ch chan struct{}) {
	select {
	case <-ch:
	default:
		close(ch)
	}
}

func (h *Hub) endAllLocked(err error) {
	for k := range h.subs {
		for w := range h.subs[k] {
			w.end(err)
		}
		h.subs[k] = map[*Watcher]struct{}{}
	}
	h.lastUsed = time.Now()
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
			h.lastUsed = time.Now()
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

// Revision is the newest revision the hub has applied (0 while it holds
// no state: before the first watch, or dormant).
func (h *Hub) Revision() int64 {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.st == nil {
		return 0
	}
	return h.st.rev
}

// Active reports whether the hub holds its state and follows etcd (it
// is dormant before the first watch and Linger after the last).
func (h *Hub) Active() bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.st != nil
}

// Watchers counts open watchers of every kind.
func (h *Hub) Watchers() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.watchersLocked()
}

func (h *Hub) watchersLocked() int {
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
