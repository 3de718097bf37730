// Package fedplace owns the federation's placement rules, as pure
// functions over what the store holds: checking a placement block against
// the members (names or a label selector, strategy, weights or counts,
// failover), resolving it to member clusters, choosing the member of a
// workload's revision (fill: the first reachable cluster in preference
// order that has not refused it), dividing a service's replicas among
// members (spread, with failover of a lost member's share), and reading a
// member's answer as a refusal for capacity (the member's own placement
// found no node that fits). No I/O, no clock.
package fedplace

import (
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	persysv1 "github.com/persys-dev/compute/api/persys/v1"
	"github.com/persys-dev/compute/internal/federation/fedapi"
	"github.com/persys-dev/compute/internal/gateway/httperr"
)

// Members are the member clusters as placement sees them: name to labels.
type Members map[string]map[string]string

// ValidateWorkload checks a federated workload's placement block against
// the members, naming the first invalid field.
func ValidateWorkload(p fedapi.Placement, members Members) error {
	if err := validateTargets(p, members); err != nil {
		return err
	}
	switch p.Strategy {
	case "", fedapi.StrategyFill:
	default:
		return httperr.Field("placement.strategy", fmt.Sprintf("%q: a workload runs in one cluster; must be %s (the default); spread divides a service's replicas", p.Strategy, fedapi.StrategyFill))
	}
	if len(p.Weights) > 0 || len(p.Counts) > 0 {
		return httperr.Field("placement.weights", "weights and counts divide a service's replicas; a workload runs in one cluster")
	}
	return validateFailover(p)
}

// ValidateService checks a federated service's placement block against
// the members and the service's replicas, naming the first invalid field.
func ValidateService(p fedapi.Placement, members Members, replicas int) error {
	if err := validateTargets(p, members); err != nil {
		return err
	}
	switch p.Strategy {
	case "", fedapi.StrategySpread, fedapi.StrategyFill:
	default:
		return httperr.Field("placement.strategy", fmt.Sprintf("%q: must be %s (the default for a service) or %s", p.Strategy, fedapi.StrategySpread, fedapi.StrategyFill))
	}
	if (len(p.Weights) > 0 || len(p.Counts) > 0) && p.Strategy == fedapi.StrategyFill {
		return httperr.Field("placement.strategy", "weights and counts need strategy spread")
	}
	if len(p.Weights) > 0 && len(p.Counts) > 0 {
		return httperr.Field("placement.counts", "give weights or counts, not both")
	}
	targets := Targets(p, members)
	if err := validateDivision("placement.weights", p.Weights, targets); err != nil {
		return err
	}
	if err := validateDivision("placement.counts", p.Counts, targets); err != nil {
		return err
	}
	if len(p.Counts) > 0 {
		sum := 0
		for _, n := range p.Counts {
			sum += n
		}
		if sum != replicas {
			return httperr.Field("placement.counts", fmt.Sprintf("the counts add up to %d; spec.replicas is %d", sum, replicas))
		}
	}
	return validateFailover(p)
}

func validateDivision(field string, m map[string]int, targets []string) error {
	if len(m) == 0 {
		return nil
	}
	total := 0
	for _, c := range slices.Sorted(maps.Keys(m)) {
		if !slices.Contains(targets, c) {
			return httperr.Field(field+"."+c, fmt.Sprintf("%q is not a cluster of the placement (%s)", c, strings.Join(targets, ", ")))
		}
		if m[c] < 0 {
			return httperr.Field(field+"."+c, fmt.Sprintf("%d: must not be negative", m[c]))
		}
		total += m[c]
	}
	if total == 0 && field == "placement.weights" {
		return httperr.Field(field, "at least one weight must be above 0")
	}
	return nil
}

// validateTargets checks clusters or clusterSelector: exactly one, every
// named cluster a member and named once, a selector matching a member.
func validateTargets(p fedapi.Placement, members Members) error {
	if len(p.Clusters) > 0 && len(p.ClusterSelector) > 0 {
		return httperr.Field("placement.clusterSelector", "give clusters or clusterSelector, not both")
	}
	if len(p.ClusterSelector) > 0 {
		for k := range p.ClusterSelector {
			if strings.TrimSpace(k) == "" {
				return httperr.Field("placement.clusterSelector", "a label key is empty")
			}
		}
		if len(Targets(p, members)) == 0 {
			return httperr.Field("placement.clusterSelector", fmt.Sprintf("%s matches no member cluster", formatSelector(p.ClusterSelector)))
		}
		return nil
	}
	if len(p.Clusters) == 0 {
		return httperr.Field("placement.clusters", "required: the member clusters that may run it, in preference order (or clusterSelector: labels of member clusters)")
	}
	seen := map[string]bool{}
	for i, c := range p.Clusters {
		field := fmt.Sprintf("placement.clusters[%d]", i)
		if _, ok := members[c]; !ok {
			return httperr.Field(field, fmt.Sprintf("%q is not a member cluster of the federation", c))
		}
		if seen[c] {
			return httperr.Field(field, fmt.Sprintf("%q is listed twice", c))
		}
		seen[c] = true
	}
	return nil
}

func validateFailover(p fedapi.Placement) error {
	if p.Failover != nil {
		if _, err := FailoverGrace(p); err != nil {
			return err
		}
	}
	return nil
}

// Targets are the member clusters a placement may use, in preference
// order: its clusters that are members, or the members its selector
// matches, by name.
func Targets(p fedapi.Placement, members Members) []string {
	if len(p.ClusterSelector) == 0 {
		out := make([]string, 0, len(p.Clusters))
		for _, c := range p.Clusters {
			if _, ok := members[c]; ok {
				out = append(out, c)
			}
		}
		return out
	}
	var out []string
	for _, name := range slices.Sorted(maps.Keys(members)) {
		if matches(p.ClusterSelector, members[name]) {
			out = append(out, name)
		}
	}
	return out
}

// Resolve returns p with Clusters set to its targets among members.
func Resolve(p fedapi.Placement, members Members) fedapi.Placement {
	p.Clusters = Targets(p, members)
	return p
}

func matches(sel, labels map[string]string) bool {
	for k, v := range sel {
		if got, ok := labels[k]; !ok || got != v {
			return false
		}
	}
	return true
}

func formatSelector(sel map[string]string) string {
	parts := make([]string, 0, len(sel))
	for _, k := range slices.Sorted(maps.Keys(sel)) {
		parts = append(parts, k+"="+sel[k])
	}
	return strings.Join(parts, ",")
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
