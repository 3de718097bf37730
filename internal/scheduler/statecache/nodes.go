package statecache

// Nodes: registrations, heartbeats, what each node reports running, and
// the operator's cordon and drain.

import (
	"bytes"
	"slices"
	"time"

	"google.golang.org/protobuf/proto"

	persysv1 "github.com/persys-dev/compute/api/persys/v1"
	"github.com/persys-dev/compute/internal/reportdigest"
)

// RegisterNode records n, a node that registered at now, as alive. What
// the operator set survives the agent's restarts: the cached record's
// cordon and drain flags are copied into n (a node being drained goes on
// draining). It returns n.
func (c *Cache) RegisterNode(n *persysv1.Node, now time.Time) *persysv1.Node {
	c.placeMu.Lock()
	defer c.placeMu.Unlock()
	c.mu.Lock()
	defer c.mu.Unlock()
	ne := c.nodes[n.GetId()]
	if ne == nil {
		ne = newNode(nil)
		c.nodes[n.GetId()] = ne
	}
	if ne.node != nil {
		n.Cordoned, n.Draining = ne.node.GetCordoned(), ne.node.GetDraining()
	}
	if !samePlacementRecord(ne.node, n) {
		c.invalidateLocked()
	}
	ne.node = n
	ne.alive = true
	c.setReadyLocked(n.GetId(), true)
	ne.lastHeartbeat = now
	return n
}

// NodeLease is node id's liveness lease; 0 when the node is unknown or
// has none (it must register again).
func (c *Cache) NodeLease(id string) int64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	if ne := c.nodes[id]; ne != nil {
		return ne.node.GetLeaseId()
	}
	return 0
}

// NodeLeaseTTL is node id's lease and the TTL it was granted with (0 when
// this scheduler did not grant it, or the node is not known).
func (c *Cache) NodeLeaseTTL(id string) (lease int64, ttl time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	ne := c.nodes[id]
	if ne == nil {
		return 0, 0
	}
	lease = ne.node.GetLeaseId()
	if lease != 0 && lease == ne.ttlLease {
		ttl = ne.leaseTTL
	}
	return lease, ttl
}

// LeaseGranted records that node id's lease was granted with ttl.
func (c *Cache) LeaseGranted(id string, lease int64, ttl time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if ne := c.nodes[id]; ne != nil {
		ne.ttlLease, ne.leaseTTL = lease, ttl
	}
}

// LeaseExtended makes lease, of ttl, node id's lease in place of old and
// returns the record to write; ok is false, and nothing changes, when the
// node's lease is no longer old (it registered again meanwhile).
func (c *Cache) LeaseExtended(id string, old, lease int64, ttl time.Duration) (rec *persysv1.Node, ok bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	ne := c.nodes[id]
	if ne == nil || ne.node.GetLeaseId() != old {
		return nil, false
	}
	n := cloneNode(ne.node)
	n.LeaseId = lease
	ne.node, ne.ttlLease, ne.leaseTTL = n, lease, ttl
	return cloneNode(n), true
}

// Heartbeat is what a heartbeat tells besides the workloads.
type Heartbeat struct {
	Usage *persysv1.Resources
	At    time.Time
	// Full is false for a digest-only heartbeat, whose used ports mean
	// nothing.
	Full      bool
	UsedPorts []*persysv1.HostPort
}

// RecordHeartbeat records node id's usage and the host ports something
// else binds there; it reports whether those ports changed (which drops
// the placement snapshot) and how many nodes the cache knows.
func (c *Cache) RecordHeartbeat(id string, hb Heartbeat) (portsChanged bool, nodes int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if ne := c.nodes[id]; ne != nil {
		ne.usage = hb.Usage
		ne.lastHeartbeat = hb.At
		portsChanged = hb.Full && c.setUsedPortsLocked(ne, hb.UsedPorts)
	}
	return portsChanged, len(c.nodes)
}

// maxUsedHostPorts bounds the used ports a node's record keeps (agents
// send no more than this).
const maxUsedHostPorts = 1024

// setUsedPortsLocked records the host ports a full heartbeat reports bound
// by something else, in the node's capabilities as registration does. The
// record is replaced, never changed in place (views share it), and only
// when the list changed, which also drops the placement snapshot; it
// reports whether it did.
func (c *Cache) setUsedPortsLocked(ne *node, used []*persysv1.HostPort) bool {
	if len(used) > maxUsedHostPorts {
		used = used[:maxUsedHostPorts]
	}
	old := ne.node.GetCapabilities().GetUsedHostPorts()
	if slices.EqualFunc(old, used, func(a, b *persysv1.HostPort) bool { return proto.Equal(a, b) }) {
		return false
	}
	n := cloneNode(ne.node)
	if n.Capabilities == nil {
		n.Capabilities = &persysv1.NodeCapabilities{}
	}
	n.Capabilities.UsedHostPorts = used
	ne.node = n
	c.invalidateLocked()
	return true
}

