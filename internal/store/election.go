package store

import (
	"context"
	"errors"
	"fmt"
	"time"

	"go.etcd.io/etcd/client/v3/concurrency"
)

// Election is one scheduler replica's seat in the leader election under
// prefix/election, held by an etcd session (a lease the client keeps
// alive). When the session ends — the process died or lost etcd for longer
// than the TTL — the seat is free for another replica.
type Election struct {
	session  *concurrency.Session
	election *concurrency.Election
}

// NewElection opens a session with the given TTL (at least 1 s).
func (s *Store) NewElection(ctx context.Context, ttl time.Duration) (*Election, error) {
	secs := int(ttl / time.Second)
	if secs < 1 {
		secs = 1
	}
	sess, err := concurrency.NewSession(s.cli, concurrency.WithTTL(secs), concurrency.WithContext(ctx))
	if err != nil {
		return nil, fmt.Errorf("store: election session: %w", err)
	}
	return &Election{session: sess, election: concurrency.NewElection(sess, s.dir("election"))}, nil
}

// Campaign blocks until this replica leads (or ctx ends); value is what
// Leader reports, the replica's address.
func (e *Election) Campaign(ctx context.Context, value string) error {
	if err := e.election.Campaign(ctx, value); err != nil {
		return fmt.Errorf("store: campaign: %w", err)
	}
	return nil
}

// Done is closed when the session, and with it any leadership, is lost.
func (e *Election) Done() <-chan struct{} { return e.session.Done() }

// Leader returns the current leader's value, or "" when nobody leads.
func (e *Election) Leader(ctx context.Context) (string, error) {
	resp, err := e.election.Leader(ctx)
	if errors.Is(err, concurrency.ErrElectionNoLeader) {
		return "", nil
	}
	if err != nil {
		return "", fmt.Errorf("store: leader: %w", err)
	}
	if len(resp.Kvs) == 0 {
		return "", nil
	}
	return string(resp.Kvs[0].Value), nil
}

// Observe sends the leader's value each time leadership changes, until ctx
// ends.
func (e *Election) Observe(ctx context.Context) <-chan string {
	out := make(chan string, 1)
	go func() {
		defer close(out)
		for resp := range e.election.Observe(ctx) {
			if len(resp.Kvs) == 0 {
				continue
			}
			select {
			case out <- string(resp.Kvs[0].Value):
			case <-ctx.Done():
				return
			}
		}
	}()
	return out
}

// Close resigns (if leading) and ends the session.
func (e *Election) Close() {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	_ = e.election.Resign(ctx)
	_ = e.session.Close()
}
