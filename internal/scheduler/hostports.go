package scheduler

import (
	persysv1 "github.com/persys-dev/compute/api/persys/v1"
	"github.com/persys-dev/compute/internal/placement"
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
