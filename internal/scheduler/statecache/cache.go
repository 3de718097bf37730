// Package statecache is the scheduler's informer-style copy of the store:
// workloads with their statuses and assignments, nodes with what they last
// reported, the etcd revisions each was read at, tombstones of deleted
// workloads, the in-memory retry state of each workload's current
// revision, and the placement snapshot with the placements held in it
// before they commit. It alone owns the lock that guards them.
//
// Callers never hold that lock: every method is one whole operation (apply
// a watch event, record a node's report, choose and hold a node, record a
// commit, read a view for the API), and what must happen atomically
// happens inside one method. It does no I/O: the scheduler writes etcd and
// calls agents, then tells the cache what it wrote, with the revision.
package statecache

import (
	"sync"
	"sync/atomic"
	"time"

	persysv1 "github.com/persys-dev/compute/api/persys/v1"
	"github.com/persys-dev/compute/internal/placement"
	"github.com/persys-dev/compute/internal/reportdigest"
)

// Config holds what the cache's decisions depend on.
type Config struct {
	// MaxAttempts is the scheduler's Config.MaxAttempts: a workload whose
	// attempts at its revision ran out gives its node's resources back.
	MaxAttempts int
	// Strategy is the placement strategy of Choose.
	Strategy placement.Strategy
	// Backoff is the pause after failed attempt n (1-based) before the
	// next one.
	Backoff func(attempt int) time.Duration
	// Now is the clock (default time.Now).
	Now func() time.Time
}

// Cache is the scheduler's copy of the store. Make it with New.
type Cache struct {
	cfg Config

	// placeMu serializes choosing a node and holding it in the snapshot,
	// so that concurrent workers see each other's choices before they
	// commit. It is taken before mu, never after.
	placeMu sync.Mutex
	// sampler places over large clusters from a rotating cursor, so that
	// a bounded sample still spreads evenly. Guarded by placeMu.
	sampler placement.Sampler

	// hook is SetChangeHook's function (nil until set).
	hook atomic.Pointer[func(workload string)]

	// mu guards every field below.
	mu        sync.Mutex
	workloads map[string]*workload
	// counts counts workloads by observed state (counts.go); change
	// workloads and their statuses through its methods.
	counts stateCounts
	// byNode indexes workloads by the node their assignment names: a
	// node's loss or first report costs its own workloads, not a scan of
	// the whole cache.
	byNode map[string]map[string]struct{}
	// unplaced indexes the workloads with no assignment, so that Pending
	// costs the workloads that wait, not a walk of the whole cache under
	// the lock (with a million cached, back-to-back walks starved
	// heartbeats). Kept by indexLocked and unindexLocked.
	unplaced map[string]struct{}
	// byService indexes workloads by their ServiceLabel (a service's
	// replicas), so that listing one service's replicas, which the
	// service controller does on every step, and a replica's spread cost
	// that service, not a walk of every workload. An entry may be stale
	// (the workload went or its label changed): readers check and drop it.
	byService map[string]map[string]struct{}
	// gitPolled holds the workloads whose Git compose source is polled
	// (EachGitPolled), so that the poller does not walk every workload
	// under the lock every few seconds. Entries are dropped lazily.
	gitPolled map[string]struct{}
	nodes     map[string]*node
	watchers  map[string]map[chan struct{}]struct{}
	loaded    bool
	// tombstones remember, per deleted workload name, the last revision of
	// the deleted workload, so that a late write-back of the scheduler's
	// own (or a lagging watch event) never brings it back.
	tombstones map[string]tombstone
	// snap caches the placement view; nil means rebuild.
	snap *snapshot
	// inflight holds the placements chosen and not yet committed (or
	// committed and not yet cached), by workload name. Changed under
	// placeMu and mu.
	inflight map[string]Hold
	// blocked holds, per node, the dynamic ports a start found taken
	// there (portblocks.go).
	blocked map[string][]portBlock
	// specs shares equal specs among the cached workloads (specs.go).
	specs specPool
}

// workload is the cache of one workload's keys plus the in-memory retry
// state of its current revision.
type workload struct {
	w          *persysv1.Workload
	rev        int64
	status     *heldStatus
	statusRev  int64
	assignment *heldAssignment
	assignRev  int64

	// attemptRevision is the revision the retry state counts attempts of.
	attemptRevision uint64
	// reachedAt is when an apply of the current attempt series last
	// reached the desired state; the attempts reset only once it held for
	// a while (crash-loop backoff).
	reachedAt time.Time
	// x is the rest of the retry state, and notes for describe; nil while
	// all are zero, as they are for most workloads most of the time. Read
	// it with retry, change it with retryMut, then tidy.
	x *retry
}

// retry is the part of a workload's entry most workloads leave zero.
type retry struct {
	// Unplaced decision, kept for describe while the workload is pending.
	pending *persysv1.PlacementDecision

	attempts      int
	nextAttemptAt time.Time
	lastReason    persysv1.FailureReason
	lastMessage   string
	retryStored   bool
	// moveBlocked says why a drain could not move the workload.
	moveBlocked string
}

