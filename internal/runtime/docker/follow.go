package docker

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"time"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/moby/moby/api/types/events"
	"github.com/moby/moby/client"
	"google.golang.org/protobuf/proto"

	persysv1 "github.com/persys-dev/compute/api/persys/v1"
	"github.com/persys-dev/compute/internal/runtime"
)

// followActions are the container events that can change what statusOf
// reports, so each one costs an inspect of the container it names. Not
// followed: rename (statusOf reads labels, not the name) and health_status
// (statusOf does not read the engine's health; the agent runs its own
// checks).
var followActions = []events.Action{
	events.ActionCreate, events.ActionStart, events.ActionDie, events.ActionStop,
	events.ActionKill, events.ActionOOM, events.ActionDestroy, events.ActionPause,
	events.ActionUnPause,
}

// replayMargin is how far before its start the follower's first event
// stream replays.
const replayMargin = time.Second

// follower is the state of the one goroutine that feeds the status cache
// from the engine's event stream while at least one Watch is active, and
// hands the names of changed workloads to the watchers. lifeMu serializes starting
// and stopping it; mu guards the subscribers and the stream hook.
type follower struct {
	lifeMu sync.Mutex
	cancel context.CancelFunc // nil: not running
	done   chan struct{}

	mu   sync.Mutex
	subs map[*subscriber]struct{}
	cut  context.CancelFunc // ends the current event stream (tests)

	// onGap, when set (tests only, before the first Watch), runs after an
	// event stream broke and before it is opened again.
	onGap func()
}

// subscriber collects the names one Watch has yet to send: a set, so the
// follower never blocks on a slow watcher and a name is never lost.
type subscriber struct {
	mu      sync.Mutex
	pending []string
	signal  chan struct{}
}

func (s *subscriber) add(name string) {
	s.mu.Lock()
	if !slices.Contains(s.pending, name) {
		s.pending = append(s.pending, name)
	}
	s.mu.Unlock()
	select {
	case s.signal <- struct{}{}:
	default:
	}
}

func (s *subscriber) take() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := s.pending
	s.pending = nil
	return out
}

// Watch sends the workload name whenever one of this runtime's containers
// starts, stops, dies, is killed, runs out of memory, pauses, resumes or
// is removed, including changes made behind the runtime's back.
// The cache List answers from is updated before the name is sent. Changes
// after Watch is called are not lost to a slow receiver or a broken event
// stream: each reconnection replays from the last event seen and re-lists
// the containers, and every workload whose status changed meanwhile is
// sent; a name may be sent more than once. The channel is closed when ctx
// ends.
//
// While at least one Watch is active the runtime follows the engine's
// event stream (one stream for all watchers) and List answers from its
// cache; the agent watches for as long as it runs.
func (r *Runtime) Watch(ctx context.Context) (<-chan string, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("docker watch: %w", err)
	}
	sub := &subscriber{signal: make(chan struct{}, 1)}
	r.subscribe(sub)
	out := make(chan string, 64)
	go func() {
		defer close(out)
		defer r.unsubscribe(sub)
		for {
			select {
			case <-ctx.Done():
				return
			case <-sub.signal:
			}
			for _, name := range sub.take() {
				select {
				case out <- name:
				case <-ctx.Done():
					return
				}
			}
		}
	}()
	return out, nil
}

func (r *Runtime) subscribe(sub *subscriber) {
	f := &r.fol
	f.lifeMu.Lock()
	defer f.lifeMu.Unlock()
	f.mu.Lock()
	if f.subs == nil {
		f.subs = map[*subscriber]struct{}{}
	}
	f.subs[sub] = struct{}{}
	f.mu.Unlock()
	if f.cancel == nil {
		ctx, cancel := context.WithCancel(context.Background())
		f.cancel, f.done = cancel, make(chan struct{})
		go r.followLoop(ctx, f.done)
	}
}

func (r *Runtime) unsubscribe(sub *subscriber) {
	f := &r.fol
	f.lifeMu.Lock()
	defer f.lifeMu.Unlock()
	f.mu.Lock()
	delete(f.subs, sub)
	last := len(f.subs) == 0
	f.mu.Unlock()
	if last {
		r.stopFollowing()
	}
}

// stopFollowing ends the follower and waits for it; the cache is no longer
// fed, so it stops answering. The caller holds lifeMu.
func (r *Runtime) stopFollowing() {
	f := &r.fol
	if f.cancel == nil {
		return
	}
	f.cancel()
	<-f.done
	f.cancel, f.done = nil, nil
	r.cache.setLive(false)
}

// notify hands names to every watcher.
func (r *Runtime) notify(names ...string) {
	f := &r.fol
	f.mu.Lock()
	defer f.mu.Unlock()
	for sub := range f.subs {
		for _, n := range names {
			sub.add(n)
		}
	}
}

func (r *Runtime) followLoop(ctx context.Context, done chan<- struct{}) {
	defer close(done)
	const (
		minBackoff = 100 * time.Millisecond
		maxBackoff = 5 * time.Second
	)
	backoff := minBackoff
	filter := r.managedFilter("", "")
	filter.Add("type", string(events.ContainerEventType))
	for _, a := range followActions {
		filter.Add("event", string(a))
	}
	// Replay from a little before now: the first re-list and the stream
	// overlap rather than leave a hole between them.
	since := time.Now().Add(-replayMargin)
	// What the watchers last learned: the cache when the stream broke
	// after a complete re-list. nil: nothing yet.
	var before map[string]*persysv1.WorkloadStatus
	for {
		relisted, err := r.followOnce(ctx, filter, &since, before, func() { backoff = minBackoff })
		// What the stream missed is unknown until the next re-list.
		r.cache.setLive(false)
		if relisted {
			before = r.cache.snapshot(r.cluster.Owns)
		}
		if ctx.Err() != nil {
			return
		}
		r.log.Warn("engine event stream broke; status cache stale until the re-list", "error", err, "backoff", backoff.String())
		t := time.NewTimer(backoff)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
		backoff = min(backoff*2, maxBackoff)
		if r.fol.onGap != nil {
			r.fol.onGap()
		}
	}
}

