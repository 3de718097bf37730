package statecache

// The placement snapshot: every node with what its workloads hold there,
// kept between changes so that a burst of placements does not walk every
// workload for each one. Every change to nodes, assignments or specs drops
// it (invalidateLocked); a placement chosen here holds its node in it
// before the commit (Choose) and gives it back if the commit fails
// (Release).

import (
	"slices"
	"sort"
	"strings"
	"time"

	persysv1 "github.com/persys-dev/compute/api/persys/v1"
	"github.com/persys-dev/compute/internal/hostaccess"
	"github.com/persys-dev/compute/internal/hostaccess/specaccess"
	"github.com/persys-dev/compute/internal/manifest"
	"github.com/persys-dev/compute/internal/model"
	"github.com/persys-dev/compute/internal/placement"
	"google.golang.org/protobuf/proto"
)

type snapshot struct {
	nodes []placement.Node
	index map[string]int
	// held maps the workloads placed into this snapshot since it was built
	// to their node.
	held map[string]string
}

// invalidateLocked drops the placement snapshot.
func (c *Cache) invalidateLocked() { c.snap = nil }

// setReadyLocked marks node id ready or not in the placement snapshot,
// which is rebuilt only when the node is not in it. Rebuilding walks
// every cached workload under the lock: with a million cached, a rebuild
// per lost or returning node (a storm of them after the scheduler was
// starved) held the lock all the time, starving heartbeats and losing
// more nodes. A node's readiness changes no workload's holds. The caller
// holds placeMu (the snapshot's nodes change only under it) and mu.
func (c *Cache) setReadyLocked(id string, ready bool) {
	if c.snap == nil {
		return
	}
	i, ok := c.snap.index[id]
	if !ok {
		c.invalidateLocked()
		return
	}
	c.snap.nodes[i].Ready = ready
}

// samePlacementRecord reports whether node records a and b place alike:
// the snapshot reads only their capabilities and cordon (a registration
// again of the same agent, a state written on loss, change neither).
func samePlacementRecord(a, b *persysv1.Node) bool {
	return a != nil && b != nil && a.GetCordoned() == b.GetCordoned() &&
		proto.Equal(a.GetCapabilities(), b.GetCapabilities())
}

// Hold is what a placement holds on its node: its resources, pools and
// host ports. One chosen and not yet committed is kept in flight, and a
// rebuilt snapshot holds it again.
type Hold struct {
	node  string
	res   model.Resources
	pools []placement.PoolDemand
	// ports are the static host ports and the dynamic ones chosen.
	ports []hostaccess.Port
	// dynamic are the numbers chosen for the spec's dynamic ports, in
	// their order.
	dynamic []uint32
}

// DynamicPorts are the host ports chosen for the spec's dynamic port
// mappings, in their order: the assignment records them.
func (h Hold) DynamicPorts() []uint32 { return h.dynamic }

// request is the placement request of workload name with spec: what it
// needs of a node, as the snapshot counts it.
func request(name string, spec *persysv1.WorkloadSpec) placement.Request {
	return placement.Request{
		Workload:     name,
		Type:         model.WorkloadType(spec.GetType()),
		Resources:    fromProtoResources(spec.GetResources()),
		NodeSelector: spec.GetNodeSelector(),
		RequireKVM:   spec.GetVm().GetAccel() == "kvm",
		Pools:        poolDemands(spec),
		Host:         hostNeeds(spec),
		Dynamic:      specaccess.DynamicPorts(spec),
	}
}

// Choose runs the pure placement of workload name with spec over the
// snapshot and, when it found a node, holds what the spec needs there, so that concurrent
// choices see it before it commits (an optimistic reservation: Release
// gives it back, Placed records the commit). took is how long the choice
// took, the snapshot's rebuild included.
func (c *Cache) Choose(name string, spec *persysv1.WorkloadSpec) (dec placement.Decision, h Hold, took time.Duration) {
	c.placeMu.Lock()
	defer c.placeMu.Unlock()
	start := time.Now()
	req := request(name, spec)
	// The snapshot's nodes only change under placeMu, which this holds
	// while placing over them; others only replace c.snap.
	c.mu.Lock()
	if c.snap == nil {
		c.snap = c.buildSnapshotLocked()
	}
	snap := c.snap
	nodes := snap.nodes
	req.Spread = c.spreadLocked(name, nodes)
	c.mu.Unlock()
	dec = c.sampler.Place(nodes, req, c.cfg.Strategy)
	h = Hold{node: dec.NodeID, res: req.Resources, pools: req.Pools, ports: req.Host.Ports}
	if dec.Placed() && len(req.Dynamic) > 0 {
		// Chosen over the same snapshot, under the same lock, so that
		// the next choice sees them taken.
		h.dynamic, h.ports = pickDynamic(&nodes[snap.index[dec.NodeID]], &req)
	}
	took = time.Since(start)
	if dec.Placed() {
		c.mu.Lock()
		c.holdLocked(name, h)
		c.inflight[name] = h
		c.mu.Unlock()
	}
	return dec, h, took
}

