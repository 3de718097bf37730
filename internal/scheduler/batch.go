package scheduler

import (
	"context"
	"sync"
	"time"

	persysv1 "github.com/persys-dev/compute/api/persys/v1"
	"github.com/persys-dev/compute/internal/failpoint"
	"github.com/persys-dev/compute/internal/store"
)

// batcher group-commits writes: a caller hands its write over and waits for
// its own result. The first caller that finds no commit in flight becomes
// the flusher: it takes every write queued at that moment (up to max) and
// commits them together; writes arriving meanwhile queue, and when the
// commit returns the oldest of them becomes the next flusher. An idle
// cluster pays no delay (a lone write is flushed at once); a busy one pays
// one round trip per batch instead of one per write.
type batcher[W, R any] struct {
	max int
	// commit returns one result per write, in order.
	commit func(ctx context.Context, ws []W) []R
	// timeout bounds one commit: it runs detached from the flusher's
	// context, since it carries other callers' writes too.
	timeout time.Duration

	mu      sync.Mutex
	queue   []*batchCall[W, R]
	leading bool
}

type batchCall[W, R any] struct {
	ctx context.Context
	w   W
	r   R
	err error
	// wake receives one signal: the result is in (done) or this call
	// became the flusher (lead).
	wake chan struct{}
	done bool
	lead bool
}

func newBatcher[W, R any](max int, timeout time.Duration, commit func(ctx context.Context, ws []W) []R) *batcher[W, R] {
	return &batcher[W, R]{max: max, timeout: timeout, commit: commit}
}

// do commits w with whatever else is queued and returns its result. It
// returns ctx's error only when ctx ends before w was taken into a commit.
func (b *batcher[W, R]) do(ctx context.Context, w W) (R, error) {
	c := &batchCall[W, R]{ctx: ctx, w: w, wake: make(chan struct{}, 1)}
	b.mu.Lock()
	b.queue = append(b.queue, c)
	if !b.leading {
		b.leading = true
		c.lead = true
		b.mu.Unlock()
		b.flush(ctx)
		return c.r, c.err
	}
	b.mu.Unlock()
	select {
	case <-c.wake:
	case <-ctx.Done():
		b.mu.Lock()
		if !c.done && !c.lead {
			for i, q := range b.queue {
				if q == c {
					b.queue = append(b.queue[:i:i], b.queue[i+1:]...)
					b.mu.Unlock()
					var zero R
					return zero, ctx.Err()
				}
			}
		}
		b.mu.Unlock()
		// Taken into a commit in flight, or made the flusher: see it
		// through.
		<-c.wake
	}
	b.mu.Lock()
	lead := c.lead && !c.done
	b.mu.Unlock()
	if lead {
		b.flush(ctx)
	}
	return c.r, c.err
}

// flush commits one batch from the head of the queue (the caller's own call
// is its first) and hands the lead to the next queued call, if any.
func (b *batcher[W, R]) flush(ctx context.Context) {
	b.mu.Lock()
	n := min(len(b.queue), b.max)
	batch := b.queue[:n:n]
	b.queue = b.queue[n:]
	b.mu.Unlock()

	// A write whose caller gave up before the commit is not made.
	ws := make([]W, 0, len(batch))
	live := make([]*batchCall[W, R], 0, len(batch))
	for _, c := range batch {
		if c.err = c.ctx.Err(); c.err == nil {
			ws = append(ws, c.w)
			live = append(live, c)
		}
	}
	if len(ws) > 0 {
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), b.timeout)
		rs := b.commit(cctx, ws)
		cancel()
		for i, c := range live {
			c.r = rs[i]
		}
	}

	b.mu.Lock()
	for _, c := range batch {
		c.done = true
	}
	var next *batchCall[W, R]
	if len(b.queue) > 0 {
		next = b.queue[0]
		next.lead = true
	} else {
		b.leading = false
		b.queue = nil
	}
	b.mu.Unlock()
	for _, c := range batch[1:] {
		c.wake <- struct{}{}
	}
	if next != nil {
		next.wake <- struct{}{}
	}
}

// batchMax bounds the writes of one batch; the store splits a batch further
// to fit etcd's transaction limits.
const batchMax = 256

// writeBatches are the scheduler's group commits (field Scheduler.batches),
// made on first use.
type writeBatches struct {
	once      sync.Once
	placement *batcher[store.PlacementWrite, store.WriteResult]
	status    *batcher[store.StatusWrite, store.WriteResult]
	create    *batcher[*persysv1.Workload, store.WriteResult]
}

func (s *Scheduler) writes() *writeBatches {
	b := &s.batches
	b.once.Do(func() {
		b.placement = newBatcher(batchMax, 30*time.Second, func(ctx context.Context, ws []store.PlacementWrite) []store.WriteResult {
			out := s.store.CommitPlacements(ctx, ws)
			failpoint.Inject(failpoint.SchedulerAfterGroupCommit)
			return out
		})
		b.status = newBatcher(batchMax, 30*time.Second, s.store.PutStatusWrites)
		b.create = newBatcher(batchMax, 30*time.Second, s.store.CreateWorkloads)
	})
	return b
}

// commitPlacement is store.CommitPlacementRev through the group commit.
func (s *Scheduler) commitPlacement(ctx context.Context, w store.PlacementWrite) (int64, error) {
	r, err := s.writes().placement.do(ctx, w)
	if err != nil {
		return 0, err
	}
	return r.Rev, r.Err
}

// putStatus is store.PutStatusRev through the group commit; wrev is the
// mod revision of the workload with st's uid as read (0: unknown), which
// spares the store its read of the workload (store.StatusWrite).
func (s *Scheduler) putStatus(ctx context.Context, st *persysv1.WorkloadStatus, wrev int64) (int64, error) {
	r, err := s.writes().status.do(ctx, store.StatusWrite{Status: st, WorkloadRev: wrev})
	if err != nil {
		return 0, err
	}
	return r.Rev, r.Err
}

// createWorkload is store.CreateWorkload through the group commit: a burst
// of submissions pays one etcd round trip per batch.
func (s *Scheduler) createWorkload(ctx context.Context, w *persysv1.Workload) (int64, error) {
	r, err := s.writes().create.do(ctx, w)
	if err != nil {
		return 0, err
	}
	return r.Rev, r.Err
}
