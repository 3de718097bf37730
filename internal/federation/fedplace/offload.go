package fedplace

import (
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/persys-dev/compute/internal/federation/fedapi"
)

// Offload moves the part of each share above its member's cap to the
// next clusters of the placement, in its order and wrapping around: a
// cluster without a cap takes all that is left, a capped one up to its
// cap, and one whose failover is due nothing. So the replicas no node of
// a member fits run elsewhere. Caps of another revision than rev do not
// count. What no cluster has room for stays where it is (pending there,
// placed when room frees up). notes say what moved and why; shares is
// not changed.
func Offload(p fedapi.Placement, shares fedapi.Shares, caps map[string]fedapi.ServiceCap, rev int64, health map[string]fedapi.Health, now time.Time) (out fedapi.Shares, notes []string) {
	capped := func(c string) (fedapi.ServiceCap, bool) {
		k, ok := caps[c]
		return k, ok && k.Revision == rev
	}
	out = fedapi.Shares{}
	for c, n := range shares {
		out[c] = n
	}
	for i, c := range p.Clusters {
		k, ok := capped(c)
		if !ok || out[c] <= k.Replicas {
			continue
		}
		excess := out[c] - k.Replicas
		var moves []string
		for j := 1; j < len(p.Clusters) && excess > 0; j++ {
			d := p.Clusters[(i+j)%len(p.Clusters)]
			if FailoverDue(p, health[d], now) {
				continue
			}
			room := excess
			if kd, ok := capped(d); ok {
				room = min(excess, kd.Replicas-out[d])
			}
			if room <= 0 {
				continue
			}
			out[d] += room
			out[c] -= room
			excess -= room
			moves = append(moves, fmt.Sprintf("%d to %s", room, d))
		}
		if len(moves) > 0 {
			notes = append(notes, fmt.Sprintf("offloaded from %s %s (%s)", c, strings.Join(moves, ", "), k.Reason))
		}
		if excess > 0 {
			notes = append(notes, fmt.Sprintf("%s keeps %d more than fit (%s): no other cluster has room", c, excess, k.Reason))
		}
	}
	for c, n := range out {
		if n == 0 {
			delete(out, c)
		}
	}
	return out, notes
}

// OffloadReason is the reason of a division with offloads.
func OffloadReason(shares fedapi.Shares, base string, notes []string) string {
	if len(notes) == 0 {
		return base
	}
	return "spread " + FormatShares(shares) + ": " + strings.Join(slices.Clip(notes), "; ") + "; before offload " + strings.TrimPrefix(base, "spread ")
}