// spreadLocked counts where the other replicas of name's service are
// (placed, or held for a placement in flight; being deleted or not: they
// still run), for placement to apply the service's spread; nil for a
// workload that no service with a spread owns. It looks at that
// service's replicas only (byService: every replica carries the service's
// name as its ServiceLabel). c.mu is held.
func (c *Cache) spreadLocked(name string, nodes []placement.Node) *placement.GroupSpread {
	e := c.workloads[name]
	if e == nil {
		return nil
	}
	o := e.w.GetOwner()
	sp := o.GetSpread()
	if o.GetServiceUid() == "" || (sp.GetMaxPerNode() == 0 && sp.GetNodeLabel() == "") {
		return nil
	}
	g := &placement.GroupSpread{MaxPerNode: int(sp.GetMaxPerNode()), Label: sp.GetNodeLabel(),
		PerNode: map[string]int{}, PerValue: map[string]int{}}
	c.serviceMembersLocked(o.GetService(), func(n string, other *workload) {
		if n == name || other.w.GetOwner().GetServiceUid() != o.GetServiceUid() {
			return
		}
		node := other.assignment.GetNodeId()
		if h, ok := c.inflight[n]; ok && h.node != "" {
			node = h.node
		}
		if node != "" {
			g.PerNode[node]++
		}
	})
	if g.Label != "" {
		for i := range nodes {
			if n := g.PerNode[nodes[i].ID]; n > 0 {
				g.PerValue[nodes[i].Labels[g.Label]] += n
			}
		}
	}
	return g
}

// pickDynamic chooses the dynamic ports of req on n (Place found room)
// and returns them with every host port the placement holds there.
func pickDynamic(n *placement.Node, req *placement.Request) ([]uint32, []hostaccess.Port) {
	chosen, _ := placement.PickDynamic(n, req, nil)
	return chosen, append(slices.Clip(req.Host.Ports), boundDynamic(req.Dynamic, chosen)...)
}

// boundDynamic is the dynamic ports with their chosen numbers.
func boundDynamic(dyn []hostaccess.Port, chosen []uint32) []hostaccess.Port {
	out := make([]hostaccess.Port, 0, len(chosen))
	for i, p := range chosen {
		if i < len(dyn) {
			b := dyn[i]
			b.Port = p
			out = append(out, b)
		}
	}
	return out
}

// Release gives back what Choose held for a placement that did not
// commit.
func (c *Cache) Release(name string, h Hold) {
	c.placeMu.Lock()
	defer c.placeMu.Unlock()
	c.mu.Lock()
	defer c.mu.Unlock()
	delete(c.inflight, name)
	if c.snap == nil || c.snap.held[name] != h.node {
		return
	}
	c.snap.adjust(h, -1)
	delete(c.snap.held, name)
}

// Placement is a placement the scheduler committed.
type Placement struct {
	Name string
	// WorkloadRev is the workload's revision the placement was decided
	// on.
	WorkloadRev int64
	// Moved is true for a move off a live node (a drain), whose old node
	// keeps its share until the move ends.
	Moved      bool
	Assignment *persysv1.Assignment
	Status     *persysv1.WorkloadStatus
	// Rev is the revision of the commit.
	Rev int64
}

// Placed records a committed placement and wakes the workload's
// subscribers, unless the workload changed meanwhile (the watch then
// brings what is current) or the watch brought this assignment first.
func (c *Cache) Placed(p Placement) {
	c.placeMu.Lock()
	defer c.placeMu.Unlock()
	c.mu.Lock()
	defer c.mu.Unlock()
	delete(c.inflight, p.Name)
	e := c.workloads[p.Name]
	if e == nil {
		c.invalidateLocked()
		return
	}
	if e.assignRev < p.Rev && e.rev != p.WorkloadRev {
		return
	}
	// A move off a live node (drain) changes the snapshot: the old node is
	// released when the move ends, so rebuild it. Off a lost node the
	// snapshot still counts the workload there, which no placement sees
	// (the node is not ready) until the node returns, and that rebuilds
	// the snapshot (SetAlive): not rebuilding keeps a mass reschedule
	// incremental.
	if e.assignRev < p.Rev && p.Moved {
		c.invalidateLocked()
	}
	if p.Rev > e.assignRev {
		c.setAssignmentLocked(p.Name, e, p.Assignment, p.Rev)
	}
	if e.x != nil {
		e.x.pending, e.x.moveBlocked = nil, ""
		e.tidy()
	}
	if p.Rev > e.statusRev {
		c.setStatusLocked(e, p.Status, p.Rev)
	}
	c.notifyLocked(p.Name)
}