// followOnce opens the event stream, re-lists every container into the
// cache (telling the watchers of every workload that differs from before,
// when before is not nil), then applies events until the stream fails or
// ctx ends. since advances with every event; healthy is called for each.
// relisted reports that the re-list completed.
func (r *Runtime) followOnce(ctx context.Context, filter client.Filters, since *time.Time, before map[string]*persysv1.WorkloadStatus, healthy func()) (relisted bool, err error) {
	streamCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	r.fol.mu.Lock()
	r.fol.cut = cancel
	r.fol.mu.Unlock()
	ev := r.cli.Events(streamCtx, client.EventsListOptions{Since: sinceParam(*since), Filters: filter})
	if err := r.relist(streamCtx); err != nil {
		return false, fmt.Errorf("re-list: %w", err)
	}
	if before != nil {
		r.notify(changedNames(before, r.cache.snapshot(r.cluster.Owns))...)
	}
	q := eventQueue{byID: map[string]*queuedEvent{}}
	take := func(m events.Message) {
		healthy()
		if m.TimeNano > 0 {
			*since = time.Unix(0, m.TimeNano)
		}
		// Every cluster's containers of this node go into the cache (see
		// statusCache.list); only owned ones are told to the watchers, and
		// not for a create (a start or nothing follows; the creator knows).
		name := m.Actor.Attributes[runtime.LabelWorkload]
		if name != "" {
			tell := m.Action != events.ActionCreate && r.cluster.Owns(m.Actor.Attributes[runtime.LabelCluster])
			q.add(m.Actor.ID, name, m.Action == events.ActionDestroy, tell)
		}
	}
	for {
		if len(q.order) == 0 {
			select {
			case <-streamCtx.Done():
				return true, streamCtx.Err()
			case err := <-ev.Err:
				return true, err
			case m := <-ev.Messages:
				take(m)
			}
			continue
		}
		// Read whatever arrived before the next inspect.
		select {
		case <-streamCtx.Done():
			return true, streamCtx.Err()
		case err := <-ev.Err:
			return true, err
		case m := <-ev.Messages:
			take(m)
		default:
			id, e := q.pop()
			if err := r.applyEvent(streamCtx, id, e.destroyed); err != nil {
				return true, err
			}
			if e.tell {
				r.notify(e.name)
			}
		}
	}
}

// eventQueue holds, in arrival order and once per container, the
// containers with events not yet applied. Reading the stream thus never
// waits for an inspect: the engine drops events for a subscriber that
// stays behind.
type eventQueue struct {
	order []string
	byID  map[string]*queuedEvent
}

type queuedEvent struct {
	name      string
	destroyed bool
	tell      bool // send the name to the watchers
}

func (q *eventQueue) add(id, name string, destroyed, tell bool) {
	if e, ok := q.byID[id]; ok {
		e.destroyed = e.destroyed || destroyed
		e.tell = e.tell || tell
		return
	}
	q.byID[id] = &queuedEvent{name: name, destroyed: destroyed, tell: tell}
	q.order = append(q.order, id)
}

func (q *eventQueue) pop() (string, *queuedEvent) {
	id := q.order[0]
	q.order = q.order[1:]
	e := q.byID[id]
	delete(q.byID, id)
	return id, e
}

// applyEvent brings the cache up to date with a container that had
// events: gone after destroy, else as the engine reports it now.
func (r *Runtime) applyEvent(ctx context.Context, id string, destroyed bool) error {
	if destroyed {
		r.cache.gone(id)
		return nil
	}
	_, err := r.inspectStatus(ctx, id)
	if err != nil && !cerrdefs.IsNotFound(err) {
		return err
	}
	return nil
}

// relist lists and inspects every container of this runtime on this node
// (of every cluster: see statusCache.list) into the cache and makes it
// live.
func (r *Runtime) relist(ctx context.Context) error {
	t := r.cache.begin()
	defer r.cache.end(t)
	all, err := r.listNodeContainers(ctx, "", "")
	if err != nil {
		return err
	}
	seen := make(map[string]bool, len(all))
	for _, c := range all {
		seen[c.ID] = true
		if _, err := r.inspectStatus(ctx, c.ID); err != nil && !cerrdefs.IsNotFound(err) {
			return err
		}
	}
	r.cache.replace(t, seen)
	return nil
}

// changedNames lists the workloads whose newest status differs.
func changedNames(before, after map[string]*persysv1.WorkloadStatus) []string {
	var out []string
	for name, st := range after {
		if !proto.Equal(st, before[name]) {
			out = append(out, name)
		}
	}
	for name := range before {
		if _, ok := after[name]; !ok {
			out = append(out, name)
		}
	}
	return out
}

// sinceParam renders t the way the events endpoint accepts: seconds and
// nanoseconds since the epoch.
func sinceParam(t time.Time) string {
	return fmt.Sprintf("%d.%09d", t.Unix(), t.Nanosecond())
}
