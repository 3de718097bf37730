// Package health owns the member health state machine: one pure step
// that takes a member's last health, the outcome of one probe of its
// gateway and the time, and returns the new health and the transition to
// report. It treats a member as the scheduler treats a node's lease: a
// member is Ready while probes reach it, Unreachable once they fail, and
// Lost when nothing reached it for longer than the grace period. No I/O,
// no clock: the caller probes and passes the time in.
package health

import (
	"time"

	"github.com/persys-dev/compute/internal/federation/fedapi"
)

// Summary is what a successful probe learnt from the member's gateway.
type Summary struct {
	Leader                                    string
	NodesTotal, NodesReady, Workloads         int32
	CPUCapacityMillis, CPUAllocatedMillis     int64
	MemoryCapacityBytes, MemoryAllocatedBytes int64
}

// Probe is the outcome of one probe: Err nil means Summary is valid.
type Probe struct {
	At      time.Time
	Err     error
	Summary Summary
}

// Transition says which state change a step made; None when the state
// stayed the same.
type Transition string

// Transitions, named by the state entered.
const (
	None          Transition = ""
	ToReady       Transition = Transition(fedapi.StateReady)
	ToUnreachable Transition = Transition(fedapi.StateUnreachable)
	ToLost        Transition = Transition(fedapi.StateLost)
)

// Initial is the health of a member that has just joined at joinedAt.
func Initial(joinedAt time.Time) fedapi.Health {
	return fedapi.Health{State: fedapi.StatePending, Since: joinedAt}
}

// Step returns the health after probe p given the previous health prev of
// a member that joined at joinedAt. A member is Lost when the last
// contact (or, never contacted, the join) is at least grace before p.At.
func Step(prev fedapi.Health, p Probe, joinedAt time.Time, grace time.Duration) (fedapi.Health, Transition) {
	next := prev
	if next.State == "" {
		next = Initial(joinedAt)
	}
	next.LastProbe = p.At
	if p.Err == nil {
		s := p.Summary
		next.Reachable, next.LastContact, next.LastError = true, p.At, ""
		next.Leader, next.NodesTotal, next.NodesReady, next.Workloads = s.Leader, s.NodesTotal, s.NodesReady, s.Workloads
		next.CPUCapacityMillis, next.CPUAllocatedMillis = s.CPUCapacityMillis, s.CPUAllocatedMillis
		next.MemoryCapacityBytes, next.MemoryAllocatedBytes = s.MemoryCapacityBytes, s.MemoryAllocatedBytes
		return enter(next, fedapi.StateReady, p.At)
	}
	next.Reachable, next.LastError = false, p.Err.Error()
	since := next.LastContact
	if since.IsZero() {
		since = joinedAt
	}
	if p.At.Sub(since) >= grace {
		return enter(next, fedapi.StateLost, p.At)
	}
	if next.State == fedapi.StateLost {
		// Lost stays lost until a probe succeeds, even if the grace
		// is raised later.
		return next, None
	}
	return enter(next, fedapi.StateUnreachable, p.At)
}

func enter(h fedapi.Health, s fedapi.State, at time.Time) (fedapi.Health, Transition) {
	if h.State == s {
		return h, None
	}
	h.State, h.Since = s, at
	return h, Transition(s)
}
