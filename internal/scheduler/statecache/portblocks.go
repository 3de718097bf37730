package statecache

// Dynamic ports a start found taken on a node (PORT_CONFLICT) although no
// report of the node lists them: a listener bound after the agent's last
// heartbeat, or an outgoing connection, which the agent's scan of
// listening sockets does not count. Giving the same ports again would
// fail at every retry, so the node's range leaves them out for
// PortBlockFor and the workload gets others (RepickDynamic).

import (
	"slices"
	"time"

	persysv1 "github.com/persys-dev/compute/api/persys/v1"
	"github.com/persys-dev/compute/internal/hostaccess"
	"github.com/persys-dev/compute/internal/placement"
)

// PortBlockFor is how long a port found taken stays out of its node's
// dynamic range: long enough for a retry elsewhere in the range, short
// enough that a port freed again (a closed connection) comes back.
const PortBlockFor = 10 * time.Minute

// maxBlockedPorts bounds what one node blocks, as its used ports are
// (oldest dropped first).
const maxBlockedPorts = 1024

type portBlock struct {
	port  hostaccess.Port
	until time.Time
}

// blockedPortsLocked lists node id's blocked ports that have not expired,
// dropping the expired ones. c.mu is held.
func (c *Cache) blockedPortsLocked(id string) []hostaccess.Port {
	bs := c.blocked[id]
	if len(bs) == 0 {
		return nil
	}
	now := c.cfg.Now()
	bs = slices.DeleteFunc(bs, func(b portBlock) bool { return !now.Before(b.until) })
	if len(bs) == 0 {
		delete(c.blocked, id)
		return nil
	}
	c.blocked[id] = bs
	out := make([]hostaccess.Port, len(bs))
	for i, b := range bs {
		out[i] = b.port
	}
	return out
}

// RepickDynamic is called when workload name's start on node failed
// PORT_CONFLICT with the dynamic ports old: it blocks them on node until
// until and chooses new ones there for spec's dynamic mappings, held in
// the placement snapshot until RepickDone. ok is false when the node's
// range has no others free (the old ones stay blocked: the retry then
// waits for the block or another port to end).
func (c *Cache) RepickDynamic(name, node string, spec *persysv1.WorkloadSpec, old []uint32, until time.Time) (chosen []uint32, ok bool) {
	c.placeMu.Lock()
	defer c.placeMu.Unlock()
	c.mu.Lock()
	defer c.mu.Unlock()
	req := request(name, spec)
	if c.blocked == nil {
		c.blocked = map[string][]portBlock{}
	}
	bs := c.blocked[node]
	for _, p := range boundDynamic(req.Dynamic, old) {
		bs = append(bs, portBlock{port: p, until: until})
	}
	if len(bs) > maxBlockedPorts {
		bs = bs[len(bs)-maxBlockedPorts:]
	}
	c.blocked[node] = bs
	// Rebuilt with the blocks; the workload's own old ports still count
	// as its until the new assignment is cached.
	c.snap = c.buildSnapshotLocked()
	i, found := c.snap.index[node]
	if !found {
		return nil, false
	}
	n := &c.snap.nodes[i]
	chosen, ok = placement.PickDynamic(n, &req, nil)
	if !ok {
		return nil, false
	}
	// Held at once, so that a placement before the commit does not take
	// them.
	n.Ports = adjustPorts(n.Ports, boundDynamic(req.Dynamic, chosen), 1)
	return chosen, true
}

// RepickDone records the assignment with the new ports committed at rev
// (a nil a: the commit failed) and drops the snapshot, which held the
// choice beside the old ports.
func (c *Cache) RepickDone(name string, wrev int64, a *persysv1.Assignment, rev int64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.invalidateLocked()
	if e := c.workloads[name]; a != nil && e != nil && e.rev == wrev && rev > e.assignRev {
		c.setAssignmentLocked(name, e, a, rev)
		c.notifyLocked(name)
	}
}
