package fedstore

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/persys-dev/compute/internal/federation/fedapi"
)

// ErrCompacted: the watch position is older than the store keeps; list
// again.
var ErrCompacted = errors.New("position compacted")

// EventPos is a position in the event stream: the etcd revision of a
// write and the index of an event among the events of that write (a relay
// round writes several in one transaction). Index -1 means the whole
// revision.
type EventPos struct {
	Revision int64
	Index    int32
}

// EventChange is one event as the watch delivers it.
type EventChange struct {
	Pos   EventPos
	Event fedapi.Event
}

// WatchEvents calls fn for each event f picks that is written after from
// (from.Revision 0: after now), and mark with the store's revision once
// the watch starts and after each batch of writes, so that a caller can
// resume from there. It returns when ctx ends (nil), fn or mark fail, or
// the position was compacted (ErrCompacted).
func (s *Store) WatchEvents(ctx context.Context, from EventPos, f EventFilter, fn func(EventChange) error, mark func(rev int64) error) error {
	ctx, cancel := context.WithCancel(clientv3.WithRequireLeader(ctx))
	defer cancel()
	if from.Revision == 0 {
		resp, err := s.cli.Get(ctx, s.eventsDir(), clientv3.WithPrefix(), clientv3.WithCountOnly())
		if err != nil {
			return fmt.Errorf("fedstore: watch events: %w", err)
		}
		from = EventPos{Revision: resp.Header.Revision, Index: -1}
	}
	if err := mark(from.Revision); err != nil {
		return err
	}
	// The write at from.Revision is read again when part of it is still
	// to come (Index >= 0), skipping what the caller saw.
	start := from.Revision + 1
	if from.Index >= 0 {
		start = from.Revision
	}
	wch := s.cli.Watch(ctx, s.eventsDir(), clientv3.WithPrefix(), clientv3.WithRev(start))
	for resp := range wch {
		if resp.CompactRevision != 0 || errors.Is(resp.Err(), rpctypes.ErrCompacted) {
			return fmt.Errorf("%w: revision %d (compacted at %d)", ErrCompacted, start, resp.CompactRevision)
		}
		if err := resp.Err(); err != nil {
			return fmt.Errorf("fedstore: watch events: %w", err)
		}
		var rev int64
		var idx int32
		for _, ev := range resp.Events {
			if ev.Kv.ModRevision != rev {
				rev, idx = ev.Kv.ModRevision, 0
			} else {
				idx++
			}
			if ev.Type != clientv3.EventTypePut || (rev == from.Revision && idx <= from.Index) {
				continue
			}
			var e fedapi.Event
			if err := json.Unmarshal(ev.Kv.Value, &e); err != nil || !f.match(e) {
				continue
			}
			if err := fn(EventChange{Pos: EventPos{Revision: rev, Index: idx}, Event: e}); err != nil {
				return err
			}
		}
		if err := mark(resp.Header.Revision); err != nil {
			return err
		}
	}
	if ctx.Err() != nil {
		return nil
	}
	return errors.New("fedstore: watch events: the watch ended")
}