// NodeCount is how many nodes the cache knows.
func (c *Cache) NodeCount() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.nodes)
}

// Orphan is a copy of a workload that a node runs and the scheduler does
// not assign to it (or another instance of it, with another uid).
type Orphan struct{ Name, UID string }

// Reports is what StoreReports found in a node's full list.
type Reports struct {
	// Known is false when the node is not in the cache.
	Known bool
	// Changed lists the workloads whose report changed or vanished, and,
	// on the node's first list, every workload assigned to it.
	Changed []string
	Orphans []Orphan
}

// StoreReports stores node id's full list of what it runs, with the
// agent's digest of it (0: none). A status that cannot be encoded (one no
// agent could send) is left out.
func (c *Cache) StoreReports(id string, reports []*persysv1.WorkloadStatus, digest uint64) Reports {
	c.mu.Lock()
	defer c.mu.Unlock()
	ne := c.nodes[id]
	if ne == nil {
		return Reports{}
	}
	next := make(map[string]report, len(reports))
	fresh := make(map[string]*persysv1.WorkloadStatus, len(reports))
	for _, st := range reports {
		if name := st.GetName(); name != "" {
			if name, r, err := c.encodeReportLocked(name, st); err == nil {
				next[name], fresh[name] = r, st
			}
		}
	}
	return c.storeReportsLocked(id, ne, next, fresh, digest)
}

// ApplyDelta applies a heartbeat's change to node id's list (the statuses
// that changed and the names removed) and stores the result, as
// StoreReports would, when its digest is digest. ok is false, and nothing
// changes, when the node sent no full list since this scheduler started or
// it came back (a change needs a base), or the result is not the list the
// agent holds: the agent must send it whole.
func (c *Cache) ApplyDelta(id string, changed []*persysv1.WorkloadStatus, removed []string, digest uint64) (out Reports, ok bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	ne := c.nodes[id]
	if ne == nil || !ne.reported || digest == 0 {
		return Reports{}, false
	}
	pend := make(map[string]pending, len(changed)+len(removed))
	for _, name := range removed {
		pend[name] = pending{gone: true}
	}
	for _, st := range changed {
		if name := st.GetName(); name != "" {
			name, r, err := c.encodeReportLocked(name, st)
			if err != nil {
				return Reports{}, false
			}
			pend[name] = pending{r: r, st: st}
		}
	}
	// The digest the list would have, from what changed alone.
	sum := ne.held
	for name, p := range pend {
		if old, had := ne.reports[name]; had {
			sum.Remove(old.entry)
		}
		if !p.gone {
			sum.Add(p.r.entry)
		}
	}
	if sum.Sum() != digest {
		return Reports{}, false
	}
	out = Reports{Known: true}
	now := c.cfg.Now()
	for name, p := range pend {
		old, had := ne.reports[name]
		if p.gone {
			if ne.dropReport(name) {
				out.Changed = append(out.Changed, name)
			}
			continue
		}
		r := p.r
		r.since = old.since
		if !had || !bytes.Equal(old.raw, r.raw) {
			var prev *persysv1.WorkloadStatus
			if had {
				prev = old.status()
			}
			if !sameReport(prev, p.st) {
				out.Changed = append(out.Changed, name)
			}
			r.since = sinceOf(prev, p.st, old.since, now)
		}
		ne.putReport(name, r)
		if c.isOrphanLocked(id, name, r.uid) {
			out.Orphans = append(out.Orphans, Orphan{name, r.uid})
			ne.suspect(name)
		}
	}
	ne.reportDigest = digest
	out.Orphans = append(out.Orphans, c.suspectOrphansLocked(id, ne, pend)...)
	return out, true
}

// encodeReportLocked encodes st, node's report of workload name; key is
// name, the cached workload's string when there is one.
func (c *Cache) encodeReportLocked(name string, st *persysv1.WorkloadStatus) (key string, r report, err error) {
	raw, err := proto.MarshalOptions{Deterministic: true}.Marshal(st)
	if err != nil {
		return name, report{}, err
	}
	r = report{raw: raw, uid: st.GetUid(), entry: reportdigest.Entry(raw)}
	if e := c.workloads[name]; e != nil {
		name = e.name(name)
		if e.w.GetUid() == r.uid {
			r.uid = e.w.GetUid()
		}
	}
	return name, r, nil
}