// holdLocked adds a placement of name to the snapshot, building it first
// if needed. Callers hold placeMu and mu.
func (c *Cache) holdLocked(name string, h Hold) {
	if c.snap == nil {
		c.snap = c.buildSnapshotLocked()
	}
	if e := c.workloads[name]; e != nil {
		name = e.name(name)
	}
	c.snap.hold(name, h)
}

func (p *snapshot) hold(name string, h Hold) {
	if p.held[name] == h.node {
		return
	}
	p.adjust(h, 1)
	p.held[name] = h.node
}

// assignmentChangedLocked accounts for an assignment the watch brought: one
// this scheduler already holds in the snapshot changes nothing; any other
// drops the snapshot.
func (c *Cache) assignmentChangedLocked(name string, a *persysv1.Assignment) {
	if c.snap != nil && a.GetPreviousNodeId() == "" && a.GetNodeId() != "" && c.snap.held[name] == a.GetNodeId() {
		return
	}
	c.invalidateLocked()
}

// adjust adds (sign 1) or removes (sign -1) a workload's demand on its
// node.
func (p *snapshot) adjust(h Hold, sign int64) {
	i, ok := p.index[h.node]
	if !ok {
		return
	}
	n := &p.nodes[i]
	if sign > 0 {
		n.Allocated = n.Allocated.Add(h.res)
	} else {
		n.Allocated = n.Allocated.Sub(h.res)
	}
	if len(h.ports) > 0 {
		// Shared with earlier copies of the snapshot, as pools are.
		n.Ports = adjustPorts(n.Ports, h.ports, sign)
	}
	if pools := h.pools; len(pools) > 0 {
		// The pools slice is shared with earlier copies of the snapshot
		// handed to placements: copy before writing.
		n.Pools = slices.Clone(n.Pools)
		for _, pd := range pools {
			for j := range n.Pools {
				if n.Pools[j].Name == pd.Name {
					n.Pools[j].Allocated += sign * pd.Bytes
				}
			}
		}
	}
}

