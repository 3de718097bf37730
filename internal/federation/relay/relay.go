// Package relay owns the relay of member events into the federation: a
// bounded poll, each round, of the newest events of every Ready member's
// gateway, keeping those after the member's resume point (a cursor in
// the federation's store: the time of the newest relayed event and how
// many of that instant were relayed). Relayed events carry the cluster
// (and the node as CLUSTER/NODE) and expire with the federation's other
// events. A member that wrote more events between two rounds than one
// poll reads loses the oldest of them from the relay (logged as a gap);
// they stay at the member. One goroutine owns the loop.
package relay

import (
	"context"
	"errors"
	"log/slog"
	"slices"
	"sync"
	"time"

	persysv1 "github.com/persys-dev/compute/api/persys/v1"
	"github.com/persys-dev/compute/internal/federation/fedapi"
	"github.com/persys-dev/compute/internal/federation/fedstore"
	"github.com/persys-dev/compute/internal/federation/member"
)

// DefaultLimit is how many of a member's newest events one poll reads.
const DefaultLimit = 200

// Config wires a Relay.
type Config struct {
	Store  *fedstore.Store
	Lookup member.Lookup
	// Limit bounds one poll of a member; 0 means DefaultLimit.
	Limit int
	// Timeout bounds one poll; 0 means 5 s.
	Timeout time.Duration
	Logger  *slog.Logger
}

// Relay copies member events into the federation's store.
type Relay struct {
	cfg  Config
	pool *member.Pool
}

// New returns a Relay.
func New(cfg Config) *Relay {
	if cfg.Limit <= 0 {
		cfg.Limit = DefaultLimit
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = 5 * time.Second
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	return &Relay{cfg: cfg, pool: member.NewPool(cfg.Lookup, nil)}
}

// Close releases the member connections.
func (r *Relay) Close() { r.pool.Close() }

// Run relays every interval until ctx ends.
func (r *Relay) Run(ctx context.Context, interval time.Duration) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		if err := r.Round(ctx); err != nil && ctx.Err() == nil {
			r.cfg.Logger.Warn("event relay round failed", "err", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// Round polls every Ready member once, all at once.
func (r *Relay) Round(ctx context.Context) error {
	members, err := r.cfg.Store.ListMembers(ctx)
	if err != nil {
		return err
	}
	healths, err := r.cfg.Store.Healths(ctx)
	if err != nil {
		return err
	}
	errs := make([]error, len(members))
	var wg sync.WaitGroup
	for i, m := range members {
		if healths[m.Name].State != fedapi.StateReady {
			continue
		}
		wg.Go(func() { errs[i] = r.poll(ctx, m) })
	}
	wg.Wait()
	return errors.Join(errs...)
}

func (r *Relay) poll(ctx context.Context, m fedstore.Member) error {
	cur, ok, err := r.cfg.Store.GetCursor(ctx, m.Name)
	if err != nil {
		return err
	}
	if !ok {
		// A new member's history before it joined is its own.
		cur = fedstore.Cursor{Time: m.JoinedAt}
	}
	c, err := r.pool.Client(ctx, m.Name)
	if err != nil {
		return err
	}
	pctx, cancel := context.WithTimeout(ctx, r.cfg.Timeout)
	defer cancel()
	resp, err := c.ListEvents(pctx, "", r.cfg.Limit)
	if err != nil {
		return err
	}
	fresh, next, gap := After(resp.GetEvents(), cur, r.cfg.Limit)
	if gap {
		r.cfg.Logger.Warn("member wrote more events than one poll reads; the oldest of them are not relayed", "cluster", m.Name, "limit", r.cfg.Limit)
	}
	if len(fresh) == 0 {
		return nil
	}
	out := make([]fedapi.Event, 0, len(fresh))
	for _, e := range fresh {
		out = append(out, Relayed(m.Name, e))
	}
	if err := r.cfg.Store.RelayEvents(ctx, m.Name, out, next); err != nil && !errors.Is(err, fedstore.ErrNotFound) {
		return err
	}
	return nil
}

// After returns, oldest first, the events of a poll that come after cur,
// the cursor after them, and whether the poll may have missed events
// (it read limit events and all of them are new).
func After(evs []*persysv1.Event, cur fedstore.Cursor, limit int) (fresh []*persysv1.Event, next fedstore.Cursor, gap bool) {
	sorted := slices.Clone(evs)
	slices.SortStableFunc(sorted, func(a, b *persysv1.Event) int { return a.GetTime().AsTime().Compare(b.GetTime().AsTime()) })
	next = cur
	sameInstant := 0
	for _, e := range sorted {
		t := e.GetTime().AsTime()
		switch {
		case t.Before(cur.Time):
			continue
		case t.Equal(cur.Time):
			sameInstant++
			if sameInstant <= cur.Seen {
				continue
			}
		}
		fresh = append(fresh, e)
		if t.Equal(next.Time) {
			next.Seen++
		} else {
			next = fedstore.Cursor{Time: t, Seen: 1}
		}
	}
	return fresh, next, limit > 0 && len(evs) >= limit && len(fresh) == len(evs)
}

// Relayed is a member event as the federation keeps it: the cluster
// named, the node as CLUSTER/NODE.
func Relayed(cluster string, e *persysv1.Event) fedapi.Event {
	node := cluster
	if e.GetNodeId() != "" {
		node = cluster + "/" + e.GetNodeId()
	}
	out := fedapi.Event{Time: e.GetTime().AsTime().UTC(), Type: e.GetType(), Cluster: cluster, Workload: e.GetWorkload(), NodeID: node, Message: e.GetMessage()}
	if e.GetReason() != persysv1.FailureReason_FAILURE_REASON_UNSPECIFIED {
		out.Reason = e.GetReason().String()
	}
	return out
}
