// Package fedplace owns the federation's placement rules, as pure
// functions over what the store holds: checking a placement block against
// the members, choosing the member for a revision (fill: the first
// reachable cluster in preference order that has not refused it), and
// reading a member's answer as a refusal for capacity (the member's own
// placement found no node that fits). No I/O, no clock.
package fedplace

import (
	"fmt"
	"strings"
	"time"

	persysv1 "github.com/persys-dev/compute/api/persys/v1"
	"github.com/persys-dev/compute/internal/federation/fedapi"
	"github.com/persys-dev/compute/internal/gateway/httperr"
)

// Validate checks a placement block against the member names, naming the
// first invalid field.
func Validate(p fedapi.Placement, members map[string]bool) error {
	if len(p.Clusters) == 0 {
		return httperr.Field("placement.clusters", "required: the member clusters that may run it, in preference order")
	}
	seen := map[string]bool{}
	for i, c := range p.Clusters {
		field := fmt.Sprintf("placement.clusters[%d]", i)
		if !members[c] {
			return httperr.Field(field, fmt.Sprintf("%q is not a member cluster of the federation", c))
		}
		if seen[c] {
			return httperr.Field(field, fmt.Sprintf("%q is listed twice", c))
		}
		seen[c] = true
	}
	if p.Strategy != "" && p.Strategy != fedapi.StrategyFill {
		return httperr.Field("placement.strategy", fmt.Sprintf("%q: must be %s (the default)", p.Strategy, fedapi.StrategyFill))
	}
	if p.Failover != nil {
		if _, err := FailoverGrace(p); err != nil {
			return err
		}
	}
	return nil
}

// minFailoverGrace keeps a failover from racing the member probes.
const minFailoverGrace = time.Second

// FailoverGrace is the placement's failover grace; 0 without failover.
func FailoverGrace(p fedapi.Placement) (time.Duration, error) {
	if p.Failover == nil {
		return 0, nil
	}
	d, err := time.ParseDuration(p.Failover.Grace)
	if err != nil || d < minFailoverGrace {
		return 0, httperr.Field("placement.failover.grace", fmt.Sprintf("%q: must be a duration of at least %s, such as 30s", p.Failover.Grace, minFailoverGrace))
	}
	return d, nil
}

// FailoverDue reports whether a workload on a member with health h must
// move at now: failover is set, the member is not Ready, and its last
// contact (or, never reached, the time it entered its state) is at least
// the grace ago.
func FailoverDue(p fedapi.Placement, h fedapi.Health, now time.Time) bool {
	grace, err := FailoverGrace(p)
	if grace == 0 || err != nil || h.State == fedapi.StateReady {
		return false
	}
	since := h.LastContact
	if since.IsZero() {
		since = h.Since
	}
	return !since.IsZero() && now.Sub(since) >= grace
}

// Choose returns the member for revision rev: the first cluster of the
// placement that is Ready and has not refused rev. ok is false when none
// is left; reason then says why each was passed over.
func Choose(p fedapi.Placement, rev int64, health map[string]fedapi.Health, refusals []fedapi.Refusal) (cluster, reason string, ok bool) {
	var skipped []string
	for _, c := range p.Clusters {
		if r, refused := refusedAt(refusals, c, rev); refused {
			skipped = append(skipped, c+" refused it: "+r)
			continue
		}
		h, known := health[c]
		if !known || h.State != fedapi.StateReady {
			state := fedapi.StatePending
			if known {
				state = h.State
			}
			skipped = append(skipped, fmt.Sprintf("%s is %s", c, state))
			continue
		}
		if len(skipped) == 0 {
			return c, "first cluster of the placement, and ready", true
		}
		return c, strings.Join(skipped, "; ") + "; so " + c, true
	}
	return "", "no cluster of the placement can take it: " + strings.Join(skipped, "; "), false
}

func refusedAt(refusals []fedapi.Refusal, cluster string, rev int64) (string, bool) {
	for _, r := range refusals {
		if r.Cluster == cluster && r.Revision == rev {
			return r.Reason, true
		}
	}
	return "", false
}

// CapacityRefusal reports whether a member's view says that no node of
// the member fits the workload (it stays Pending for it), with the
// member's reason.
func CapacityRefusal(v *persysv1.WorkloadView) (string, bool) {
	st := v.GetStatus()
	if st.GetState() != persysv1.ActualState_ACTUAL_STATE_PENDING {
		return "", false
	}
	switch st.GetReason() {
	case persysv1.FailureReason_FAILURE_REASON_NO_FEASIBLE_NODE, persysv1.FailureReason_FAILURE_REASON_INSUFFICIENT_RESOURCES:
		return "no node fits: " + st.GetMessage(), true
	}
	return "", false
}