// noRetry is what retry reads of an entry without one; never written.
var noRetry retry

// retry is e's retry state, to read only.
func (e *workload) retry() *retry {
	if e.x == nil {
		return &noRetry
	}
	return e.x
}

// retryMut is e's retry state, to change; call tidy after.
func (e *workload) retryMut() *retry {
	if e.x == nil {
		e.x = &retry{}
	}
	return e.x
}

// tidy drops e's retry state once it is all zero.
func (e *workload) tidy() {
	if e.x != nil && *e.x == (retry{}) {
		e.x = nil
	}
}

// node is the cache of one node plus what it last reported.
type node struct {
	node *persysv1.Node
	// rev is the etcd revision of the newest record written or seen: a
	// watch event older than it is stale (the scheduler's own write went
	// to the cache first) and must not undo that write.
	rev     int64
	alive   bool
	reports map[string]report
	// reported is true once the node sent a full list since this scheduler
	// started; before that, absence from reports means nothing.
	reported bool
	// reportDigest is the agent's digest of the full list that reports
	// holds, so that a heartbeat repeating the list can carry the digest
	// alone. 0: none (an agent without digests, a registration, or reports
	// changed here since, by an apply or a delete).
	reportDigest uint64
	// held is the digest of reports as it is now (see reportdigest),
	// kept up to date with every change to reports so that a heartbeat's
	// delta is checked against the agent's digest without hashing the
	// whole list again.
	held reportdigest.Digest
	// suspects are the names in reports that may be orphans: their
	// assignment moved, the workload went or another instance of it came
	// (markSuspectsLocked), or they were orphans at the last check. A
	// heartbeat checks these and what it changed, not every report.
	suspects map[string]struct{}
	// checkAll asks the next check to look at every report: the cache
	// was loaded again under reports kept from before.
	checkAll      bool
	usage         *persysv1.Resources
	lastHeartbeat time.Time
	// leaseTTL is the TTL lease ttlLease was granted with (see
	// LeaseGranted); unknown (0) for another lease, such as one granted
	// by an earlier leader.
	leaseTTL time.Duration
	ttlLease int64
	// lostAt is when the node turned NotReady (zero while ready).
	lostAt time.Time
}

func newNode(n *persysv1.Node) *node {
	return &node{node: n, reports: map[string]report{}}
}

// report is what a node last reported of one workload. It is kept encoded
// (proto, deterministic: what the agent's digest hashes), for a decoded
// status costs several times its encoding, and nodes report every
// workload; it is decoded only when read.
type report struct {
	raw []byte
	// uid is the reported uid, read for every report on every heartbeat
	// (isOrphanLocked); it shares the cached workload's string when equal.
	uid string
	// entry is the report's term in the node's digest (reportdigest.Entry).
	entry uint64
	// since is when the report entered its uid, revision and state, so
	// that a transitional state gets a deadline (reconcile.Input.ObservedSince).
	since time.Time
}

type tombstone struct {
	rev int64
	at  time.Time
}

// New makes an empty cache; Load fills it.
func New(cfg Config) *Cache {
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Backoff == nil {
		cfg.Backoff = func(int) time.Duration { return 0 }
	}
	return &Cache{
		cfg:        cfg,
		workloads:  map[string]*workload{},
		counts:     stateCounts{},
		byNode:     map[string]map[string]struct{}{},
		unplaced:   map[string]struct{}{},
		byService:  map[string]map[string]struct{}{},
		gitPolled:  map[string]struct{}{},
		nodes:      map[string]*node{},
		watchers:   map[string]map[chan struct{}]struct{}{},
		tombstones: map[string]tombstone{},
		inflight:   map[string]Hold{},
	}
}

// Snapshot is one consistent read of the store (store.Snapshot without
// its revision).
type Snapshot struct {
	Workloads      map[string]*persysv1.Workload
	WorkloadRevs   map[string]int64
	Statuses       map[string]*persysv1.WorkloadStatus
	Assignments    map[string]*persysv1.Assignment
	AssignmentRevs map[string]int64
	Nodes          map[string]*persysv1.Node
	AliveNodes     map[string]bool
	Retries        map[string]*persysv1.RetryState
}

