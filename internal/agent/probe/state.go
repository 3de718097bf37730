package probe

import (
	"time"

	persysv1 "github.com/persys-dev/compute/api/persys/v1"
)

// Kinds of checks, as they are named in statuses, events and metrics.
const (
	Startup   = "startup"
	Liveness  = "liveness"
	Readiness = "readiness"
)

// Checks are the checks of one instance; nil ones are not run.
type Checks struct {
	Startup, Liveness, Readiness *persysv1.HealthCheck
}

// Any reports whether there is a check to run.
func (c Checks) Any() bool { return c.Startup != nil || c.Liveness != nil || c.Readiness != nil }

// Snapshot is what the checks say of an instance.
type Snapshot struct {
	Health persysv1.HealthState
	Ready  bool
	// Output, CheckedAt and Check are the output, time and kind of the
	// last check whose result changed.
	Output    string
	CheckedAt time.Time
	Check     string
	// LivenessFailed: the liveness check (or the startup check) failed
	// its failure threshold; the instance must be stopped. Detail says
	// why.
	LivenessFailed bool
	Detail         string
}

// tracker is one check's run of results. The zero value has decided
// nothing; a liveness tracker starts passing (as Kubernetes assumes).
type tracker struct {
	hc      *persysv1.HealthCheck
	passing bool
	decided bool
	okRun   int
	failRun int
	// last result seen, for change detection.
	seen   bool
	lastOK bool
}

func newTracker(hc *persysv1.HealthCheck, assumePassing bool) *tracker {
	if hc == nil {
		return nil
	}
	return &tracker{hc: hc, passing: assumePassing, decided: assumePassing}
}

func threshold(v int32, def int) int {
	if v <= 0 {
		return def
	}
	return int(v)
}

// observe records one result and reports whether the result differs from
// the previous one (or is the first).
func (t *tracker) observe(ok bool) (changed bool) {
	changed = !t.seen || t.lastOK != ok
	t.seen, t.lastOK = true, ok
	if ok {
		t.okRun, t.failRun = t.okRun+1, 0
		if t.okRun >= threshold(t.hc.GetSuccessThreshold(), DefaultSuccessThreshold) {
			t.passing, t.decided = true, true
		}
		return changed
	}
	t.failRun, t.okRun = t.failRun+1, 0
	if t.failRun >= threshold(t.hc.GetFailureThreshold(), DefaultFailureThreshold) {
		t.passing, t.decided = false, true
	}
	return changed
}

// failed reports that the check failed its failure threshold.
func (t *tracker) failed() bool { return t != nil && t.decided && !t.passing }

// state is the pure core of a Prober: the trackers and the last changed
// output. It is not safe for concurrent use; the Prober's goroutine owns it.
type state struct {
	startup, liveness, readiness *tracker
	out                          Snapshot
}

func newState(c Checks) *state {
	return &state{
		startup:   newTracker(c.Startup, false),
		liveness:  newTracker(c.Liveness, true),
		readiness: newTracker(c.Readiness, false),
	}
}

// tracker returns the tracker of a kind.
func (s *state) tracker(kind string) *tracker {
	switch kind {
	case Startup:
		return s.startup
	case Liveness:
		return s.liveness
	}
	return s.readiness
}

// started reports whether the startup check (if any) passed: until then
// the other checks do not run.
func (s *state) started() bool { return s.startup == nil || s.startup.passing }

// record takes one result of kind at now and returns the new snapshot.
func (s *state) record(kind string, r Result, now time.Time) Snapshot {
	if s.tracker(kind).observe(r.OK) {
		s.out.Output, s.out.CheckedAt, s.out.Check = r.Output, now, kind
	}
	s.out.Health, s.out.Ready = s.health()
	switch {
	case s.startup.failed():
		s.out.LivenessFailed, s.out.Detail = true, "startup check failed: "+r.Output
	case s.liveness.failed():
		s.out.LivenessFailed, s.out.Detail = true, "liveness check failed: "+r.Output
	}
	return s.out
}

// health is the health state and readiness the trackers give.
func (s *state) health() (persysv1.HealthState, bool) {
	switch {
	case s.startup.failed(), s.liveness.failed():
		return persysv1.HealthState_HEALTH_STATE_UNHEALTHY, false
	case !s.started():
		return persysv1.HealthState_HEALTH_STATE_STARTING, false
	}
	ready := s.readiness == nil || s.readiness.passing
	switch {
	case s.liveness != nil && s.liveness.failRun > 0:
		return persysv1.HealthState_HEALTH_STATE_UNHEALTHY, ready
	case s.readiness != nil && !s.readiness.decided:
		return persysv1.HealthState_HEALTH_STATE_STARTING, false
	case !ready:
		return persysv1.HealthState_HEALTH_STATE_UNHEALTHY, false
	}
	return persysv1.HealthState_HEALTH_STATE_HEALTHY, true
}

// initial is the snapshot before any check ran.
func (s *state) initial() Snapshot {
	s.out.Health, s.out.Ready = s.health()
	return s.out
}
