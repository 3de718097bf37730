package servicectl

import (
	"cmp"
	"fmt"
	"slices"
	"time"
)

// State is what a replica is, for the decision.
type State int

const (
	// Starting: placed or being created, or its node stopped reporting.
	Starting State = iota
	// Ready: it runs the revision asked for (and, once health checks
	// exist, passes its readiness check).
	Ready
	// Failed: it gave up (or keeps failing its starts).
	Failed
)

// Instance is one replica workload of the service.
type Instance struct {
	Name string
	// Hash is the template hash of the revision it runs; Index is its
	// index among the replicas of that hash (from its name).
	Hash  string
	Index int
	// Deleting: its delete was asked for; it still holds its place until
	// it is gone, but is never available.
	Deleting bool
	State    State
	// ReadySince is when it became ready (meaningful when Ready).
	ReadySince time.Time
	// DrainingSince is when it left the endpoints to be removed (zero:
	// it is not draining). A draining replica holds its place, is never
	// available, and is deleted once out for Policy.DrainDelay.
	DrainingSince time.Time
}

// draining reports whether i left the endpoints to be removed.
func (i Instance) draining() bool { return !i.DrainingSince.IsZero() }

// Policy is the update policy, with durations.
type Policy struct {
	MaxUnavailable, MaxSurge int
	MinReady                 time.Duration
	// ProgressDeadline 0 means no deadline.
	ProgressDeadline time.Duration
	AutoRollback     bool
	Canary           int
	Paused           bool
	// DrainDelay is how long a replica stays out of the endpoints before
	// it is deleted (0: deleted at once).
	DrainDelay time.Duration
}

// Phase is where the rollout stands.
type Phase int

// Phases, as persysv1.RolloutPhase.
const (
	PhaseUnspecified Phase = iota
	PhaseProgressing
	PhaseComplete
	PhasePaused
	PhaseAwaitingPromotion
	PhaseFailed
	PhaseRollingBack
)

var phaseNames = [...]string{"Unspecified", "Progressing", "Complete", "Paused", "AwaitingPromotion", "Failed", "RollingBack"}

func (p Phase) String() string {
	if int(p) < len(phaseNames) {
		return phaseNames[p]
	}
	return fmt.Sprintf("Phase(%d)", int(p))
}

// Progress is what the decision remembers between steps (stored with the
// service's status).
type Progress struct {
	// Revision is the target revision of the last step.
	Revision uint64
	Phase    Phase
	// CurrentGood completed last, PreviousGood before it (0: none).
	CurrentGood, PreviousGood uint64
	// ProgressAt is when the update last made progress; the deadline
	// counts from it.
	ProgressAt time.Time
	// UpdatedAvailable is how many target replicas were available.
	UpdatedAvailable int
	// RolledBackFrom is the revision an automatic rollback left.
	RolledBackFrom uint64
	// Counts, for the status.
	Replicas, Ready, Updated, Available int
	Message                             string
}

// Input is everything one decision needs.
type Input struct {
	Now     time.Time
	Service string
	// Replicas is how many the service asks for.
	Replicas int
	Policy   Policy
	// Target is the revision the spec's template is, and its hash.
	Target     uint64
	TargetHash string
	// Promoted: rollout promote let the target's canary update go on.
	Promoted  bool
	Prior     Progress
	Instances []Instance
}

// Create is one replica to create from the target revision.
type Create struct {
	Name  string
	Index int
}

// Decision is one step: what to create, what to take out of the
// endpoints (Drain: the caller records Now as their DrainingSince) and
// what to delete, the revision to roll
// back to (0: none; the caller rewrites the template, and nothing else is
// done in this step), the progress to record, and when to look again even
// if nothing changes (zero: only on change).
type Decision struct {
	Create     []Create
	Drain      []string
	Delete     []string
	RollbackTo uint64
	Progress   Progress
	RecheckAt  time.Time
}

// ReplicaName is the name of replica index of the revision with hash: the
// service name, the hash's first 8 characters and the index.
func ReplicaName(service, hash string, index int) string {
	if len(hash) > hashLen {
		hash = hash[:hashLen]
	}
	return fmt.Sprintf("%s-%s-%d", service, hash, index)
}

