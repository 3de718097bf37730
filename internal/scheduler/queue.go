package scheduler

import (
	"sync"
	"time"
)

// queue is a de-duplicating work queue keyed by workload name, in the manner
// of a level-triggered controller: a key added while it is being processed
// is processed once more afterwards, never concurrently, and a key added
// many times before a worker takes it is processed once.
//
// Keys added with AddLow (the periodic resync) wait in a second lane that
// workers take from only when the first is empty: a resync of 100,000
// workloads must not hold up the few that a lost node needs placed now.
type queue struct {
	mu     sync.Mutex
	cond   *sync.Cond
	order  []string
	queued map[string]bool
	// low holds AddLow keys in order; lowQueued those still waiting there
	// (a key moved to order by Add leaves a stale entry behind in low).
	low        []string
	lowQueued  map[string]bool
	processing map[string]bool
	dirty      map[string]bool
	timers     map[string]*delayed
	closed     bool
}

// delayed is a pending AddAfter: its timer and when it fires.
type delayed struct {
	timer *time.Timer
	at    time.Time
}

func newQueue() *queue {
	q := &queue{
		queued:     map[string]bool{},
		lowQueued:  map[string]bool{},
		processing: map[string]bool{},
		dirty:      map[string]bool{},
		timers:     map[string]*delayed{},
	}
	q.cond = sync.NewCond(&q.mu)
	return q
}

// Add queues key now.
func (q *queue) Add(key string) {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.addLocked(key)
}

func (q *queue) addLocked(key string) {
	if q.closed {
		return
	}
	if d, ok := q.timers[key]; ok {
		d.timer.Stop()
		delete(q.timers, key)
	}
	if q.processing[key] {
		q.dirty[key] = true
		return
	}
	if q.queued[key] {
		return
	}
	delete(q.lowQueued, key)
	q.queued[key] = true
	q.order = append(q.order, key)
	q.cond.Signal()
}

// AddLow queues key in the low-priority lane, unless it is queued, being
// processed or due from an AddAfter already.
func (q *queue) AddLow(key string) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.closed || q.queued[key] || q.processing[key] || q.lowQueued[key] {
		return
	}
	if _, ok := q.timers[key]; ok {
		return
	}
	q.lowQueued[key] = true
	q.low = append(q.low, key)
	q.cond.Signal()
}

// AddAfter queues key after d, unless it is queued earlier by Add. Of two
// pending AddAfter calls for one key the sooner deadline wins.
func (q *queue) AddAfter(key string, d time.Duration) {
	if d <= 0 {
		q.Add(key)
		return
	}
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.closed || q.queued[key] {
		return
	}
	at := time.Now().Add(d)
	if prev, ok := q.timers[key]; ok {
		if !at.Before(prev.at) {
			return
		}
		prev.timer.Stop()
	}
	entry := &delayed{at: at}
	entry.timer = time.AfterFunc(d, func() {
		q.mu.Lock()
		defer q.mu.Unlock()
		// A timer stopped too late to prevent this call was replaced or
		// superseded meanwhile: only the current entry may add the key.
		if q.timers[key] != entry {
			return
		}
		delete(q.timers, key)
		q.addLocked(key)
	})
	q.timers[key] = entry
}

// Get blocks until a key is ready or the queue is closed (ok false).
func (q *queue) Get() (key string, ok bool) {
	q.mu.Lock()
	defer q.mu.Unlock()
	for {
		for len(q.order) == 0 && len(q.low) == 0 && !q.closed {
			q.cond.Wait()
		}
		if q.closed {
			return "", false
		}
		if len(q.order) > 0 {
			key = q.order[0]
			q.order[0] = ""
			q.order = q.order[1:]
			delete(q.queued, key)
			q.processing[key] = true
			return key, true
		}
		key = q.low[0]
		q.low[0] = ""
		q.low = q.low[1:]
		if len(q.low) == 0 {
			q.low = nil
		}
		if !q.lowQueued[key] {
			continue // moved to the first lane meanwhile
		}
		delete(q.lowQueued, key)
		q.processing[key] = true
		return key, true
	}
}

// Done marks key processed; it is queued again if it was added meanwhile.
func (q *queue) Done(key string) {
	q.mu.Lock()
	defer q.mu.Unlock()
	delete(q.processing, key)
	if q.dirty[key] {
		delete(q.dirty, key)
		q.addLocked(key)
	}
}

// Len is the number of keys waiting in the first lane (for the
// queue-depth metric: work that is due, not the resync's).
func (q *queue) Len() int {
	q.mu.Lock()
	defer q.mu.Unlock()
	return len(q.order)
}

// reset reopens a closed queue, empty, for a new leadership term.
func (q *queue) reset() {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.closed = false
	q.order = nil
	q.queued = map[string]bool{}
	q.low = nil
	q.lowQueued = map[string]bool{}
	q.processing = map[string]bool{}
	q.dirty = map[string]bool{}
}

// Close wakes every waiting Get and stops all timers.
func (q *queue) Close() {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.closed = true
	for k, d := range q.timers {
		d.timer.Stop()
		delete(q.timers, k)
	}
	q.cond.Broadcast()
}
