package agent

import (
	"context"
	"sync"
	"time"

	persysv1 "github.com/persys-dev/compute/api/persys/v1"
)

// lister keeps the node's lease independent of how fast the runtimes
// answer. Listing can be slow under load (the Docker engine holds an
// inspect while a container starts or stops); a heartbeat that waited for
// it would miss the lease, the node would turn NotReady and its healthy
// workloads would be rescheduled. So a heartbeat waits for a fresh list
// only for a budget, then sends the last complete one; the slow listing
// goes on and serves the next heartbeat. One listing runs at a time.
type lister struct {
	mu      sync.Mutex
	running *listing
	last    []*persysv1.WorkloadStatus
	hasLast bool
}

type listing struct {
	done chan struct{}
	ws   []*persysv1.WorkloadStatus
	err  error
}

// heartbeatList returns the workloads to report: a fresh list when it comes
// within budget (fresh true), else the last complete one. With no complete
// list yet it waits for the fresh one (or ctx).
func (a *Agent) heartbeatList(ctx context.Context, budget time.Duration) (ws []*persysv1.WorkloadStatus, fresh bool, err error) {
	l := &a.lister
	l.mu.Lock()
	cur := l.running
	if cur == nil {
		cur = &listing{done: make(chan struct{})}
		l.running = cur
		go func() {
			lctx, cancel := context.WithTimeout(context.Background(), rpcTimeout)
			defer cancel()
			cur.ws, cur.err = a.listAll(lctx)
			l.mu.Lock()
			l.running = nil
			if cur.err == nil {
				l.last, l.hasLast = cur.ws, true
			}
			l.mu.Unlock()
			close(cur.done)
		}()
	}
	last, hasLast := l.last, l.hasLast
	l.mu.Unlock()

	timer := time.NewTimer(budget)
	defer timer.Stop()
	select {
	case <-cur.done:
		return cur.ws, true, cur.err
	case <-timer.C:
	case <-ctx.Done():
		return nil, false, ctx.Err()
	}
	if hasLast {
		a.metrics.staleLists.Inc()
		return last, false, nil
	}
	select {
	case <-cur.done:
		return cur.ws, true, cur.err
	case <-ctx.Done():
		return nil, false, ctx.Err()
	}
}

// seed offers a complete list taken outside the lister (the registration's)
// as the last one, so the first heartbeat after a (re)start does not wait
// for a slow runtime: without a last list it would, and miss the lease.
func (l *lister) seed(ws []*persysv1.WorkloadStatus) {
	l.mu.Lock()
	defer l.mu.Unlock()
	// A listing in flight may have started before this list was taken.
	if l.running == nil || !l.hasLast {
		l.last, l.hasLast = ws, true
	}
}
