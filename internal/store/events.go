package store

import (
	"context"
	"errors"
	"fmt"
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
	eventScanPage    = 16
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
	return s.AppendEvents(ctx, []*persysv1.Event{ev})
}

// prepareEvent checks ev; a missing Time is set to now on a copy (ev is
// not modified).
func prepareEvent(ev *persysv1.Event, now time.Time) (*persysv1.Event, error) {
	if ev == nil {
		return nil, fmt.Errorf("store: event: %w: nil", ErrInvalid)
	}
	if ev.GetType() == "" {
		return nil, fmt.Errorf("store: event type: %w: empty", ErrInvalid)
	}
	if ev.GetTime() == nil {
		ev = proto.CloneOf(ev)
		ev.Time = timestamppb.New(now)
	} else if err := ev.GetTime().CheckValid(); err != nil {
		return nil, fmt.Errorf("store: event time: %w: %v", ErrInvalid, err)
	}
	return ev, nil
}

// appendPrepared writes one encoded value under a free events/ key for
// time t, taking the next sequence number when another writer holds the
// key and a new lease when etcd lost the current one. what names the
// value in errors.
func (s *Store) appendPrepared(ctx context.Context, what string, t time.Time, val string, now time.Time) error {
	var stale clientv3.LeaseID
	for range eventPutAttempts {
		lease, seq, err := s.eventLease(ctx, now, stale)
		if err != nil {
			return err
		}
		key := s.eventKey(t, seq)
		resp, err := s.cli.Txn(ctx).
			If(clientv3.Compare(clientv3.CreateRevision(key), "=", 0)).
			Then(clientv3.OpPut(key, val, clientv3.WithLease(lease))).
			Commit()
		switch {
		case errors.Is(err, rpctypes.ErrLeaseNotFound):
			stale = lease // revoked or expired early: grant another
			continue
		case err != nil:
			return fmt.Errorf("store: append %s: %w", what, err)
		case !resp.Succeeded:
			stale = 0 // key taken by another writer: next seq
			continue
		}
		return nil
	}
	return fmt.Errorf("store: append %s: no free key after %d attempts: %w", what, eventPutAttempts, ErrConflict)
}

// decodeEvents reads one events/ value: a batch, or a single Event (audit
// events, and keys written before events were batched).
func decodeEvents(val []byte) ([]*persysv1.Event, error) {
	var b persysv1.EventBatch
	if err := proto.Unmarshal(val, &b); err == nil && len(b.GetEvents()) > 0 {
		return b.GetEvents(), nil
	}
	ev := &persysv1.Event{}
	if err := proto.Unmarshal(val, ev); err != nil {
		return nil, err
	}
	if ev.GetType() == "" {
		return nil, errors.New("neither an event nor a batch of events")
	}
	return []*persysv1.Event{ev}, nil
}

// ListEvents returns the newest limit events (limit <= 0: DefaultEventLimit)
// ordered oldest first, newest last. A non-empty workload keeps only that
// workload's events.
func (s *Store) ListEvents(ctx context.Context, workload string, limit int) ([]*persysv1.Event, error) {
	return s.ListEventsFiltered(ctx, EventFilter{Workload: workload}, limit)
}

// Limits of one stored batch of events: a burst is split into keys of at
// most this many events and bytes (etcd refuses requests above 1.5 MiB).
const (
	storedBatchEvents = 256
	storedBatchBytes  = 256 << 10
)

// AppendEvents stores evs, each as AppendEvent would, packed into as few
// events/ keys as the batch limits allow: a scheduler placing thousands of
// workloads a second records several thousand events a second, and one key
// (one etcd write, one delivery to each watcher) per event would cost as
// much as the workloads' own state. Each key is named after the newest
// event it holds. Invalid events are refused by name without losing the
// others; it returns the errors joined.
func (s *Store) AppendEvents(ctx context.Context, evs []*persysv1.Event) error {
	now := time.Now()
	var errs []error
	var chunk []*persysv1.Event
	var newest time.Time
	size := 0
	flush := func() {
		if len(chunk) == 0 {
			return
		}
		val, err := marshal("events", &persysv1.EventBatch{Events: chunk})
		if err == nil {
			err = s.appendPrepared(ctx, fmt.Sprintf("%d events", len(chunk)), newest, val, now)
		}
		if err != nil {
			errs = append(errs, err)
		}
		chunk, size, newest = nil, 0, time.Time{}
	}
	for _, ev := range evs {
		ev, err := prepareEvent(ev, now)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		n := proto.Size(ev) + 8
		if len(chunk) == storedBatchEvents || (len(chunk) > 0 && size+n > storedBatchBytes) {
			flush()
		}
		chunk = append(chunk, ev)
		size += n
		if t := ev.GetTime().AsTime(); t.After(newest) {
			newest = t
		}
	}
	flush()
	return errors.Join(errs...)
}
