package statecache

// Reads for the API and the metrics: copies, never the cache's own
// records.

import (
	"sort"

	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/persys-dev/compute/api/persys/contract"
	persysv1 "github.com/persys-dev/compute/api/persys/v1"
)

// WorkloadView is the cached part of workload name's view (no events);
// nil when there is none.
func (c *Cache) WorkloadView(name string) *persysv1.WorkloadView {
	c.mu.Lock()
	defer c.mu.Unlock()
	e := c.workloads[name]
	if e == nil {
		return nil
	}
	v := &persysv1.WorkloadView{Workload: e.w, Status: e.status.proto(e.w), Assignment: e.assignment.proto(e.w)}
	if v.Status == nil {
		v.Status = &persysv1.WorkloadStatus{Name: name, Uid: e.w.GetUid(), State: persysv1.ActualState_ACTUAL_STATE_PENDING}
	}
	if p := e.retry().pending; e.assignment == nil && p != nil {
		v.Assignment = &persysv1.Assignment{Name: name, Uid: e.w.GetUid(), Decision: p}
	}
	return v
}

// WorkloadNames lists, sorted, the workloads whose labels match selector.
func (c *Cache) WorkloadNames(selector map[string]string) []string {
	c.mu.Lock()
	var names []string
	if service, ok := selector[ServiceLabel]; ok {
		// A service's replicas: its index entry, not every workload.
		c.serviceMembersLocked(service, func(name string, e *workload) {
			if matchLabels(e.w.GetLabels(), selector) {
				names = append(names, name)
			}
		})
	} else {
		names = make([]string, 0, len(c.workloads))
		for name, e := range c.workloads {
			if matchLabels(e.w.GetLabels(), selector) {
				names = append(names, name)
			}
		}
	}
	c.mu.Unlock()
	sort.Strings(names)
	return names
}

func matchLabels(labels, selector map[string]string) bool {
	for k, v := range selector {
		if labels[k] != v {
			return false
		}
	}
	return true
}

// NodeViews returns the nodes (or node only when not "") with live usage
// and allocation, sorted by id.
func (c *Cache) NodeViews(only string) []*persysv1.Node {
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

func addResources(a, b *persysv1.Resources) *persysv1.Resources {
	return &persysv1.Resources{CpuMillis: a.GetCpuMillis() + b.GetCpuMillis(),
		MemoryBytes: a.GetMemoryBytes() + b.GetMemoryBytes(), DiskBytes: a.GetDiskBytes() + b.GetDiskBytes()}
}

// Stats counts workloads by observed state, and nodes ready and not.
func (c *Cache) Stats() (byState map[persysv1.ActualState]int, ready, notReady int) {
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

// StateCounts counts the workloads by observed state (Stats without the
// walk over the nodes).
func (c *Cache) StateCounts() map[persysv1.ActualState]int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.stateCountsLocked()
}

// Summary counts nodes, capacity and workloads by state (no leader).
func (c *Cache) Summary() *persysv1.ClusterSummary {
	out := &persysv1.ClusterSummary{WorkloadsByState: map[string]int32{}, Capacity: &persysv1.Resources{}, Allocated: &persysv1.Resources{}}
	// Totals only: no per-node views (copies of every node), so that a
	// dashboard polling a large cluster costs little and holds the lock
	// briefly.
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
