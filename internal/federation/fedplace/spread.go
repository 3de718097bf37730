package fedplace

import (
	"fmt"
	"maps"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/persys-dev/compute/internal/federation/fedapi"
)

// Spread divides a service's replicas among the clusters of a resolved
// placement (p.Clusters set, see Resolve) at now. A cluster whose health
// makes a failover due (FailoverDue) is out: its share goes to the
// others in proportion to their weights, and comes back to it once it is
// Ready again. Weights are p.Counts, else p.Weights, else equal; fill
// puts every replica on the first cluster that is not out. The division
// is exact (largest remainder; ties go to the earlier cluster of the
// placement), so counts summing to the replicas are kept as they are.
// ok is false when every cluster is out or weighs nothing: the caller
// keeps its last division. reason says which clusters were left out.
func Spread(p fedapi.Placement, replicas int, health map[string]fedapi.Health, now time.Time) (shares fedapi.Shares, reason string, ok bool) {
	weights := p.Counts
	if len(weights) == 0 {
		weights = p.Weights
	}
	type part struct {
		cluster string
		w       int
	}
	var (
		in  []part
		out []string
	)
	for _, c := range p.Clusters {
		if FailoverDue(p, health[c], now) {
			out = append(out, fmt.Sprintf("%s is %s past the failover grace", c, health[c].State))
			continue
		}
		w := 1
		if len(weights) > 0 {
			w = weights[c]
		}
		if p.Strategy == fedapi.StrategyFill && len(in) > 0 {
			w = 0
		}
		in = append(in, part{c, w})
	}
	total := 0
	for _, x := range in {
		total += x.w
	}
	if total == 0 {
		return nil, "no cluster of the placement can take replicas: " + strings.Join(out, "; "), false
	}
	shares = fedapi.Shares{}
	type rem struct {
		i int
		r int
	}
	given, rems := 0, make([]rem, 0, len(in))
	for i, x := range in {
		n := replicas * x.w / total
		shares[x.cluster] = n
		given += n
		rems = append(rems, rem{i, replicas * x.w % total})
	}
	// Stable: equal remainders keep the placement's order.
	sort.SliceStable(rems, func(a, b int) bool { return rems[a].r > rems[b].r })
	for k := 0; given < replicas; k++ {
		shares[in[rems[k%len(rems)].i].cluster]++
		given++
	}
	for c, n := range shares {
		if n == 0 {
			delete(shares, c)
		}
	}
	reason = "spread " + FormatShares(shares)
	if len(out) > 0 {
		reason += " (" + strings.Join(out, "; ") + ")"
	}
	return shares, reason, true
}

// FormatShares writes shares as a=2,b=2 in name order.
func FormatShares(s fedapi.Shares) string {
	parts := make([]string, 0, len(s))
	for _, c := range slices.Sorted(maps.Keys(s)) {
		parts = append(parts, fmt.Sprintf("%s=%d", c, s[c]))
	}
	return strings.Join(parts, ",")
}
