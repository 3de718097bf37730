package probe

import (
	"context"
	"sync"
	"time"

	persysv1 "github.com/persys-dev/compute/api/persys/v1"
)

// Options configure a Prober.
type Options struct {
	Checks Checks
	Target Target
	// Started is when the instance started; start periods count from it.
	// Zero: now.
	Started time.Time
	// OnChange is called, from the Prober's goroutine, with each snapshot
	// that differs from the previous one (health, readiness, output or a
	// liveness failure). It must not block for long and must not call
	// Stop.
	OnChange func(Snapshot)
	// OnResult is called after every check with its kind, type and result
	// (for metrics).
	OnResult func(kind string, typ persysv1.HealthCheckType, ok bool)
	// Second is the length of the checks' seconds; zero is time.Second.
	// Tests shorten it.
	Second time.Duration
}

// Prober runs the checks of one instance in its own goroutine until Stop
// or its context ends; after a liveness failure it stops checking.
type Prober struct {
	cancel context.CancelFunc
	done   chan struct{}

	mu   sync.Mutex
	snap Snapshot
}

// Start starts a Prober for opts under ctx.
func Start(ctx context.Context, opts Options) *Prober {
	if opts.Second <= 0 {
		opts.Second = time.Second
	}
	if opts.Started.IsZero() {
		opts.Started = time.Now()
	}
	ctx, cancel := context.WithCancel(ctx)
	st := newState(opts.Checks)
	p := &Prober{cancel: cancel, done: make(chan struct{}), snap: st.initial()}
	go p.run(ctx, opts, st)
	return p
}

// Snapshot returns the latest snapshot.
func (p *Prober) Snapshot() Snapshot {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.snap
}

// Stop ends the Prober and waits for its goroutine.
func (p *Prober) Stop() {
	p.cancel()
	<-p.done
}

// due is when each kind of check runs next.
type due struct {
	kind string
	at   time.Time
}

func (p *Prober) run(ctx context.Context, opts Options, st *state) {
	defer close(p.done)
	var sched []*due
	add := func(kind string, hc interface{ GetStartPeriodSeconds() int32 }) {
		at := opts.Started.Add(time.Duration(hc.GetStartPeriodSeconds()) * opts.Second)
		sched = append(sched, &due{kind: kind, at: at})
	}
	c := opts.Checks
	if c.Startup != nil {
		add(Startup, c.Startup)
	}
	if c.Liveness != nil {
		add(Liveness, c.Liveness)
	}
	if c.Readiness != nil {
		add(Readiness, c.Readiness)
	}
	timer := time.NewTimer(0)
	defer timer.Stop()
	for {
		next := p.nextDue(sched, st)
		if next == nil {
			<-ctx.Done()
			return
		}
		timer.Reset(time.Until(next.at))
		select {
		case <-ctx.Done():
			return
		case <-timer.C:
		}
		hc := st.tracker(next.kind).hc
		r := Run(ctx, hc, opts.Target, opts.Second)
		if ctx.Err() != nil {
			return
		}
		next.at = time.Now().Add(scaled(hc.GetIntervalSeconds(), DefaultInterval, opts.Second))
		if opts.OnResult != nil {
			opts.OnResult(next.kind, hc.GetType(), r.OK)
		}
		snap := st.record(next.kind, r, time.Now())
		p.mu.Lock()
		changed := snap != p.snap
		p.snap = snap
		p.mu.Unlock()
		if changed && opts.OnChange != nil {
			opts.OnChange(snap)
		}
		if snap.LivenessFailed {
			// The instance is to be stopped: checking it further would
			// only repeat the failure.
			<-ctx.Done()
			return
		}
	}
}

// nextDue is the earliest check that may run: only the startup check
// until it passed, then the others.
func (p *Prober) nextDue(sched []*due, st *state) *due {
	var best *due
	for _, d := range sched {
		if d.kind != Startup && !st.started() {
			continue
		}
		if d.kind == Startup && st.started() {
			continue
		}
		if best == nil || d.at.Before(best.at) {
			best = d
		}
	}
	return best
}