const hashLen = 8

// view is the counted instances of one step.
type view struct {
	in                  *Input
	newer, older        []Instance // not deleting
	total               int        // every instance, deleting ones included
	ready, newAvailable int
	available           int
	rollout             bool
}

func (in *Input) available(i Instance) bool {
	return !i.Deleting && !i.draining() && i.State == Ready && !in.Now.Before(i.ReadySince.Add(in.Policy.MinReady))
}

func count(in *Input) view {
	v := view{in: in, total: len(in.Instances)}
	for _, i := range in.Instances {
		if i.Deleting || i.draining() {
			continue
		}
		if i.State == Ready {
			v.ready++
		}
		if in.available(i) {
			v.available++
		}
		if sameHash(i.Hash, in.TargetHash) {
			v.newer = append(v.newer, i)
			if in.available(i) {
				v.newAvailable++
			}
		} else {
			v.older = append(v.older, i)
		}
	}
	// An update is under way until the target revision completed once.
	v.rollout = in.Target != in.Prior.CurrentGood || len(v.older) > 0
	return v
}

// sameHash compares a full hash with one that may be shortened (names
// carry 8 characters).
func sameHash(a, b string) bool {
	n := min(len(a), len(b), hashLen)
	return n > 0 && a[:n] == b[:n]
}

// Decide takes one step of the service's rollout. It never makes the
// instances exceed Replicas+MaxSurge, never deletes an available replica
// when fewer than Replicas-MaxUnavailable would stay available, stops an
// update whose new replicas fail or whose deadline passed (and rolls back
// to the last good revision when AutoRollback), holds a canary update at
// Canary new replicas until Promoted, and holds a paused one.
func Decide(in Input) Decision {
	v := count(&in)
	p := in.Prior
	p.Message = ""
	if in.Target != p.Revision {
		// A new target: the deadline starts now; a rollback's mark stays
		// only while the target is the revision it returned to.
		if in.Target != p.CurrentGood {
			p.RolledBackFrom = 0
		}
		p.ProgressAt, p.UpdatedAvailable = in.Now, 0
		if p.Phase == PhaseFailed {
			p.Phase = PhaseProgressing
		}
	}
	p.Revision = in.Target
	if v.newAvailable > p.UpdatedAvailable || p.ProgressAt.IsZero() {
		p.ProgressAt = in.Now
	}
	p.UpdatedAvailable = v.newAvailable
	p.Replicas, p.Ready, p.Updated, p.Available = len(v.newer)+len(v.older), v.ready, len(v.newer), v.available
	d := Decision{}
	if stop, ok := v.failure(&p); ok {
		d.Progress = p
		if stop.rollbackTo != 0 {
			d.RollbackTo = stop.rollbackTo
			d.Progress.Phase, d.Progress.RolledBackFrom = PhaseRollingBack, in.Target
		} else {
			d.Progress.Phase = PhaseFailed
		}
		d.Progress.Message = stop.why
		if d.RollbackTo == 0 {
			d.Delete = v.drained()
			d.RecheckAt = v.drainEnd()
		}
		return d
	}
	if in.Policy.Paused && v.rollout {
		// Paused time does not count against the deadline.
		p.Phase, p.ProgressAt, p.Message = PhasePaused, in.Now, "update paused"
		d.Progress = p
		d.Delete = v.drained()
		d.RecheckAt = earliest(v.nextAvailable(), v.drainEnd())
		return d
	}
	newTarget := v.newTarget()
	d.Drain, d.Delete = v.removals(v.deletions(newTarget))
	d.Create = v.creations(newTarget)
	p.Phase = v.phase(newTarget, &p)
	if p.Phase == PhaseAwaitingPromotion {
		p.ProgressAt = in.Now
		p.Message = fmt.Sprintf("%d canary replica(s) of revision %d available; promote to go on", v.newAvailable, in.Target)
	}
	if p.Phase == PhaseComplete && p.CurrentGood != in.Target {
		p.PreviousGood, p.CurrentGood = p.CurrentGood, in.Target
	}
	d.Progress = p
	d.RecheckAt = earliest(v.recheck(&p), v.drainEnd())
	if len(d.Drain) > 0 {
		// The drains this step starts end after the delay; nothing else
		// may wake the service then.
		d.RecheckAt = earliest(d.RecheckAt, in.Now.Add(in.Policy.DrainDelay))
	}
	return d
}

