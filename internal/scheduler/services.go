package scheduler

// Wiring of the service controller (internal/servicectl): it acts on
// replicas through this scheduler's workload API, so they take the path
// user workloads take, and runs while this replica leads (lead). Nothing
// else of the scheduler knows about services.

import (
	"github.com/persys-dev/compute/internal/scheduler/controlapi"
	"github.com/persys-dev/compute/internal/servicectl"
	"github.com/persys-dev/compute/internal/store"
)

func (s *Scheduler) newServiceController() error {
	c, err := servicectl.New(servicectl.Config{Store: s.store, Workloads: s, Events: s.events,
		Logger: s.log.With("controller", "service"), Now: s.cfg.Now, Registry: s.cfg.Registry})
	if err != nil {
		return err
	}
	s.services = c
	// Replicas' changes come from the cache the controller reads them
	// from, once they are in it; the controller watches only services.
	s.cache.SetChangeHook(func(name string) {
		if svc := store.ServiceOfReplica(name); svc != "" {
			c.Enqueue(svc)
		}
	})
	return nil
}

// Services is the service controller's API, for the ControlService.
func (s *Scheduler) Services() controlapi.Services { return s.services }

// Interface guard: the controller acts through the scheduler.
var _ servicectl.Workloads = (*Scheduler)(nil)
