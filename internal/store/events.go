package store

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	persysv1 "github.com/persys-dev/compute/api/persys/v1"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"
)

const (
	// DefaultEventLimit is what ListEvents returns when limit <= 0.
	DefaultEventLimit = 100
	// eventWindows: one event lease is shared by the events of one
	// EventTTL/eventWindows window.
	eventWindows     = 10
	eventScanBatch   = 512
	eventPutAttempts = 5
)

// eventKey sorts by time, then by seq: 20-digit zero-padded unix nanos and
// a zero-padded per-store sequence number.
func (s *Store) eventKey(t time.Time, seq uint64) string {
	return fmt.Sprintf("%s%020d-%010d", s.dir(dirEvents), t.UnixNano(), seq%1e10)
}

// eventLease returns the lease for events written now, granting one per
// EventTTL/10 window with a TTL of EventTTL plus one window, so that every
// event lives at least EventTTL. forget drops a lease that etcd no longer
// knows.
func (s *Store) eventLease(ctx context.Context, now time.Time, forget clientv3.LeaseID) (clientv3.LeaseID, uint64, error) {
	s.evMu.Lock()
	defer s.evMu.Unlock()
	if forget != 0 && s.evLease == forget {
		s.evLease = 0
	}
	s.evSeq++
	seq := s.evSeq
	if s.evLease != 0 && now.Before(s.evUntil) {
		return s.evLease, seq, nil
	}
	window := s.eventTTL / eventWindows
	resp, err := s.cli.Grant(ctx, leaseSeconds(s.eventTTL+window))
	if err != nil {
		return 0, 0, fmt.Errorf("store: grant event lease: %w", err)
	}
	s.evLease, s.evUntil = resp.ID, now.Add(window)
	return s.evLease, seq, nil
}

// AppendEvent stores ev under events/; it expires after about EventTTL. A
// missing ev.Time is set to now (on a copy; ev is not modified).
func (s *Store) AppendEvent(ctx context.Context, ev *persysv1.Event) error {
	now := time.Now()
	ev, val, err := prepareEvent(ev, now)
	if err != nil {
		return err
	}
	return s.appendPrepared(ctx, ev, val, now)
}

// prepareEvent checks ev and encodes it; a missing Time is set to now on a
// copy (ev is not modified).
func prepareEvent(ev *persysv1.Event, now time.Time) (*persysv1.Event, string, error) {
	if ev == nil {
		return nil, "", fmt.Errorf("store: event: %w: nil", ErrInvalid)
	}
	if ev.GetType() == "" {
		return nil, "", fmt.Errorf("store: event type: %w: empty", ErrInvalid)
	}
	if ev.GetTime() == nil {
		ev = proto.CloneOf(ev)
		ev.Time = timestamppb.New(now)
	} else if err := ev.GetTime().CheckValid(); err != nil {
		return nil, "", fmt.Errorf("store: event time: %w: %v", ErrInvalid, err)
	}
	val, err := marshal("event", ev)
	if err != nil {
		return nil, "", err
	}
	return ev, val, nil
}

// appendPrepared writes one prepared event under a free key, taking the
// next sequence number when another writer holds the key and a new lease
// when etcd lost the current one.
func (s *Store) appendPrepared(ctx context.Context, ev *persysv1.Event, val string, now time.Time) error {
	var stale clientv3.LeaseID
	for range eventPutAttempts {
		lease, seq, err := s.eventLease(ctx, now, stale)
		if err != nil {
			return err
		}
		key := s.eventKey(ev.GetTime().AsTime(), seq)
		resp, err := s.cli.Txn(ctx).
			If(clientv3.Compare(clientv3.CreateRevision(key), "=", 0)).
			Then(clientv3.OpPut(key, val, clientv3.WithLease(lease))).
			Commit()
		switch {
		case errors.Is(err, rpctypes.ErrLeaseNotFound):
			stale = lease // revoked or expired early: grant another
			continue
		case err != nil:
			return fmt.Errorf("store: append event %s: %w", ev.GetType(), err)
		case !resp.Succeeded:
			stale = 0 // key taken by another writer: next seq
			continue
		}
		return nil
	}
	return fmt.Errorf("store: append event %s: no free key after %d attempts: %w", ev.GetType(), eventPutAttempts, ErrConflict)
}

