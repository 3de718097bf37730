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

	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/persys-dev/compute/api/persys/contract"
	persysv1 "github.com/persys-dev/compute/api/persys/v1"
	"github.com/persys-dev/compute/internal/manifest"
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

// holdsLocked reports whether e holds its resources, pools and host ports
// on its node. A workload that failed for good (its attempts at this
// revision ran out) does not: nothing of it runs there, and holding its
// share would keep other work off the node until someone deletes it. A
// retry or a new revision holds them again with its next status. Callers
// hold mu.
func (c *cache) holdsLocked(e *workloadEntry) bool {
	return !gaveUp(e.status, e.w, c.maxAttempts)
}

// poolAllocations sums, per node and pool, the disks of the workloads
// assigned there (a moving workload counts on both nodes). Callers hold mu.
func (c *cache) poolAllocationsLocked(only string) map[string]map[string]int64 {
	out := map[string]map[string]int64{}
	add := func(node string, spec *persysv1.WorkloadSpec) {
		if node == "" || (only != "" && node != only) || spec.GetVm() == nil {
			return
		}
		if out[node] == nil {
			out[node] = map[string]int64{}
		}
		for pool, b := range manifest.PoolDemand(spec) {
			out[node][pool] += b
		}
	}
	for _, e := range c.workloads {
		if !c.holdsLocked(e) {
			continue
		}
		add(e.assignment.GetNodeId(), e.w.GetSpec())
		add(e.assignment.GetPreviousNodeId(), e.w.GetSpec())
	}
	return out
}

// workloadView is the cached part of a workload's view; nil when there is
// none.
func (c *cache) workloadView(name string) *persysv1.WorkloadView {
	c.mu.Lock()
	defer c.mu.Unlock()
	e := c.workloads[name]
	if e == nil {
		return nil
	}
	v := &persysv1.WorkloadView{Workload: e.w, Status: e.status, Assignment: e.assignment}
	if v.Status == nil {
		v.Status = &persysv1.WorkloadStatus{Name: name, Uid: e.w.GetUid(), State: persysv1.ActualState_ACTUAL_STATE_PENDING}
	}
	if e.assignment == nil && e.pending != nil {
		v.Assignment = &persysv1.Assignment{Name: name, Uid: e.w.GetUid(), Decision: e.pending}
	}
	return v
}

// nodeViews returns nodes (or one node) with live usage and allocation.
func (c *cache) nodeViews(only string) []*persysv1.Node {
	c.mu.Lock()
	defer c.mu.Unlock()
	alloc := map[string]*persysv1.Resources{}
	for _, e := range c.workloads {
		if id := e.assignment.GetNodeId(); id != "" && (only == "" || id == only) && c.holdsLocked(e) {
			alloc[id] = addResources(alloc[id], e.w.GetSpec().GetResources())
		}
	}
	poolAlloc := c.poolAllocationsLocked(only)
	var out []*persysv1.Node
	for id, ne := range c.nodes {
		if only != "" && id != only {
			continue
		}
		n := cloneNode(ne.node)
		n.State = persysv1.NodeState_NODE_STATE_NOT_READY
		if ne.alive {
			n.State = persysv1.NodeState_NODE_STATE_READY
		}
		n.Usage = ne.usage
		n.Allocated = alloc[id]
		if n.Allocated == nil {
			n.Allocated = &persysv1.Resources{}
		}
		for _, p := range n.GetCapabilities().GetStoragePools() {
			p.AllocatedBytes = poolAlloc[id][p.GetName()]
		}
		if !ne.lastHeartbeat.IsZero() {
			n.LastHeartbeat = timestamppb.New(ne.lastHeartbeat)
		}
		out = append(out, n)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].GetId() < out[j].GetId() })
	return out
}

// summary counts nodes, capacity and workloads by state.
func (c *cache) summary() *persysv1.ClusterSummary {
	out := &persysv1.ClusterSummary{WorkloadsByState: map[string]int32{}, Capacity: &persysv1.Resources{}, Allocated: &persysv1.Resources{}}
	// Totals only: no per-node views (copies of every node), so that a
	// dashboard polling a large cluster costs little and holds mu briefly.
	c.mu.Lock()
	for _, ne := range c.nodes {
		out.NodesTotal++
		if ne.alive {
			out.NodesReady++
		}
		capy := ne.node.GetCapabilities().GetCapacity()
		out.Capacity.CpuMillis += capy.GetCpuMillis()
		out.Capacity.MemoryBytes += capy.GetMemoryBytes()
		out.Capacity.DiskBytes += capy.GetDiskBytes()
	}
	for _, e := range c.workloads {
		if e.assignment.GetNodeId() == "" || !c.holdsLocked(e) {
			continue
		}
		r := e.w.GetSpec().GetResources()
		out.Allocated.CpuMillis += r.GetCpuMillis()
		out.Allocated.MemoryBytes += r.GetMemoryBytes()
		out.Allocated.DiskBytes += r.GetDiskBytes()
	}
	counts := c.stateCountsLocked()
	c.mu.Unlock()
	for st, n := range counts {
		out.WorkloadsTotal += int32(n)
		out.WorkloadsByState[contract.Name(st)] = int32(n)
	}
	return out
}
