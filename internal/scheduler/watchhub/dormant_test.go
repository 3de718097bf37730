package watchhub_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/persys-dev/compute/internal/scheduler/watchhub"
	"github.com/persys-dev/compute/internal/store"
	"github.com/persys-dev/compute/internal/store/storetest"

	testeventually "github.com/persys-dev/compute/internal/testutil/eventually"
)

// countingSource is the real store, with a count of the hub's loads and
// the contexts of its etcd watches.
type countingSource struct {
	*store.Store
	// gate, when set, holds every load until it closes.
	gate    chan struct{}
	mu      sync.Mutex
	loads   int
	watches []context.Context
}

func (c *countingSource) LoadWatchState(ctx context.Context, eventKeys int) (*store.WatchSnapshot, error) {
	c.mu.Lock()
	c.loads++
	c.mu.Unlock()
	if c.gate != nil {
		select {
		case <-c.gate:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	return c.Store.LoadWatchState(ctx, eventKeys)
}

func (c *countingSource) WatchAll(ctx context.Context, fromRevision int64) <-chan store.Batch {
	c.mu.Lock()
	c.watches = append(c.watches, ctx)
	c.mu.Unlock()
	return c.Store.WatchAll(ctx, fromRevision)
}

// counts returns the loads and the etcd watches still open.
func (c *countingSource) counts() (loads, open int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, ctx := range c.watches {
		if ctx.Err() == nil {
			open++
		}
	}
	return c.loads, open
}

func startCountingHub(t *testing.T, cfg watchhub.Config) (*watchhub.Hub, *countingSource) {
	t.Helper()
	st, _ := storetest.New(t)
	src := &countingSource{Store: st}
	cfg.Source = src
	h := watchhub.New(cfg)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = h.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	return h, src
}

// eventually waits for cond, failing after a generous bound.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	testeventually.Eventually(t, what, 30*time.Second, testeventually.True(cond))
}

// list reads a fresh watch's snapshot up to its bookmark.
func list(t *testing.T, h *watchhub.Hub) (names []string, rev int64) {
	t.Helper()
	w, err := h.Watch(context.Background(), watchhub.Request{Kind: watchhub.Workloads})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	for {
		it := next(t, w)
		if it.Op == watchhub.OpBookmark {
			return names, it.Revision
		}
		if it.Op != watchhub.OpSnapshot {
			t.Fatalf("list: %s before the bookmark, want snapshots only", describe(it))
		}
		names = append(names, it.Workload.GetWorkload().GetName())
	}
}

func TestDormantUntilFirstWatch(t *testing.T) {
	h, src := startCountingHub(t, watchhub.Config{Linger: time.Hour})
	ctx := context.Background()
	rev, err := src.CreateWorkload(ctx, workload("a", nil))
	if err != nil {
		t.Fatal(err)
	}
	if loads, open := src.counts(); h.Active() || h.Revision() != 0 || loads != 0 || open != 0 {
		t.Fatalf("before any watch: active %v, revision %d, %d loads, %d etcd watches; want a dormant hub",
			h.Active(), h.Revision(), loads, open)
	}
	names, at := list(t, h)
	if len(names) != 1 || names[0] != "a" || at < rev {
		t.Fatalf("first watch listed %v at revision %d, want [a] at %d or later", names, at, rev)
	}
	// The etcd watch opens right after the load that served the list.
	eventually(t, "one etcd watch open", func() bool { _, open := src.counts(); return open == 1 })
	if loads, _ := src.counts(); !h.Active() || loads != 1 {
		t.Fatalf("after the first watch: active %v, %d loads; want active after 1 load", h.Active(), loads)
	}
}

func TestDropAfterLingerAndWakeAgain(t *testing.T) {
	h, src := startCountingHub(t, watchhub.Config{Linger: 20 * time.Millisecond})
	ctx := context.Background()
	if _, err := src.CreateWorkload(ctx, workload("a", nil)); err != nil {
		t.Fatal(err)
	}
	_, before := list(t, h)
	eventually(t, "the state and the etcd watch are dropped with no watcher", func() bool {
		_, open := src.counts()
		return !h.Active() && open == 0
	})
	if loads, open := src.counts(); loads != 1 || open != 0 || h.Revision() != 0 {
		t.Fatalf("dropped: %d loads, %d etcd watches, revision %d; want 1 load, no watch, revision 0", loads, open, h.Revision())
	}

	// Changes while dormant show in the next list.
	rev, err := src.CreateWorkload(ctx, workload("b", nil))
	if err != nil {
		t.Fatal(err)
	}
	names, at := list(t, h)
	if fmt.Sprint(names) != "[a b]" || at < rev {
		t.Fatalf("after waking: listed %v at revision %d, want [a b] at %d or later", names, at, rev)
	}
	if loads, _ := src.counts(); loads != 2 {
		t.Fatalf("%d loads, want a second one on waking", loads)
	}

	// A position from before the drop: list again, as for any position
	// the hub no longer keeps.
	_, err = h.Watch(ctx, watchhub.Request{Kind: watchhub.Workloads, Since: watchhub.Position{Revision: before, Index: 0}})
	if !errors.Is(err, watchhub.ErrCompacted) {
		t.Fatalf("resume from before the drop: %v, want ErrCompacted", err)
	}
}

func TestOpenWatcherKeepsState(t *testing.T) {
	h, src := startCountingHub(t, watchhub.Config{Linger: 10 * time.Millisecond})
	ctx := context.Background()
	w, err := h.Watch(ctx, watchhub.Request{Kind: watchhub.Workloads})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	for i := range 5 {
		time.Sleep(20 * time.Millisecond) // two lingers each round
		if _, err := src.CreateWorkload(ctx, workload(fmt.Sprintf("w%d", i), nil)); err != nil {
			t.Fatal(err)
		}
		if it := nextChange(t, w); describe(it) != fmt.Sprintf("PUT w%d", i) {
			t.Fatalf("got %s, want PUT w%d", describe(it), i)
		}
	}
	if loads, open := src.counts(); !h.Active() || loads != 1 || open != 1 {
		t.Fatalf("with a watcher open: active %v, %d loads, %d etcd watches; want one of each", h.Active(), loads, open)
	}
}

// TestWatchAcrossDrops races watches against drops: every list, whether
// it woke the hub, caught it dropping or found it loaded, is complete.
func TestWatchAcrossDrops(t *testing.T) {
	h, src := startCountingHub(t, watchhub.Config{Linger: time.Millisecond})
	ctx := context.Background()
	var created []string
	var revs []int64
	for i := range 20 {
		name := fmt.Sprintf("w%02d", i)
		rev, err := src.CreateWorkload(ctx, workload(name, nil))
		if err != nil {
			t.Fatal(err)
		}
		created, revs = append(created, name), append(revs, rev)
		// A loaded hub may not have seen the newest write yet: the list
		// holds exactly what was written up to its own revision.
		names, at := list(t, h)
		var want []string
		for j, r := range revs {
			if r <= at {
				want = append(want, created[j])
			}
		}
		if fmt.Sprint(names) != fmt.Sprint(want) {
			t.Fatalf("round %d: listed %v at revision %d, want %v", i, names, at, want)
		}
		time.Sleep(time.Duration(i%4) * time.Millisecond) // land before, during and after drops
	}
	if loads, _ := src.counts(); loads < 2 {
		t.Logf("the hub loaded %d times (drops raced the watches)", loads)
	}
}

// TestStopWhileWaking: a watch waiting for the state to load ends with
// ErrStopped when the hub stops before the load, and so does a new one
// until Run starts again.
func TestStopWhileWaking(t *testing.T) {
	st, _ := storetest.New(t)
	src := &countingSource{Store: st, gate: make(chan struct{})}
	h := watchhub.New(watchhub.Config{Source: src})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = h.Run(ctx) }()

	errc := make(chan error, 1)
	go func() {
		_, err := h.Watch(context.Background(), watchhub.Request{Kind: watchhub.Workloads})
		errc <- err
	}()
	eventually(t, "the watch starts a load", func() bool { loads, _ := src.counts(); return loads == 1 })
	cancel()
	<-done
	if err := <-errc; !errors.Is(err, watchhub.ErrStopped) {
		t.Fatalf("waiting watch ended with %v, want ErrStopped", err)
	}
	if _, err := h.Watch(context.Background(), watchhub.Request{Kind: watchhub.Workloads}); !errors.Is(err, watchhub.ErrStopped) {
		t.Fatalf("watch of a stopped hub: %v, want ErrStopped", err)
	}

	// Run again (a new leadership term): watches are served again.
	close(src.gate)
	ctx, cancel = context.WithCancel(context.Background())
	done = make(chan struct{})
	go func() { defer close(done); _ = h.Run(ctx) }()
	defer func() { cancel(); <-done }()
	if _, err := st.CreateWorkload(context.Background(), workload("a", nil)); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the new Run serves watches", func() bool {
		w, err := h.Watch(context.Background(), watchhub.Request{Kind: watchhub.Nodes})
		if err == nil {
			w.Close()
		}
		return err == nil
	})
	if names, _ := list(t, h); fmt.Sprint(names) != "[a]" {
		t.Fatalf("after a new Run: listed %v, want [a]", names)
	}
}