// removals turns the replicas chosen for removal into drains, with the
// draining replicas whose delay passed as the deletions; with no drain
// delay everything chosen is deleted at once.
func (v *view) removals(chosen []string) (drain, del []string) {
	del = v.drained()
	if v.in.Policy.DrainDelay <= 0 {
		return nil, append(del, chosen...)
	}
	return chosen, del
}

// drained lists the draining replicas out of the endpoints for the drain
// delay (all of them when there is no delay any more).
func (v *view) drained() []string {
	var out []string
	for _, i := range v.in.Instances {
		if i.draining() && !i.Deleting && !v.in.Now.Before(i.DrainingSince.Add(v.in.Policy.DrainDelay)) {
			out = append(out, i.Name)
		}
	}
	return out
}

// drainEnd is when the next draining replica may be deleted (zero: none
// waits).
func (v *view) drainEnd() time.Time {
	var t time.Time
	for _, i := range v.in.Instances {
		if i.draining() && !i.Deleting {
			if at := i.DrainingSince.Add(v.in.Policy.DrainDelay); at.After(v.in.Now) {
				t = earliest(t, at)
			}
		}
	}
	return t
}

// earliest is the earlier of two times, zero meaning none.
func earliest(a, b time.Time) time.Time {
	if a.IsZero() || (!b.IsZero() && b.Before(a)) {
		return b
	}
	return a
}

type stopReason struct {
	rollbackTo uint64
	why        string
}

// failure says whether the update must stop: a new replica failed, or
// no progress for ProgressDeadline. A stopped update stays stopped until
// the target changes.
func (v *view) failure(p *Progress) (stopReason, bool) {
	in := v.in
	if !v.rollout || v.targetDone() {
		// A target revision all available is no failing update, even one
		// that failed on the way (slow starts past the deadline).
		return stopReason{}, false
	}
	if p.Phase == PhaseFailed {
		return stopReason{why: p.Message}, true
	}
	why := ""
	for _, i := range v.newer {
		if i.State == Failed {
			why = fmt.Sprintf("replica %s of revision %d failed", i.Name, in.Target)
			break
		}
	}
	if why == "" && in.Policy.ProgressDeadline > 0 && !in.Policy.Paused &&
		in.Now.Sub(p.ProgressAt) > in.Policy.ProgressDeadline && !v.holdingCanary() {
		why = fmt.Sprintf("revision %d made no progress for %s (progress deadline)", in.Target, in.Policy.ProgressDeadline)
	}
	if why == "" {
		return stopReason{}, false
	}
	if in.Policy.AutoRollback && p.CurrentGood != 0 && p.CurrentGood != in.Target {
		return stopReason{rollbackTo: p.CurrentGood, why: why + fmt.Sprintf("; rolling back to revision %d", p.CurrentGood)}, true
	}
	return stopReason{why: why + "; update stopped"}, true
}

// targetDone: exactly Replicas replicas, all of the target revision and
// available.
func (v *view) targetDone() bool {
	return len(v.older) == 0 && len(v.newer) == v.in.Replicas && v.newAvailable >= v.in.Replicas
}

// canaryActive: the update holds at Canary new replicas. A return to a
// revision that completed before (undo, rollback) is no canary.
func (v *view) canaryActive() bool {
	in := v.in
	return in.Policy.Canary > 0 && !in.Promoted && v.rollout && in.Prior.CurrentGood != 0 &&
		in.Target != in.Prior.CurrentGood && in.Target != in.Prior.PreviousGood
}

func (v *view) holdingCanary() bool {
	return v.canaryActive() && v.newAvailable >= min(v.in.Policy.Canary, v.in.Replicas)
}

func (v *view) newTarget() int {
	if v.canaryActive() {
		return min(v.in.Policy.Canary, v.in.Replicas)
	}
	return v.in.Replicas
}