// Load replaces the cache's workloads and nodes with snap and marks it
// loaded; it returns every workload's name. What nodes reported is kept
// for the nodes still there (a reload after a watch failure); ForgetNodes
// drops it when a term starts.
func (c *Cache) Load(snap Snapshot) []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	old := c.nodes
	c.invalidateLocked()
	c.workloads, c.counts, c.byNode = map[string]*workload{}, stateCounts{}, map[string]map[string]struct{}{}
	c.unplaced = map[string]struct{}{}
	c.byService = map[string]map[string]struct{}{}
	c.gitPolled = map[string]struct{}{}
	for name, w := range snap.Workloads {
		e := &workload{w: c.specs.share(w), rev: snap.WorkloadRevs[name]}
		e.status = holdStatus(snap.Statuses[name], e.w)
		if a, ok := snap.Assignments[name]; ok {
			e.assignment, e.assignRev = holdAssignment(a, e.w), snap.AssignmentRevs[name] // indexed by putWorkloadLocked
		}
		if r := snap.Retries[name]; r != nil && r.GetUid() == w.GetUid() && r.GetRevision() == w.GetRevision() {
			x := e.retryMut()
			x.attempts, e.attemptRevision, x.retryStored = int(r.GetAttempts()), r.GetRevision(), true
			x.nextAttemptAt = r.GetNextAttemptAt().AsTime()
			x.lastReason, x.lastMessage = r.GetLastReason(), r.GetLastMessage()
		}
		c.putWorkloadLocked(name, e)
	}
	c.nodes = map[string]*node{}
	for id, n := range snap.Nodes {
		ne := newNode(n)
		ne.alive = snap.AliveNodes[id]
		if !ne.alive {
			// The grace starts now: how long it was lost before is unknown.
			ne.lostAt = c.cfg.Now()
		}
		if prev, ok := old[id]; ok {
			// A reload after a watch failure keeps what nodes reported.
			ne.reports, ne.reported, ne.usage, ne.lastHeartbeat = prev.reports, prev.reported, prev.usage, prev.lastHeartbeat
			ne.reportDigest, ne.held = prev.reportDigest, prev.held
			// Any of them may be an orphan of the workloads loaded now.
			ne.checkAll = len(ne.reports) > 0
		}
		c.nodes[id] = ne
	}
	c.loaded = true
	names := make([]string, 0, len(c.workloads))
	for name := range c.workloads {
		names = append(names, name)
	}
	return names
}

// ForgetNodes drops every node and what it reported: a term starts from
// etcd alone, and what nodes reported in an earlier term of this replica
// is stale (another leader may have acted since).
func (c *Cache) ForgetNodes() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.nodes = map[string]*node{}
}

// Unload marks the cache not loaded (a term ended).
func (c *Cache) Unload() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.loaded = false
}

// Loaded reports whether Load filled the cache since the last Unload.
func (c *Cache) Loaded() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.loaded
}

// buryLocked records that name was deleted at or after rev.
func (c *Cache) buryLocked(name string, rev int64) {
	if t, ok := c.tombstones[name]; !ok || rev > t.rev {
		c.tombstones[name] = tombstone{rev: rev, at: time.Now()}
	}
}

// buriedLocked reports whether a workload write at rev is older than its
// deletion.
func (c *Cache) buriedLocked(name string, rev int64) bool {
	t, ok := c.tombstones[name]
	return ok && rev <= t.rev
}

// PruneTombstones forgets deletions older than a minute: by then the watch
// has long delivered them and no request still holds an older revision.
func (c *Cache) PruneTombstones() {
	c.mu.Lock()
	defer c.mu.Unlock()
	for name, t := range c.tombstones {
		if time.Since(t.at) > time.Minute {
			delete(c.tombstones, name)
		}
	}
}

// notifyLocked wakes every subscriber of name and calls the change hook.
func (c *Cache) notifyLocked(name string) {
	if hook := c.hook.Load(); hook != nil {
		(*hook)(name)
	}
	for ch := range c.watchers[name] {
		select {
		case ch <- struct{}{}:
		default:
		}
	}
}

// SetChangeHook makes the cache call fn with the name of every workload
// that changes in it, after the change, so that fn's owner reads the
// change from the cache rather than racing it (a controller woken by its
// own watch of the store could read the cache before the change arrived).
// fn runs under the cache's lock: it must not block or call the cache.
func (c *Cache) SetChangeHook(fn func(workload string)) { c.hook.Store(&fn) }

// Subscribe returns a channel that receives when workload name changes in
// the cache, and the function that ends the subscription.
func (c *Cache) Subscribe(name string) (chan struct{}, func()) {
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

// holdsLocked reports whether e holds its resources, pools and host ports
// on its node. A workload that failed for good (its attempts at this
// revision ran out) does not: nothing of it runs there, and holding its
// share would keep other work off the node until someone deletes it. A
// retry or a new revision holds them again with its next status.
func (c *Cache) holdsLocked(e *workload) bool {
	return !gaveUp(e.status, e.w, c.cfg.MaxAttempts)
}

// gaveUp reports whether st is the final FAILED status of w's revision.
func gaveUp(st statusLike, w *persysv1.Workload, maxAttempts int) bool {
	return maxAttempts > 0 && st.GetState() == persysv1.ActualState_ACTUAL_STATE_FAILED &&
		int(st.GetAttempts()) >= maxAttempts && st.GetRevision() == w.GetRevision()
}