func (c *Cache) buildSnapshotLocked() *snapshot {
	alloc := make(map[string]model.Resources, len(c.nodes))
	for _, e := range c.workloads {
		if !c.holdsLocked(e) {
			continue
		}
		if id := e.assignment.GetNodeId(); id != "" {
			alloc[id] = alloc[id].Add(fromProtoResources(e.w.GetSpec().GetResources()))
		}
		if id := e.assignment.GetPreviousNodeId(); id != "" {
			alloc[id] = alloc[id].Add(fromProtoResources(e.w.GetSpec().GetResources()))
		}
	}
	poolAlloc := c.poolAllocationsLocked("")
	ports := c.portsHeldLocked()
	out := make([]placement.Node, 0, len(c.nodes))
	for id, ne := range c.nodes {
		caps := ne.node.GetCapabilities()
		rts := make([]model.WorkloadType, 0, len(caps.GetRuntimes()))
		for _, r := range caps.GetRuntimes() {
			rts = append(rts, model.WorkloadType(r))
		}
		var pools []placement.Pool
		for _, p := range caps.GetStoragePools() {
			pools = append(pools, placement.Pool{Name: p.GetName(), Capacity: p.GetCapacityBytes(), Allocated: poolAlloc[id][p.GetName()], Free: p.GetFreeBytes()})
		}
		// An agent refuses work past its utilization threshold: place
		// against what it admits (older agents: their capacity).
		capacity := caps.GetAllocatable()
		if capacity == nil {
			capacity = caps.GetCapacity()
		}
		out = append(out, placement.Node{
			ID: id, Ready: ne.alive, Cordoned: ne.node.GetCordoned(), Runtimes: rts, Labels: caps.GetLabels(),
			Capacity: fromProtoResources(capacity), Allocated: alloc[id],
			Accel: caps.GetVmAccel(), Pools: pools,
			Policy:       specaccess.PolicyFromProto(caps.GetPolicy()),
			Ports:        append(append(ports[id], usedPorts(caps)...), c.blockedPortsLocked(id)...),
			DynamicFirst: caps.GetDynamicPorts().GetFirst(),
			DynamicLast:  caps.GetDynamicPorts().GetLast(),
		})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	snap := &snapshot{nodes: out, index: make(map[string]int, len(out)), held: map[string]string{}}
	for i, n := range out {
		snap.index[n.ID] = i
	}
	// Placements chosen and not yet committed (or committed and not yet
	// in the cache) count too.
	for name, h := range c.inflight {
		if e := c.workloads[name]; e != nil && e.assignment.GetNodeId() != h.node {
			snap.hold(name, h)
		}
	}
	return snap
}

// poolAllocationsLocked sums, per node (or node only when not "") and
// pool, the disks of the workloads assigned there (a moving workload
// counts on both nodes).
func (c *Cache) poolAllocationsLocked(only string) map[string]map[string]int64 {
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

// portsHeldLocked lists, per node, the host ports of the workloads that
// hold their place there (a moving workload on both nodes).
func (c *Cache) portsHeldLocked() map[string][]hostaccess.Port {
	out := map[string][]hostaccess.Port{}
	for _, e := range c.workloads {
		spec := e.w.GetSpec()
		dyn, prevDyn := e.assignment.GetDynamicHostPorts(), e.assignment.GetPreviousDynamicHostPorts()
		if (!hasHostPorts(spec) && len(dyn) == 0 && len(prevDyn) == 0) || !c.holdsLocked(e) {
			continue
		}
		ports := hostNeeds(spec).Ports
		for _, id := range [...]string{e.assignment.GetNodeId(), e.assignment.GetPreviousNodeId()} {
			if id != "" {
				out[id] = append(out[id], ports...)
			}
		}
		// Dynamic ports differ per node: those chosen on node_id, and
		// during a move those the old copy holds on previous_node_id.
		if id := e.assignment.GetNodeId(); id != "" && len(dyn) > 0 {
			out[id] = append(out[id], boundDynamic(specaccess.DynamicPorts(spec), dyn)...)
		}
		if id := e.assignment.GetPreviousNodeId(); id != "" && len(prevDyn) > 0 {
			out[id] = append(out[id], boundDynamic(specaccess.DynamicPorts(spec), prevDyn)...)
		}
	}
	return out
}

// hostNeeds is what a spec asks of its host: the host_access derived at
// apply when the spec carries it, else read from the spec's fields (specs
// stored before host_access existed).
func hostNeeds(spec *persysv1.WorkloadSpec) hostaccess.Needs {
	if h := spec.GetHostAccess(); h != nil {
		return specaccess.FromProto(h)
	}
	return specaccess.Of(spec)
}

// hasHostPorts is a cheap test that spares the snapshot reading the needs
// of the many workloads that publish no host port.
func hasHostPorts(spec *persysv1.WorkloadSpec) bool {
	if h := spec.GetHostAccess(); h != nil {
		return len(h.GetPorts()) > 0
	}
	for _, p := range spec.GetContainer().GetPorts() {
		if p.GetHostPort() > 0 {
			return true
		}
	}
	for _, nw := range spec.GetVm().GetNetworks() {
		if len(nw.GetPortForwards()) > 0 {
			return true
		}
	}
	return false
}

// usedPorts are the host ports the node's agent reports bound by something
// Persys did not start.
func usedPorts(caps *persysv1.NodeCapabilities) []hostaccess.Port {
	used := caps.GetUsedHostPorts()
	if len(used) == 0 {
		return nil
	}
	out := make([]hostaccess.Port, len(used))
	for i, p := range used {
		out[i] = specaccess.PortFromProto(p)
	}
	return out
}

// adjustPorts returns taken with ports added (sign > 0) or removed, one
// instance each. It never writes into taken, which earlier copies of the
// snapshot share.
func adjustPorts(taken, ports []hostaccess.Port, sign int64) []hostaccess.Port {
	if sign > 0 {
		return append(slices.Clip(taken), ports...)
	}
	out := slices.Clone(taken)
	for _, p := range ports {
		if i := slices.Index(out, p); i >= 0 {
			out = slices.Delete(out, i, i+1)
		}
	}
	return out
}

// poolDemands lists, sorted by pool name, what a workload's VM disks need
// on each storage pool.
func poolDemands(spec *persysv1.WorkloadSpec) []placement.PoolDemand {
	m := manifest.PoolDemand(spec)
	if len(m) == 0 {
		return nil
	}
	out := make([]placement.PoolDemand, 0, len(m))
	for name, b := range m {
		out = append(out, placement.PoolDemand{Name: name, Bytes: b})
	}
	slices.SortFunc(out, func(a, b placement.PoolDemand) int { return strings.Compare(a.Name, b.Name) })
	return out
}

func fromProtoResources(r *persysv1.Resources) model.Resources {
	return model.Resources{CPUMillis: r.GetCpuMillis(), MemoryBytes: r.GetMemoryBytes(), DiskBytes: r.GetDiskBytes()}
}
