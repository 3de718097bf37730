package scheduler

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"
)

// gatedCommit records each batch it commits and holds the first one until
// release is closed, so that later callers queue behind it.
type gatedCommit struct {
	release chan struct{}
	mu      sync.Mutex
	batches [][]int
}

func (g *gatedCommit) commit(_ context.Context, ws []int) []string {
	g.mu.Lock()
	first := len(g.batches) == 0
	g.batches = append(g.batches, append([]int(nil), ws...))
	g.mu.Unlock()
	if first {
		<-g.release
	}
	out := make([]string, len(ws))
	for i, w := range ws {
		out[i] = fmt.Sprintf("r%d", w)
	}
	return out
}

func queued[W, R any](b *batcher[W, R]) int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return len(b.queue)
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.After(10 * time.Second)
	tick := time.NewTicker(time.Millisecond)
	defer tick.Stop()
	for !cond() {
		select {
		case <-deadline:
			t.Fatalf("timed out waiting for %s", what)
		case <-tick.C:
		}
	}
}

func TestBatcherGroupsQueuedWrites(t *testing.T) {
	g := &gatedCommit{release: make(chan struct{})}
	b := newBatcher(4, time.Minute, g.commit)
	ctx := context.Background()

	results := make([]string, 10)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { defer wg.Done(); results[0], _ = b.do(ctx, 0) }()
	waitFor(t, "the first commit", func() bool { g.mu.Lock(); defer g.mu.Unlock(); return len(g.batches) == 1 })
	for i := 1; i < 10; i++ {
		wg.Add(1)
		go func() { defer wg.Done(); results[i], _ = b.do(ctx, i) }()
	}
	waitFor(t, "nine queued writes", func() bool { return queued(b) == 9 })
	close(g.release)
	wg.Wait()

	for i, r := range results {
		if want := fmt.Sprintf("r%d", i); r != want {
			t.Errorf("caller %d got %q, want %q", i, r, want)
		}
	}
	// One lone write, then the nine queued ones in batches of at most 4.
	sizes := []int{}
	seen := map[int]bool{}
	for _, batch := range g.batches {
		sizes = append(sizes, len(batch))
		for _, w := range batch {
			if seen[w] {
				t.Errorf("write %d committed twice", w)
			}
			seen[w] = true
		}
	}
	if fmt.Sprint(sizes) != "[1 4 4 1]" {
		t.Errorf("batch sizes %v, want [1 4 4 1]", sizes)
	}
	if queued(b) != 0 || b.leading {
		t.Errorf("batcher not idle: %d queued, leading %v", queued(b), b.leading)
	}
}

func TestBatcherCancelledWaiterLeavesTheQueue(t *testing.T) {
	g := &gatedCommit{release: make(chan struct{})}
	b := newBatcher(16, time.Minute, g.commit)

	done := make(chan string)
	go func() { r, _ := b.do(context.Background(), 1); done <- r }()
	waitFor(t, "the first commit", func() bool { g.mu.Lock(); defer g.mu.Unlock(); return len(g.batches) == 1 })

	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error)
	go func() { _, err := b.do(ctx, 2); errc <- err }()
	go func() { r, _ := b.do(context.Background(), 3); done <- r }()
	waitFor(t, "two queued writes", func() bool { return queued(b) == 2 })
	cancel()
	if err := <-errc; !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled waiter: %v", err)
	}
	close(g.release)
	got := map[string]bool{<-done: true, <-done: true}
	if !got["r1"] || !got["r3"] {
		t.Errorf("results %v, want r1 and r3", got)
	}
	for _, batch := range g.batches {
		for _, w := range batch {
			if w == 2 {
				t.Errorf("cancelled write committed in %v", g.batches)
			}
		}
	}
}

func TestBatcherIdleWriteIsFlushedAtOnce(t *testing.T) {
	calls := 0
	b := newBatcher(8, time.Minute, func(_ context.Context, ws []string) []error {
		calls++
		return make([]error, len(ws))
	})
	for i := range 3 {
		if err, _ := b.do(context.Background(), fmt.Sprint(i)); err != nil {
			t.Fatalf("write %d: %v", i, err)
		}
	}
	if calls != 3 {
		t.Errorf("%d commits for 3 sequential writes, want 3", calls)
	}
}

func TestBatcherSkipsWritesOfCallersThatGaveUp(t *testing.T) {
	var committed []int
	b := newBatcher(8, time.Minute, func(_ context.Context, ws []int) []error {
		committed = append(committed, ws...)
		return make([]error, len(ws))
	})
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := b.do(ctx, 1); !errors.Is(err, context.Canceled) {
		t.Fatalf("write of a cancelled caller: %v", err)
	}
	if _, err := b.do(context.Background(), 2); err != nil {
		t.Fatalf("next write: %v", err)
	}
	if fmt.Sprint(committed) != "[2]" {
		t.Errorf("committed %v, want [2]", committed)
	}
}
