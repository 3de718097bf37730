package fedstore

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/persys-dev/compute/internal/federation/fedapi"
)

// maxOpsPerTxn stays under etcd's default limit of operations in one
// transaction.
const maxOpsPerTxn = 100

// Cursor is where the relay of a member's events resumes: the time of
// the newest event relayed and how many events of exactly that time were
// relayed (a member may write several in one instant).
type Cursor struct {
	Time time.Time `json:"time"`
	Seen int       `json:"seen"`
}

func (s *Store) cursorKey(name string) string { return s.prefix + "/relay/" + name }

// GetCursor returns a member's relay cursor; ok is false when none is
// stored yet.
func (s *Store) GetCursor(ctx context.Context, name string) (Cursor, bool, error) {
	resp, err := s.cli.Get(ctx, s.cursorKey(name))
	if err != nil {
		return Cursor{}, false, fmt.Errorf("fedstore: get cursor of %q: %w", name, err)
	}
	if len(resp.Kvs) == 0 {
		return Cursor{}, false, nil
	}
	var c Cursor
	if err := json.Unmarshal(resp.Kvs[0].Value, &c); err != nil {
		return Cursor{}, false, fmt.Errorf("fedstore: decode cursor of %q: %w", name, err)
	}
	return c, true, nil
}

// RelayEvents stores a member's events, each expiring after the event
// TTL, and moves its cursor to c; the last batch and the cursor commit
// together, and only while the member exists, so that a restart resumes
// after what was stored and a member that left gets no cursor back.
func (s *Store) RelayEvents(ctx context.Context, name string, evs []fedapi.Event, c Cursor) error {
	cur, err := json.Marshal(c)
	if err != nil {
		return fmt.Errorf("fedstore: encode cursor of %q: %w", name, err)
	}
	var lease clientv3.LeaseID
	if len(evs) > 0 {
		l, err := s.cli.Grant(ctx, int64(s.eventTTL/time.Second))
		if err != nil {
			return fmt.Errorf("fedstore: event lease: %w", err)
		}
		lease = l.ID
	}
	ops := make([]clientv3.Op, 0, len(evs)+1)
	for _, e := range evs {
		val, err := json.Marshal(e)
		if err != nil {
			return fmt.Errorf("fedstore: encode event: %w", err)
		}
		k := fmt.Sprintf("%s%020d-%06d", s.eventsDir(), e.Time.UnixNano(), s.seq.Add(1)%1_000_000)
		ops = append(ops, clientv3.OpPut(k, string(val), clientv3.WithLease(lease)))
	}
	for len(ops) > maxOpsPerTxn-1 {
		if _, err := s.cli.Txn(ctx).Then(ops[:maxOpsPerTxn]...).Commit(); err != nil {
			return fmt.Errorf("fedstore: relay events of %q: %w", name, err)
		}
		ops = ops[maxOpsPerTxn:]
	}
	ops = append(ops, clientv3.OpPut(s.cursorKey(name), string(cur)))
	resp, err := s.cli.Txn(ctx).
		If(clientv3.Compare(clientv3.CreateRevision(s.memberKey(name)), ">", 0)).
		Then(ops...).
		Commit()
	if err != nil {
		return fmt.Errorf("fedstore: relay events of %q: %w", name, err)
	}
	if !resp.Succeeded {
		return fmt.Errorf("cluster %q: %w", name, ErrNotFound)
	}
	return nil
}