// ListEvents returns the newest limit events (limit <= 0: DefaultEventLimit)
// ordered oldest first, newest last. A non-empty workload keeps only that
// workload's events.
func (s *Store) ListEvents(ctx context.Context, workload string, limit int) ([]*persysv1.Event, error) {
	if limit <= 0 {
		limit = DefaultEventLimit
	}
	batch := int64(limit)
	if workload != "" {
		batch = max(batch, eventScanBatch)
	}
	start := s.dir(dirEvents)
	end := clientv3.GetPrefixRangeEnd(start)
	out := make([]*persysv1.Event, 0, min(limit, 1024))
	for len(out) < limit {
		resp, err := s.cli.Get(ctx, start,
			clientv3.WithRange(end),
			clientv3.WithSort(clientv3.SortByKey, clientv3.SortDescend),
			clientv3.WithLimit(batch))
		if err != nil {
			return nil, fmt.Errorf("store: list events: %w", err)
		}
		for _, kv := range resp.Kvs {
			ev := &persysv1.Event{}
			if err := proto.Unmarshal(kv.Value, ev); err != nil {
				s.log.Warn("skipping undecodable event", "key", string(kv.Key), "error", err)
				continue
			}
			if workload != "" && ev.GetWorkload() != workload {
				continue
			}
			out = append(out, ev)
			if len(out) == limit {
				break
			}
		}
		if !resp.More || len(resp.Kvs) == 0 {
			break
		}
		// The range end is exclusive: continue below the oldest key seen.
		end = string(resp.Kvs[len(resp.Kvs)-1].Key)
	}
	slices.Reverse(out)
	return out, nil
}

// preparedEvent is an event with its key, lease and encoded value.
type preparedEvent struct {
	ev    *persysv1.Event
	key   string
	val   string
	lease clientv3.LeaseID
}

// AppendEvents stores evs as AppendEvent would, in as few transactions as
// etcd's limits allow: a scheduler placing a thousand workloads a second
// records a few thousand events a second, more than one transaction each
// can keep up with. A group whose transaction fails (a key taken by another
// writer, a lease gone) is written event by event. It returns the errors
// of the events that could not be stored, joined.
func (s *Store) AppendEvents(ctx context.Context, evs []*persysv1.Event) error {
	now := time.Now()
	var errs []error
	var ps []preparedEvent
	for _, ev := range evs {
		ev, val, err := prepareEvent(ev, now)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		lease, seq, err := s.eventLease(ctx, now, 0)
		if err != nil {
			return errors.Join(append(errs, err)...)
		}
		ps = append(ps, preparedEvent{ev: ev, key: s.eventKey(ev.GetTime().AsTime(), seq), val: val, lease: lease})
	}
	groups := groupWrites(ps, func(p preparedEvent) string { return p.key }, func(p preparedEvent) int { return len(p.key) + len(p.val) }, MaxTxnOps)
	for _, g := range groups {
		cmps := make([]clientv3.Cmp, 0, len(g))
		ops := make([]clientv3.Op, 0, len(g))
		for _, i := range g {
			cmps = append(cmps, clientv3.Compare(clientv3.CreateRevision(ps[i].key), "=", 0))
			ops = append(ops, clientv3.OpPut(ps[i].key, ps[i].val, clientv3.WithLease(ps[i].lease)))
		}
		resp, err := s.cli.Txn(ctx).If(cmps...).Then(ops...).Commit()
		if err == nil && resp.Succeeded {
			continue
		}
		if ctx.Err() != nil {
			return errors.Join(append(errs, ctx.Err())...)
		}
		for _, i := range g {
			if err := s.appendPrepared(ctx, ps[i].ev, ps[i].val, now); err != nil {
				errs = append(errs, err)
			}
		}
	}
	return errors.Join(errs...)
}
