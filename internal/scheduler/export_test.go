package scheduler

import (
	"fmt"
	"maps"
	"slices"
)

// NodeIndexDrift compares byNode with a walk over the cache and describes
// the first difference ("" when they agree). Tests call it when a
// scheduler stops.
func (s *Scheduler) NodeIndexDrift() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.nodeIndexDriftLocked()
}

func (s *Scheduler) nodeIndexDriftLocked() string {
	walk := map[string]map[string]struct{}{}
	for name, e := range s.workloads {
		if id := e.assignment.GetNodeId(); id != "" {
			if walk[id] == nil {
				walk[id] = map[string]struct{}{}
			}
			walk[id][name] = struct{}{}
		}
	}
	for _, id := range slices.Sorted(maps.Keys(walk)) {
		if !maps.Equal(walk[id], s.byNode[id]) {
			return fmt.Sprintf("node %s: index %v, cache %v", id, slices.Sorted(maps.Keys(s.byNode[id])), slices.Sorted(maps.Keys(walk[id])))
		}
	}
	for id, set := range s.byNode {
		if walk[id] == nil {
			return fmt.Sprintf("node %s: index %v, cache none", id, slices.Sorted(maps.Keys(set)))
		}
	}
	return ""
}
