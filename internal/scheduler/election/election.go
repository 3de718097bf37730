// Package election makes a scheduler one replica of several: it campaigns
// through the store's election (etcd's concurrency recipe), runs the
// leader's term while this replica leads, stands by in between, and knows
// who leads so that followers can name the leader. It owns the leading
// flag and the leader's address; it knows nothing of what a term does.
//
// Callers make an Elector with New and call Run with the term's function;
// Leading and Leader may be called at any time, from any goroutine.
package election

import (
	"context"
	"errors"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/cenkalti/backoff/v5"

	"github.com/persys-dev/compute/internal/store"
)

// Config configures an Elector.
type Config struct {
	// Store holds the election.
	Store *store.Store
	// Address is this replica's ControlService address as clients reach
	// it: what followers hand out as the leader's address.
	Address string
	// TTL bounds how long a dead leader keeps its seat (default 5s).
	TTL time.Duration
	// Alone makes Run lead at once and until its context ends: one
	// scheduler, no election (Store and Address unused).
	Alone bool
	// Elected, when set, is called each time this replica wins, before its
	// term starts.
	Elected func()
	// Logger defaults to slog.Default().
	Logger *slog.Logger
}

// Elector campaigns for one replica.
type Elector struct {
	cfg     Config
	leading atomic.Bool
	// leader is the current leader's address (a string; "" when unknown).
	leader atomic.Value
}

// New makes an Elector; it leads nothing until Run.
func New(cfg Config) (*Elector, error) {
	if !cfg.Alone && (cfg.Store == nil || cfg.Address == "") {
		return nil, errors.New("election: Config.Store and Config.Address are required unless Config.Alone")
	}
	if cfg.TTL <= 0 {
		cfg.TTL = 5 * time.Second
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	return &Elector{cfg: cfg}, nil
}

// Leading reports whether this replica leads now.
func (e *Elector) Leading() bool { return e.leading.Load() }

// Leader is the leader's address as last observed; "" when nobody is
// known to lead (and always when Alone).
func (e *Elector) Leader() string {
	v, _ := e.leader.Load().(string)
	return v
}

// Run leads with term until ctx ends: at once when Alone, otherwise each
// time this replica wins the election, standing by as a follower in
// between. A term's context ends when the replica loses its seat; an
// error a term returns is logged and the replica campaigns again.
func (e *Elector) Run(ctx context.Context, term func(ctx context.Context) error) error {
	if e.cfg.Alone {
		e.leading.Store(true)
		return term(ctx)
	}
	log := e.cfg.Logger
	// Session failures (etcd unreachable) back off with jitter, so that
	// replicas do not retry in step; capped low so a follower stays ready
	// to take over.
	retry := backoff.NewExponentialBackOff()
	retry.InitialInterval, retry.MaxInterval, retry.RandomizationFactor, retry.Multiplier = time.Second, 5*time.Second, 0.5, 2
	for ctx.Err() == nil {
		el, err := e.cfg.Store.NewElection(ctx, e.cfg.TTL)
		if err != nil {
			wait := retry.NextBackOff()
			log.Error("election session", "err", err, "retry_in", wait.Round(time.Millisecond).String())
			if !sleep(ctx, wait) {
				return nil
			}
			continue
		}
		retry.Reset()
		if e.serve(ctx, el, term) {
			return nil
		}
	}
	return nil
}

// serve observes who leads, campaigns, and runs one term if elected, all
// within one session el, which it closes; it reports whether ctx ended
// during the campaign.
func (e *Elector) serve(ctx context.Context, el *store.Election, term func(ctx context.Context) error) (done bool) {
	log := e.cfg.Logger
	defer el.Close()
	octx, ocancel := context.WithCancel(ctx)
	observed := make(chan struct{})
	go func() {
		defer close(observed)
		for addr := range el.Observe(octx) {
			if addr != e.Leader() {
				log.Info("leader observed", "leader", addr)
			}
			e.leader.Store(addr)
		}
	}()
	defer func() { ocancel(); <-observed }()
	if addr, err := el.Leader(ctx); err == nil {
		e.leader.Store(addr)
	}
	log.Info("campaigning for leadership", "address", e.cfg.Address)
	if err := el.Campaign(ctx, e.cfg.Address); err != nil {
		if ctx.Err() != nil {
			return true
		}
		log.Warn("campaign ended", "err", err)
		return false
	}
	start := time.Now()
	e.leader.Store(e.cfg.Address)
	e.leading.Store(true)
	log.Info("elected leader", "address", e.cfg.Address)
	if e.cfg.Elected != nil {
		e.cfg.Elected()
	}
	lctx, lcancel := context.WithCancel(ctx)
	go func() {
		select {
		case <-el.Done():
			log.Warn("election session lost; stepping down")
		case <-lctx.Done():
		}
		lcancel()
	}()
	if err := term(lctx); err != nil {
		log.Error("leader loop", "err", err)
	}
	lcancel()
	ocancel()
	<-observed
	// Name nobody until the next session observes who leads: this replica
	// no longer does, and one cut off from etcd cannot know who does
	// (naming itself would send clients back to it). Cleared before it
	// turns follower, so no refusal ever names itself.
	e.leader.CompareAndSwap(e.cfg.Address, "")
	e.leading.Store(false)
	log.Info("no longer leader", "led_for", time.Since(start).Round(time.Millisecond).String())
	return false
}

func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}
