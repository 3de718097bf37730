package store

// A placement stores its assignment and no status: the SCHEDULED status
// that follows from the assignment is derived by every reader instead
// (Load, Watch, WatchAll, GetStatus, ReadServiceReplicas). That saves one
// key write per placement, applied by every etcd member, on the hottest
// path. The rule: an assignment whose mod revision is newer than the
// stored status (or that has none) stands for ScheduledStatus(assignment);
// a status written later, or in the same transaction, is the status.

import (
	"fmt"

	persysv1 "github.com/persys-dev/compute/api/persys/v1"
	"github.com/persys-dev/compute/internal/placement"
)

// ScheduledStatus is the status a placed workload has until its node
// reports: SCHEDULED on the assignment's node at its revision, as of the
// placement.
func ScheduledStatus(a *persysv1.Assignment) *persysv1.WorkloadStatus {
	return &persysv1.WorkloadStatus{
		Name:      a.GetName(),
		Uid:       a.GetUid(),
		State:     persysv1.ActualState_ACTUAL_STATE_SCHEDULED,
		NodeId:    a.GetNodeId(),
		Revision:  a.GetRevision(),
		UpdatedAt: a.GetPlacedAt(),
		Message:   placedMessage(a),
	}
}

// placedMessage says where a workload went and out of how many nodes.
// The decision keeps no count of the nodes scanned: above FullScanNodes a
// scan that found SampleSize feasible nodes stopped there (or ended
// exactly at the last node, which the same words describe).
func placedMessage(a *persysv1.Assignment) string {
	d := a.GetDecision()
	switch {
	case d == nil:
		return "placed on " + a.GetNodeId()
	case d.GetTotalNodes() > placement.FullScanNodes && d.GetFeasibleNodes() >= placement.SampleSize:
		return fmt.Sprintf("placed on %s (best of %d feasible nodes sampled from %d)", a.GetNodeId(), d.GetFeasibleNodes(), d.GetTotalNodes())
	default:
		return fmt.Sprintf("placed on %s (%d of %d nodes feasible)", a.GetNodeId(), d.GetFeasibleNodes(), d.GetTotalNodes())
	}
}

// statusStands reports whether a stored status at statusRev (0: none)
// is the workload's status rather than the one its assignment at
// assignRev (0: none) implies.
func statusStands(statusRev, assignRev int64) bool {
	return assignRev == 0 || (statusRev != 0 && statusRev >= assignRev)
}

// withDerivedStatuses returns changes (decoded events, in etcd's order)
// as they read when placements wrote the status too: after each
// assignment put the status it implies, and after each workload delete
// the delete of its status (a status never stored has no delete event),
// unless a status of the same key changed in the same revision.
func withDerivedStatuses(changes []Change) []Change {
	implied := 0
	for _, c := range changes {
		if impliesStatus(c) {
			implied++
		}
	}
	if implied == 0 {
		return changes
	}
	type keyRev struct {
		key string
		rev int64
	}
	written := map[keyRev]bool{}
	for _, c := range changes {
		if c.Kind == KindStatus {
			written[keyRev{c.Key, c.ModRevision}] = true
		}
	}
	out := make([]Change, 0, len(changes)+implied)
	for _, c := range changes {
		out = append(out, c)
		if !impliesStatus(c) || written[keyRev{c.Key, c.ModRevision}] {
			continue
		}
		st := Change{Kind: KindStatus, Key: c.Key, ModRevision: c.ModRevision, Deleted: c.Deleted}
		if !c.Deleted {
			st.Status = ScheduledStatus(c.Assignment)
		}
		out = append(out, st)
	}
	return out
}

// impliesStatus reports whether c changes the status without a status
// event: an assignment put, or the delete of the workload.
func impliesStatus(c Change) bool {
	return (c.Kind == KindAssignment && !c.Deleted) || (c.Kind == KindWorkload && c.Deleted)
}