// status decodes r.
func (r report) status() *persysv1.WorkloadStatus {
	st := &persysv1.WorkloadStatus{}
	_ = proto.Unmarshal(r.raw, st) // encoded by encodeReportLocked
	return st
}

// storeReportsLocked makes next (by name) node id's list; fresh holds the
// statuses next took from the agent, by name (the others are the list
// held).
func (c *Cache) storeReportsLocked(id string, ne *node, next map[string]report, fresh map[string]*persysv1.WorkloadStatus, digest uint64) Reports {
	out := Reports{Known: true}
	now := c.cfg.Now()
	for name, r := range next {
		old, had := ne.reports[name]
		r.since = old.since
		if st := fresh[name]; st != nil && !(had && bytes.Equal(old.raw, r.raw)) {
			var prev *persysv1.WorkloadStatus
			if had {
				prev = old.status()
			}
			if !sameReport(prev, st) {
				out.Changed = append(out.Changed, name)
			}
			r.since = sinceOf(prev, st, old.since, now)
		}
		next[name] = r
	}
	for name := range ne.reports {
		if _, ok := next[name]; !ok {
			out.Changed = append(out.Changed, name)
		}
	}
	ne.setReports(next)
	ne.reportDigest = digest
	// A full list is checked whole; its orphans stay suspects.
	for name, r := range next {
		if c.isOrphanLocked(id, name, r.uid) {
			out.Orphans = append(out.Orphans, Orphan{name, r.uid})
			ne.suspect(name)
		}
	}
	if !ne.reported {
		// The node's first full list since this scheduler started or since
		// the node came back: its assigned workloads waited for it, those
		// it does not run included.
		ne.reported = true
		out.Changed = append(out.Changed, c.assignedLocked(id)...)
	}
	return out
}

// DigestOrphans serves a heartbeat whose list is node id's last full one,
// sent as its digest alone: nothing the node reports changed, but an
// assignment may have moved away since, so the reports that may have
// turned orphans since (the node's suspects) are checked. ok is false when the list held is not the one with that
// digest (none yet since the scheduler started or the node registered, or
// changed here since): the agent must send it.
func (c *Cache) DigestOrphans(id string, digest uint64) (orphans []Orphan, ok bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	ne := c.nodes[id]
	if ne == nil || !ne.reported || ne.reportDigest == 0 || ne.reportDigest != digest {
		return nil, false
	}
	return c.suspectOrphansLocked(id, ne, nil), true
}

// isOrphanLocked reports whether the workload a node reports with uid is
// one the scheduler does not assign to that node, or another instance of
// it (another uid).
func (c *Cache) isOrphanLocked(id, name, uid string) bool {
	e := c.workloads[name]
	onNode := e != nil && (e.assignment.GetNodeId() == id || e.assignment.GetPreviousNodeId() == id)
	return !onNode || (uid != "" && uid != e.w.GetUid())
}

// SetReport records what the scheduler learned of workload name on node
// id outside the node's lists, from an agent's answer (st nil: it is
// gone). A change that matters means the list held no longer is the one
// the agent's digest stands for, so the next digest-only heartbeat is
// answered with resend_full. A status that cannot be encoded is ignored.
func (c *Cache) SetReport(id, name string, st *persysv1.WorkloadStatus) {
	c.mu.Lock()
	defer c.mu.Unlock()
	ne := c.nodes[id]
	if ne == nil {
		return
	}
	old, had := ne.reports[name]
	if st == nil {
		if !had {
			return
		}
		ne.dropReport(name)
	} else {
		name, r, err := c.encodeReportLocked(name, st)
		if err != nil {
			return
		}
		if had && bytes.Equal(old.raw, r.raw) {
			return
		}
		var prev *persysv1.WorkloadStatus
		if had {
			prev = old.status()
		}
		r.since = sinceOf(prev, st, old.since, c.cfg.Now())
		ne.putReport(name, r)
		if had && sameReport(prev, st) && prev.GetMessage() == st.GetMessage() {
			return
		}
	}
	ne.reportDigest = 0
}

// sinceOf is when the report st, following old (nil: none) that entered
// at since, entered its uid, revision and state: now when st differs from
// old in them.
func sinceOf(old, st *persysv1.WorkloadStatus, since, now time.Time) time.Time {
	if old == nil || old.GetUid() != st.GetUid() || old.GetRevision() != st.GetRevision() || old.GetState() != st.GetState() {
		return now
	}
	return since
}

