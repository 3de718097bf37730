package scheduler

// The cache: an informer-style copy of the store's workloads, nodes and
// assignments, fed by the etcd watch (watch.go) and by the scheduler's
// own writes, with the revisions they were read at and tombstones of
// deleted workloads. It alone holds the lock that guards them. Its
// primitive changes (put, drop, set status or assignment, bury, notify)
// and its reads for the API and the services are methods here; callers
// that combine several of them under one lock hold c.mu themselves and
// call the *Locked methods.

import (
	"sort"
	"sync"
	"time"

	persysv1 "github.com/persys-dev/compute/api/persys/v1"
)

type cache struct {
	// mu guards every field below; only the scheduler's loop files take
	// it, and no other package can.
	mu        sync.Mutex
	workloads map[string]*workloadEntry
	// counts counts workloads by observed state (statecount.go); change
	// workloads and their statuses through its methods.
	counts stateCounts
	// byNode indexes workloads by the node their assignment names (see
	// statecount.go): a node's loss or first report costs its own
	// workloads, not a scan of the whole cache.
	byNode   map[string]map[string]struct{}
	nodes    map[string]*nodeEntry
	watchers map[string]map[chan struct{}]struct{}
	loaded   bool
	// tombstones remember, per deleted workload name, the last revision of
	// the deleted workload, so that a late write-back of our own (or a
	// lagging watch event) never brings it back into the cache.
	tombstones map[string]tombstone
	// snap caches the placement view; nil means rebuild.
	snap *placementSnapshot
	// maxAttempts is Config.MaxAttempts: a workload that gave up
	// releases its node (setStatusLocked).
	maxAttempts int
}

func newCache(maxAttempts int) cache {
	return cache{
		workloads:   map[string]*workloadEntry{},
		counts:      stateCounts{},
		byNode:      map[string]map[string]struct{}{},
		nodes:       map[string]*nodeEntry{},
		watchers:    map[string]map[chan struct{}]struct{}{},
		tombstones:  map[string]tombstone{},
		maxAttempts: maxAttempts,
	}
}

type tombstone struct {
	rev int64
	at  time.Time
}

// buryLocked records that name was deleted at or after rev. Callers hold mu.
func (c *cache) buryLocked(name string, rev int64) {
	if t, ok := c.tombstones[name]; !ok || rev > t.rev {
		c.tombstones[name] = tombstone{rev: rev, at: time.Now()}
	}
}

// buriedLocked reports whether a workload write at rev is older than its
// deletion. Callers hold mu.
func (c *cache) buriedLocked(name string, rev int64) bool {
	t, ok := c.tombstones[name]
	return ok && rev <= t.rev
}

// pruneTombstones forgets deletions older than a minute: by then the watch
// has long delivered them and no request still holds an older revision.
func (c *cache) pruneTombstones() {
	c.mu.Lock()
	defer c.mu.Unlock()
	for name, t := range c.tombstones {
		if time.Since(t.at) > time.Minute {
			delete(c.tombstones, name)
		}
	}
}

// notify wakes every WatchWorkload stream of name. Callers hold mu.
func (c *cache) notifyLocked(name string) {
	for ch := range c.watchers[name] {
		select {
		case ch <- struct{}{}:
		default:
		}
	}
}

func (c *cache) subscribe(name string) (chan struct{}, func()) {
	ch := make(chan struct{}, 1)
	c.mu.Lock()
	if c.watchers[name] == nil {
		c.watchers[name] = map[chan struct{}]struct{}{}
	}
	c.watchers[name][ch] = struct{}{}
	c.mu.Unlock()
	return ch, func() {
		c.mu.Lock()
		delete(c.watchers[name], ch)
		if len(c.watchers[name]) == 0 {
			delete(c.watchers, name)
		}
		c.mu.Unlock()
	}
}

// withWorkload runs fn on the entry of name under the lock and reports
// whether there was one; fn must not call back into the cache.
func (c *cache) withWorkload(name string, fn func(e *workloadEntry)) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	e := c.workloads[name]
	if e != nil {
		fn(e)
	}
	return e != nil
}

// eachWorkload runs fn on every entry under the lock; fn must not call
// back into the cache.
func (c *cache) eachWorkload(fn func(name string, e *workloadEntry)) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for name, e := range c.workloads {
		fn(name, e)
	}
}

// stats counts workloads by observed state, and nodes ready and not.
func (c *cache) stats() (byState map[persysv1.ActualState]int, ready, notReady int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, ne := range c.nodes {
		if ne.alive {
			ready++
		} else {
			notReady++
		}
	}
	return c.stateCountsLocked(), ready, notReady
}

// names lists every cached workload.
func (c *cache) names() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	names := make([]string, 0, len(c.workloads))
	for name := range c.workloads {
		names = append(names, name)
	}
	return names
}

// workloadNames lists, sorted, the workloads whose labels match selector.
func (c *cache) workloadNames(selector map[string]string) []string {
	c.mu.Lock()
	names := make([]string, 0, len(c.workloads))
	for name, e := range c.workloads {
		if matchLabels(e.w.GetLabels(), selector) {
			names = append(names, name)
		}
	}
	c.mu.Unlock()
	sort.Strings(names)
	return names
}

// nodeAlive reports whether node id is registered and alive.
func (c *cache) nodeAlive(id string) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	ne := c.nodes[id]
	return ne != nil && ne.alive
}

// aliveNodeLeases maps every alive node to its lease id.
func (c *cache) aliveNodeLeases() map[string]int64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	leases := map[string]int64{}
	for id, ne := range c.nodes {
		if ne.node != nil && ne.alive {
			leases[id] = ne.node.GetLeaseId()
		}
	}
	return leases
}
