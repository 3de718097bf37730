package scheduler

import (
	"context"
	"errors"
	"fmt"

	persysv1 "github.com/persys-dev/compute/api/persys/v1"
	"github.com/persys-dev/compute/internal/placement"
	"github.com/persys-dev/compute/internal/scheduler/statecache"
	"github.com/persys-dev/compute/internal/store"
)

// pendingReason is the status reason of a workload no node takes: the
// policy or port reason when it rules out every node (the caller knows
// what to change), else NO_FEASIBLE_NODE.
func pendingReason(d placement.Decision) persysv1.FailureReason {
	if len(d.Rejections) == 0 {
		return persysv1.FailureReason_FAILURE_REASON_NO_FEASIBLE_NODE
	}
	every := func(r placement.RejectReason) bool {
		for _, rej := range d.Rejections {
			if !rej.All.Has(r) {
				return false
			}
		}
		return true
	}
	switch {
	case every(placement.PolicyDenied):
		return persysv1.FailureReason_FAILURE_REASON_POLICY_DENIED
	case every(placement.PortConflict):
		return persysv1.FailureReason_FAILURE_REASON_PORT_CONFLICT
	}
	return persysv1.FailureReason_FAILURE_REASON_NO_FEASIBLE_NODE
}

// repickDynamic gives workload name new dynamic host ports on its node
// when its start there failed PORT_CONFLICT (st): something outside
// Persys holds one of the ports chosen (bound after the node's last
// report, or an outgoing connection, which no report lists), so the same
// ports would fail at every retry. The old ports stay out of that node's
// range for a while and the next attempt, after the usual backoff, uses
// the new ones. It returns what to add to the attempt's message ("" when
// nothing changed).
func (s *Scheduler) repickDynamic(ctx context.Context, name string, v view, st *persysv1.WorkloadStatus) string {
	old := v.assign.GetDynamicHostPorts()
	node := v.assign.GetNodeId()
	if st.GetReason() != persysv1.FailureReason_FAILURE_REASON_PORT_CONFLICT || len(old) == 0 ||
		node == "" || st.GetNodeId() != node {
		return ""
	}
	chosen, ok := s.cache.RepickDynamic(name, node, v.w.GetSpec(), old, s.cfg.Now().Add(statecache.PortBlockFor))
	if !ok {
		s.cache.RepickDone(name, v.rev, nil, 0)
		return fmt.Sprintf("; host ports %v are taken on %s and its dynamic range has no others free", old, node)
	}
	a := v.assign.Proto()
	a.DynamicHostPorts = chosen
	// The status stays what it is: the attempt's own is written after.
	rev, err := s.store.CommitPlacementRev(ctx, a, s.cache.StatusOn(name, node), v.rev, v.assignRv)
	if err != nil {
		s.cache.RepickDone(name, v.rev, nil, 0)
		if !errors.Is(err, store.ErrConflict) && ctx.Err() == nil {
			s.log.Warn("new dynamic ports", "workload", name, "node", node, "err", err)
		}
		return ""
	}
	s.cache.RepickDone(name, v.rev, a, rev)
	s.log.Info("dynamic ports taken on the node: new ones chosen", "workload", name, "node", node, "taken", old, "chosen", chosen)
	return fmt.Sprintf("; host ports %v are taken on %s by something else: the next attempt uses %v", old, node, chosen)
}
