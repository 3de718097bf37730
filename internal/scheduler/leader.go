package scheduler

import (
	"context"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/cenkalti/backoff/v5"

	"github.com/persys-dev/compute/api/persys/contract"
	persysv1 "github.com/persys-dev/compute/api/persys/v1"
	"github.com/persys-dev/compute/internal/model"
)

// ElectionConfig makes a scheduler one replica of several.
type ElectionConfig struct {
	// Address is this replica's ControlService address as clients reach it;
	// it is what followers hand out as the leader's address.
	Address string
	// TTL bounds how long a dead leader keeps its seat (default 5s).
	TTL time.Duration
}

// runElected campaigns, leads while elected, and stands by in between.
func (s *Scheduler) runElected(ctx context.Context) error {
	ttl := s.cfg.Election.TTL
	if ttl <= 0 {
		ttl = 5 * time.Second
	}
	// Session failures (etcd unreachable) back off with jitter, so that
	// replicas do not retry in step; capped low so a follower stays ready
	// to take over.
	retry := retryBackoff(time.Second, 5*time.Second)
	for ctx.Err() == nil {
		el, err := s.store.NewElection(ctx, ttl)
		if err != nil {
			wait := retry.NextBackOff()
			s.log.Error("election session", "err", err, "retry_in", wait.Round(time.Millisecond).String())
			if !sleepCtx(ctx, wait) {
				return nil
			}
			continue
		}
		retry.Reset()
		octx, ocancel := context.WithCancel(ctx)
		observed := make(chan struct{})
		go func() {
			defer close(observed)
			for addr := range el.Observe(octx) {
				if addr != s.leaderAddrString() {
					s.log.Info("leader observed", "leader", addr)
				}
				s.leaderAddr.Store(addr)
			}
		}()
		if addr, err := el.Leader(ctx); err == nil {
			s.leaderAddr.Store(addr)
		}
		s.log.Info("campaigning for leadership", "address", s.cfg.Election.Address)
		if err := el.Campaign(ctx, s.cfg.Election.Address); err != nil {
			ocancel()
			<-observed
			el.Close()
			if ctx.Err() != nil {
				return nil
			}
			s.log.Warn("campaign ended", "err", err)
			continue
		}
		start := time.Now()
		s.leaderAddr.Store(s.cfg.Election.Address)
		s.leading.Store(true)
		s.log.Info("elected leader", "address", s.cfg.Election.Address)
		s.events.Add(model.EventLeaderElected, &persysv1.Event{Message: "scheduler " + s.cfg.Election.Address + " leads"})
		lctx, lcancel := context.WithCancel(ctx)
		go func() {
			select {
			case <-el.Done():
				s.log.Warn("election session lost; stepping down")
			case <-lctx.Done():
			}
			lcancel()
		}()
		if err := s.lead(lctx); err != nil {
			s.log.Error("leader loop", "err", err)
		}
		lcancel()
		ocancel()
		<-observed
		// Name nobody until the next session observes who leads: this
		// replica no longer does, and one cut off from etcd cannot know
		// who does (naming itself would send clients back to it). Cleared
		// before it turns follower, so no refusal ever names itself.
		s.leaderAddr.CompareAndSwap(s.cfg.Election.Address, "")
		s.leading.Store(false)
		el.Close()
		s.log.Info("no longer leader", "led_for", time.Since(start).Round(time.Millisecond).String())
	}
	return nil
}

func (s *Scheduler) leaderAddrString() string {
	v, _ := s.leaderAddr.Load().(string)
	return v
}

// serving refuses calls a follower must not answer (naming the leader in
// the trailer) and calls that come before the cache is loaded.
func (s *Scheduler) serving(ctx context.Context) error {
	if !s.leading.Load() {
		leader := s.leaderAddrString()
		if leader != "" {
			_ = grpc.SetTrailer(ctx, metadata.Pairs(contract.MetadataLeader, leader))
			return status.Errorf(codes.FailedPrecondition, "not the leader; the leader is %s", leader)
		}
		return status.Error(codes.Unavailable, "no scheduler leads yet; retry shortly")
	}
	if s.Ready() != nil {
		return status.Error(codes.Unavailable, "scheduler is loading its state from etcd; retry shortly")
	}
	return nil
}

// retryBackoff is the pause schedule of a retry loop: from initial,
// growing up to maxWait, each pause randomized by ±50%.
func retryBackoff(initial, maxWait time.Duration) *backoff.ExponentialBackOff {
	b := backoff.NewExponentialBackOff()
	b.InitialInterval, b.MaxInterval, b.RandomizationFactor, b.Multiplier = initial, maxWait, 0.5, 2
	return b
}

func sleepCtx(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}
