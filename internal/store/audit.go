package store

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	persysv1 "github.com/persys-dev/compute/api/persys/v1"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// AuditEventType is the Event.Type of audit events.
const AuditEventType = "Audit"

// DefaultAuditRetention is how long audit events are kept when the caller
// does not say (30 days).
const DefaultAuditRetention = 720 * time.Hour

// Size limits of an audit event's fields.
const (
	maxAuditField   = 512
	maxAuditMessage = 2048
)

// AuditLog appends audit events: ordinary Event records of type Audit under
// events/ (so that they list and sort with every other event), bound to
// leases of their own that outlive the ordinary event leases. It is safe
// for concurrent use. Create it with Store.AuditLog.
type AuditLog struct {
	s         *Store
	retention time.Duration

	mu    sync.Mutex
	lease clientv3.LeaseID
	until time.Time
	seq   uint64
}

// AuditLog returns an audit log that keeps its events for at least
// retention (<= 0: DefaultAuditRetention) and at most 1.1×retention: one
// lease is shared by the events of each retention/10 window.
func (s *Store) AuditLog(retention time.Duration) *AuditLog {
	if retention <= 0 {
		retention = DefaultAuditRetention
	}
	return &AuditLog{s: s, retention: retention}
}

// Retention returns how long the log keeps its events.
func (a *AuditLog) Retention() time.Duration { return a.retention }

func (a *AuditLog) leaseFor(ctx context.Context, now time.Time, forget clientv3.LeaseID) (clientv3.LeaseID, uint64, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if forget != 0 && a.lease == forget {
		a.lease = 0
	}
	a.seq++
	// Keys of audit events use the upper half of the sequence space, so
	// they never contend with the ordinary events' sequence.
	seq := 5e9 + a.seq%5e9
	if a.lease != 0 && now.Before(a.until) {
		return a.lease, seq, nil
	}
	window := a.retention / eventWindows
	resp, err := a.s.cli.Grant(ctx, leaseSeconds(a.retention+window))
	if err != nil {
		return 0, 0, fmt.Errorf("store: grant audit lease: %w", err)
	}
	a.lease, a.until = resp.ID, now.Add(window)
	return a.lease, seq, nil
}

// ValidateAuditEvent checks an audit event's fields: actor, action and
// result are required, each field is bounded in size.
func ValidateAuditEvent(ev *persysv1.Event) error {
	if ev == nil {
		return fmt.Errorf("store: audit event: %w: nil", ErrInvalid)
	}
	for _, f := range []struct {
		name, val string
		required  bool
		limit     int
	}{
		{"actor", ev.GetActor(), true, maxAuditField},
		{"action", ev.GetAction(), true, maxAuditField},
		{"result", ev.GetResult(), true, maxAuditField},
		{"workload", ev.GetWorkload(), false, maxNameLen},
		{"node_id", ev.GetNodeId(), false, maxNameLen},
		{"message", ev.GetMessage(), false, maxAuditMessage},
	} {
		if f.required && strings.TrimSpace(f.val) == "" {
			return fmt.Errorf("store: audit event %s: %w: required", f.name, ErrInvalid)
		}
		if len(f.val) > f.limit {
			return fmt.Errorf("store: audit event %s: %w: longer than %d bytes", f.name, ErrInvalid, f.limit)
		}
	}
	if ev.GetTime() != nil {
		if err := ev.GetTime().CheckValid(); err != nil {
			return fmt.Errorf("store: audit event time: %w: %v", ErrInvalid, err)
		}
	}
	return nil
}

// Append stores ev as an audit event (its Type is set to Audit on a copy;
// a missing Time is set to now). It returns an error when the event could
// not be stored: audit events are never dropped silently.
func (a *AuditLog) Append(ctx context.Context, ev *persysv1.Event) error {
	if err := ValidateAuditEvent(ev); err != nil {
		return err
	}
	ev = proto.CloneOf(ev)
	ev.Type = AuditEventType
	now := time.Now()
	if ev.GetTime() == nil {
		ev.Time = timestamppb.New(now)
	}
	val, err := marshal("audit event", ev)
	if err != nil {
		return err
	}
	var stale clientv3.LeaseID
	for range eventPutAttempts {
		lease, seq, err := a.leaseFor(ctx, now, stale)
		if err != nil {
			return err
		}
		key := a.s.eventKey(ev.GetTime().AsTime(), seq)
		resp, err := a.s.cli.Txn(ctx).
			If(clientv3.Compare(clientv3.CreateRevision(key), "=", 0)).
			Then(clientv3.OpPut(key, val, clientv3.WithLease(lease))).
			Commit()
		switch {
		case errors.Is(err, rpctypes.ErrLeaseNotFound):
			stale = lease
			continue
		case err != nil:
			return fmt.Errorf("store: append audit event: %w", err)
		case !resp.Succeeded:
			stale = 0
			continue
		}
		return nil
	}
	return fmt.Errorf("store: append audit event: no free key after %d attempts: %w", eventPutAttempts, ErrConflict)
}

// EventFilter selects events; empty fields match everything.
type EventFilter struct {
	// Workload keeps only that workload's events.
	Workload string
	// Type keeps only events of this type, compared without regard to
	// case ("audit" matches "Audit").
	Type string
}

func (f EventFilter) match(ev *persysv1.Event) bool {
	if f.Workload != "" && ev.GetWorkload() != f.Workload {
		return false
	}
	if f.Type != "" && !strings.EqualFold(ev.GetType(), f.Type) {
		return false
	}
	return true
}

// ListEventsFiltered is ListEvents with a filter on workload and type: the
// newest limit matching events (limit <= 0: DefaultEventLimit), oldest
// first.
func (s *Store) ListEventsFiltered(ctx context.Context, f EventFilter, limit int) ([]*persysv1.Event, error) {
	if limit <= 0 {
		limit = DefaultEventLimit
	}
	// A key holds up to storedBatchEvents events: read few keys a page.
	page := int64(eventScanPage)
	if f.Workload != "" || f.Type != "" {
		page = eventScanBatch
	}
	start := s.dir(dirEvents)
	end := clientv3.GetPrefixRangeEnd(start)
	out := make([]*persysv1.Event, 0, min(limit, 1024))
scan:
	for len(out) < limit {
		resp, err := s.cli.Get(ctx, start,
			clientv3.WithRange(end),
			clientv3.WithSort(clientv3.SortByKey, clientv3.SortDescend),
			clientv3.WithLimit(page))
		if err != nil {
			return nil, fmt.Errorf("store: list events: %w", err)
		}
		for _, kv := range resp.Kvs {
			evs, err := decodeEvents(kv.Value)
			if err != nil {
				s.log.Warn("skipping undecodable event", "key", string(kv.Key), "error", err)
				continue
			}
			// Newest first, as the keys go.
			for i := len(evs) - 1; i >= 0; i-- {
				if !f.match(evs[i]) {
					continue
				}
				out = append(out, evs[i])
				if len(out) == limit {
					break scan
				}
			}
		}
		if !resp.More || len(resp.Kvs) == 0 {
			break
		}
		end = string(resp.Kvs[len(resp.Kvs)-1].Key)
	}
	slices.Reverse(out)
	// Keys are ordered by their newest event; events of concurrent
	// writers can interleave across keys, so order by time (append order
	// kept for equal times).
	slices.SortStableFunc(out, func(a, b *persysv1.Event) int {
		return a.GetTime().AsTime().Compare(b.GetTime().AsTime())
	})
	return out, nil
}