// deletions picks the replicas to delete: failed ones of a finished
// revision and unavailable old ones (no availability lost), then surplus
// new ones and old ones within the availability budget.
func (v *view) deletions(newTarget int) []string {
	in := v.in
	budget := v.available - (in.Replicas - in.Policy.MaxUnavailable)
	var out []string
	take := func(i Instance) {
		if in.available(i) {
			budget--
		}
		out = append(out, i.Name)
	}
	newer := slices.Clone(v.newer)
	if !v.rollout {
		// A failed replica of a good revision is replaced.
		newer = slices.DeleteFunc(newer, func(i Instance) bool {
			if i.State == Failed {
				take(i)
				return true
			}
			return false
		})
	}
	// Surplus new replicas (scale down): unavailable first, then the
	// highest index.
	sortForDeletion(in, newer)
	for k := 0; k < len(newer)-newTarget; k++ {
		if i := newer[k]; !in.available(i) || budget > 0 {
			take(i)
		}
	}
	older := slices.Clone(v.older)
	sortForDeletion(in, older)
	keep := in.Replicas - newTarget // old replicas a canary update keeps
	left := len(older)
	for _, i := range older {
		if !in.available(i) {
			take(i)
			left--
		}
	}
	for _, i := range older {
		if in.available(i) && budget > 0 && left > keep {
			take(i)
			left--
		}
	}
	return out
}

// sortForDeletion orders instances unavailable first, then by highest
// index.
func sortForDeletion(in *Input, is []Instance) {
	slices.SortStableFunc(is, func(a, b Instance) int {
		aa, ba := in.available(a), in.available(b)
		if aa != ba {
			if !aa {
				return -1
			}
			return 1
		}
		if c := cmp.Compare(a.Hash, b.Hash); c != 0 {
			return c
		}
		return cmp.Compare(b.Index, a.Index)
	})
}

// creations adds new replicas up to newTarget, as room under
// Replicas+MaxSurge allows (instances being deleted still take room).
func (v *view) creations(newTarget int) []Create {
	in := v.in
	alive := len(v.newer)
	if !v.rollout {
		for _, i := range v.newer {
			if i.State == Failed {
				alive-- // deleted this step
			}
		}
	}
	need := newTarget - alive
	room := in.Replicas + in.Policy.MaxSurge - v.total
	n := min(need, room)
	if n <= 0 {
		return nil
	}
	used := map[int]bool{}
	for _, i := range in.Instances {
		if sameHash(i.Hash, in.TargetHash) {
			used[i.Index] = true
		}
	}
	out := make([]Create, 0, n)
	for idx := 0; len(out) < n; idx++ {
		if !used[idx] {
			out = append(out, Create{Name: ReplicaName(in.Service, in.TargetHash, idx), Index: idx})
		}
	}
	return out
}

func (v *view) phase(newTarget int, p *Progress) Phase {
	in := v.in
	switch {
	case !v.rollout && len(v.newer) != in.Replicas:
		return PhaseProgressing // scaling
	case !v.rollout || v.targetDone():
		return PhaseComplete
	case v.canaryActive() && v.newAvailable >= newTarget:
		return PhaseAwaitingPromotion
	case p.RolledBackFrom != 0:
		return PhaseRollingBack
	}
	return PhaseProgressing
}

// nextAvailable is when the next ready replica becomes available.
func (v *view) nextAvailable() time.Time {
	var t time.Time
	for _, i := range v.in.Instances {
		if i.Deleting || i.draining() || i.State != Ready {
			continue
		}
		at := i.ReadySince.Add(v.in.Policy.MinReady)
		if at.After(v.in.Now) && (t.IsZero() || at.Before(t)) {
			t = at
		}
	}
	return t
}

func (v *view) recheck(p *Progress) time.Time {
	t := v.nextAvailable()
	if (p.Phase == PhaseProgressing || p.Phase == PhaseRollingBack) && v.in.Policy.ProgressDeadline > 0 {
		at := p.ProgressAt.Add(v.in.Policy.ProgressDeadline + time.Second)
		if t.IsZero() || at.Before(t) {
			t = at
		}
	}
	return t
}
