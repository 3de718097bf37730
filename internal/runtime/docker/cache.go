package docker

import (
	"sync"
	"time"

	"google.golang.org/protobuf/proto"

	persysv1 "github.com/persys-dev/compute/api/persys/v1"
)

// statusCache holds the last known status of every container of this
// runtime, keyed by container id, so List needs no engine call. It alone
// owns its lock.
//
// Writers race: the event follower, Apply and Delete each inspect a
// container and then write what they saw, and a write may arrive after a
// newer one. Every write therefore carries a ticket taken (begin) before
// its engine call; a write whose ticket is older than the entry's is
// dropped. A ticket taken after an event was seen belongs to a call that
// the engine served after that event, so the newest ticket holds the
// newest state. A removed container leaves a tombstone with the removal's
// ticket, so a late write cannot bring it back; tombstones go once no
// call older than them is still in flight.
//
// live is false until the follower's first re-list and from an event
// stream gap until the next re-list completes: only then is the cache
// known to miss nothing, and callers must not answer from it otherwise.
type statusCache struct {
	mu       sync.Mutex
	seq      uint64              // last ticket handed out
	inFlight map[uint64]struct{} // tickets begun and not ended
	byID     map[string]*cacheEntry
	tombs    int // entries of byID that are tombstones
	live     bool
}

type cacheEntry struct {
	ticket  uint64
	st      *persysv1.WorkloadStatus // nil: a tombstone
	created time.Time
	cluster string // the container's cluster label
}

func newStatusCache() *statusCache {
	return &statusCache{inFlight: map[uint64]struct{}{}, byID: map[string]*cacheEntry{}}
}

// begin hands out a ticket for one engine call; end must follow.
func (c *statusCache) begin() uint64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.seq++
	c.inFlight[c.seq] = struct{}{}
	return c.seq
}

// end retires a ticket and drops the tombstones no call in flight can
// race with any more.
func (c *statusCache) end(t uint64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	delete(c.inFlight, t)
	if c.tombs == 0 {
		return
	}
	oldest := c.seq + 1
	for f := range c.inFlight {
		oldest = min(oldest, f)
	}
	for id, e := range c.byID {
		if e.st == nil && e.ticket < oldest {
			delete(c.byID, id)
			c.tombs--
		}
	}
}

// put records what an inspect begun with ticket t saw; created orders the
// containers of one revision, cluster is the container's cluster label.
func (c *statusCache) put(t uint64, id string, st *persysv1.WorkloadStatus, created time.Time, cluster string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if e, ok := c.byID[id]; ok && e.ticket > t {
		return
	}
	c.set(id, &cacheEntry{ticket: t, st: st, created: created, cluster: cluster})
}

// gone records that the container no longer exists. Ids are never
// reused, so this is final: it takes a ticket newer than every call in
// flight, whose late writes are then dropped.
func (c *statusCache) gone(id string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.seq++
	c.set(id, &cacheEntry{ticket: c.seq})
}

// replace installs a full re-list whose list call began with ticket t:
// every container it did not see and no newer write knows of is gone.
// It makes the cache live.
func (c *statusCache) replace(t uint64, seen map[string]bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for id, e := range c.byID {
		if !seen[id] && e.st != nil && e.ticket < t {
			c.set(id, &cacheEntry{ticket: t})
		}
	}
	c.live = true
}

// set stores an entry, counting tombstones; the caller holds mu.
func (c *statusCache) set(id string, e *cacheEntry) {
	if old, ok := c.byID[id]; ok && old.st == nil {
		c.tombs--
	}
	if e.st == nil {
		c.tombs++
	}
	c.byID[id] = e
}

// setLive marks whether the cache misses nothing.
func (c *statusCache) setLive(live bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.live = live
}

// list returns copies of the newest container's status of every workload
// (highest revision, then latest creation) among the containers whose
// cluster label owns accepts, sorted by name; ok is false when the cache
// is not live. Ownership is decided here, not when the cache is filled,
// because the agent learns its cluster id after it starts.
func (c *statusCache) list(owns func(cluster string) bool) (out []*persysv1.WorkloadStatus, ok bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.live {
		return nil, false
	}
	newest := c.newestByName(owns)
	out = make([]*persysv1.WorkloadStatus, 0, len(newest))
	for _, name := range sortedKeys(newest) {
		out = append(out, proto.Clone(newest[name].st).(*persysv1.WorkloadStatus))
	}
	return out, true
}

// newestByName picks each workload's newest owned container; the caller
// holds mu.
func (c *statusCache) newestByName(owns func(cluster string) bool) map[string]*cacheEntry {
	newest := map[string]*cacheEntry{}
	for _, e := range c.byID {
		name := e.st.GetName()
		if name == "" || !owns(e.cluster) {
			continue
		}
		if cur, ok := newest[name]; !ok || newer(e, cur) {
			newest[name] = e
		}
	}
	return newest
}

// newer orders two containers of one workload as newestFirst does.
func newer(a, b *cacheEntry) bool {
	if ra, rb := a.st.GetRevision(), b.st.GetRevision(); ra != rb {
		return ra > rb
	}
	if !a.created.Equal(b.created) {
		return a.created.After(b.created)
	}
	return a.st.GetRuntimeId() > b.st.GetRuntimeId()
}

// snapshot returns the newest owned status of every workload, live or not.
func (c *statusCache) snapshot(owns func(cluster string) bool) map[string]*persysv1.WorkloadStatus {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := map[string]*persysv1.WorkloadStatus{}
	for name, e := range c.newestByName(owns) {
		out[name] = e.st
	}
	return out
}