// RestartReportClock starts the clock of node id's report of name again:
// the revision was just applied again, so its deadline starts over.
func (c *Cache) RestartReportClock(id, name string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if ne := c.nodes[id]; ne != nil {
		if r, ok := ne.reports[name]; ok {
			r.since = c.cfg.Now()
			ne.reports[name] = r
		}
	}
}

// Report is a copy of node id's last report of workload name; nil when
// none.
func (c *Cache) Report(id, name string) *persysv1.WorkloadStatus {
	c.mu.Lock()
	defer c.mu.Unlock()
	if ne := c.nodes[id]; ne != nil {
		if r, ok := ne.reports[name]; ok {
			return r.status()
		}
	}
	return nil
}

// sameReport compares what matters for reconciliation.
func sameReport(a, b *persysv1.WorkloadStatus) bool {
	if a == nil || b == nil {
		return a == b
	}
	return a.GetUid() == b.GetUid() && a.GetRevision() == b.GetRevision() && a.GetState() == b.GetState() &&
		a.GetReason() == b.GetReason() && a.GetRuntimeId() == b.GetRuntimeId() && a.GetRestartCount() == b.GetRestartCount() &&
		a.GetReady() == b.GetReady() && a.GetHealth() == b.GetHealth() && a.GetHealthOutput() == b.GetHealthOutput() &&
		slices.Equal(a.GetAddresses(), b.GetAddresses()) // a service's endpoints carry them
}

// NodeAddress is node id's address and whether it is alive; known is
// false when the cache has no such node.
func (c *Cache) NodeAddress(id string) (addr string, alive, known bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	ne := c.nodes[id]
	if ne == nil {
		return "", false, false
	}
	return ne.node.GetAddress(), ne.alive, true
}

// NodeAlive reports whether node id is registered and alive.
func (c *Cache) NodeAlive(id string) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	ne := c.nodes[id]
	return ne != nil && ne.alive
}

// AliveNodeLeases maps every alive node to its lease id.
func (c *Cache) AliveNodeLeases() map[string]int64 {
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

// AssignedTo lists the workloads assigned to node id.
func (c *Cache) AssignedTo(id string) []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.assignedLocked(id)
}

// SetCordon sets node id's cordon and drain flags in a new copy of its
// record and returns it; nil when the node is unknown.
func (c *Cache) SetCordon(id string, cordoned, draining bool) *persysv1.Node {
	c.mu.Lock()
	defer c.mu.Unlock()
	ne := c.nodes[id]
	if ne == nil || ne.node == nil {
		return nil
	}
	n := cloneNode(ne.node)
	n.Cordoned, n.Draining = cordoned, draining
	ne.node = n
	c.invalidateLocked()
	return n
}

// StartDrain lists the workloads on node id, forgetting why an earlier
// drain could not move them.
func (c *Cache) StartDrain(id string) []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	var names []string
	for name, e := range c.workloads {
		if e.assignment.GetNodeId() == id {
			if e.x != nil {
				e.x.moveBlocked = ""
				e.tidy()
			}
			names = append(names, name)
		}
	}
	return names
}

// DrainState reports each of names, drained from node id; settled is
// true when none is still in flight (each moved, is blocked, or is gone).
func (c *Cache) DrainState(id string, names []string) (*persysv1.DrainResponse, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	resp := &persysv1.DrainResponse{Complete: true}
	settled := true
	for _, name := range names {
		e := c.workloads[name]
		r := &persysv1.DrainResult{Workload: name}
		switch {
		case e == nil || e.w.GetDeleting():
			r.Result, r.Message = "moved", "workload deleted"
		case e.assignment.GetNodeId() != id && e.assignment.GetPreviousNodeId() == "":
			r.Result, r.ToNode = "moved", e.assignment.GetNodeId()
		case e.retry().moveBlocked != "":
			r.Result, r.Reason, r.Message = "unmoved", persysv1.FailureReason_FAILURE_REASON_NO_FEASIBLE_NODE, e.retry().moveBlocked
			resp.Complete = false
		default:
			r.Result, r.ToNode = "unmoved", e.assignment.GetNodeId()
			r.Message = "replacement not running yet"
			if e.assignment.GetNodeId() == id {
				r.Message = "not moved yet"
			}
			if st := e.status; st != nil && st.GetReason() != persysv1.FailureReason_FAILURE_REASON_UNSPECIFIED {
				r.Reason, r.Message = st.GetReason(), st.GetMessage()
			}
			resp.Complete = false
			settled = false
		}
		resp.Workloads = append(resp.Workloads, r)
	}
	if ne := c.nodes[id]; ne != nil {
		resp.Node = cloneNode(ne.node)
	}
	return resp, settled
}
