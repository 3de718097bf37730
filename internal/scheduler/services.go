package scheduler

// Wiring of the service controller (internal/servicectl): it acts on
// replicas through this scheduler's workload API, so they take the path
// user workloads take, and runs while this replica leads (lead). Nothing
// else of the scheduler knows about services.

import (
	persysv1 "github.com/persys-dev/compute/api/persys/v1"
	"github.com/persys-dev/compute/internal/placement"
	"github.com/persys-dev/compute/internal/scheduler/controlapi"
	"github.com/persys-dev/compute/internal/servicectl"
)

func (s *Scheduler) newServiceController() error {
	c, err := servicectl.New(servicectl.Config{Store: s.store, Workloads: s, Events: s.events,
		Logger: s.log.With("controller", "service"), Now: s.cfg.Now, Registry: s.cfg.Registry})
	if err != nil {
		return err
	}
	s.services = c
	return nil
}

// Services is the service controller's API, for the ControlService.
func (s *Scheduler) Services() controlapi.Services { return s.services }

// Interface guard: the controller acts through the scheduler.
var _ servicectl.Workloads = (*Scheduler)(nil)

// spreadFor counts where the other replicas of w's service are (placed or
// held for a placement in flight, being deleted or not: they still run),
// for placement to apply the service's spread; nil for a workload no
// service with a spread owns. It walks the cached workloads: a cost per
// replica placement that grows with the cluster, to be replaced by an
// index by owner once the cache is its own package.
func (s *Scheduler) spreadFor(name string, w *persysv1.Workload, nodes []placement.Node) *placement.GroupSpread {
	o := w.GetOwner()
	sp := o.GetSpread()
	if o.GetServiceUid() == "" || (sp.GetMaxPerNode() == 0 && sp.GetNodeLabel() == "") {
		return nil
	}
	g := &placement.GroupSpread{MaxPerNode: int(sp.GetMaxPerNode()), Label: sp.GetNodeLabel(),
		PerNode: map[string]int{}, PerValue: map[string]int{}}
	s.mu.Lock()
	for n, e := range s.workloads {
		if n == name || e.w.GetOwner().GetServiceUid() != o.GetServiceUid() {
			continue
		}
		node := e.assignment.GetNodeId()
		if h, ok := s.batches.inflight[n]; ok && h.node != "" {
			node = h.node
		}
		if node != "" {
			g.PerNode[node]++
		}
	}
	s.mu.Unlock()
	if g.Label != "" {
		for i := range nodes {
			if c := g.PerNode[nodes[i].ID]; c > 0 {
				g.PerValue[nodes[i].Labels[g.Label]] += c
			}
		}
	}
	return g
}
