package store

// Reads for the watch hub (internal/scheduler/watchhub): one snapshot of
// everything a client can watch, and one etcd watch that delivers the
// changes a revision at a time, so that the changes of one transaction
// stay together.

import (
	"context"
	"errors"
	"fmt"
	"strings"

	persysv1 "github.com/persys-dev/compute/api/persys/v1"
	"go.etcd.io/etcd/api/v3/mvccpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/protobuf/proto"
)

// Kinds the watch hub sees besides those of Watch.
const (
	// KindService: services/<name> (Service set unless Deleted).
	KindService Kind = iota + KindResync + 1
	// KindServiceProgress: serviceprogress/<name> (Progress set unless
	// Deleted).
	KindServiceProgress
	// KindEvents: one events/ key (Events set unless Deleted).
	KindEvents
)

// watchAllBuffer bounds the revisions WatchAll holds for a slow reader;
// beyond it the etcd watch waits (etcd buffers, then the watch is
// compacted away and the reader resyncs).
const watchAllBuffer = 64

// WatchSnapshot is everything the watch hub serves, at one revision.
type WatchSnapshot struct {
	*Snapshot
	Services map[string]*persysv1.Service
	Progress map[string]*persysv1.ServiceProgress
	// Events are the newest stored events, oldest first, with the
	// revision of the key that holds each.
	Events    []*persysv1.Event
	EventRevs []int64
}

// LoadWatchState reads a Snapshot plus services, their progress and the
// events of the newest eventKeys event keys, all at one revision.
func (s *Store) LoadWatchState(ctx context.Context, eventKeys int) (*WatchSnapshot, error) {
	var err error
	for range loadAttempts {
		var ws *WatchSnapshot
		ws, err = s.loadWatchState(ctx, eventKeys)
		if err == nil {
			return ws, nil
		}
		if !errors.Is(err, rpctypes.ErrCompacted) {
			break
		}
	}
	return nil, fmt.Errorf("store: load watch state: %w", err)
}

func (s *Store) loadWatchState(ctx context.Context, eventKeys int) (*WatchSnapshot, error) {
	snap, err := s.load(ctx)
	if err != nil {
		return nil, err
	}
	ws := &WatchSnapshot{Snapshot: snap, Services: map[string]*persysv1.Service{}, Progress: map[string]*persysv1.ServiceProgress{}}
	for _, d := range []string{dirServices, dirServiceProgress} {
		err := s.rangeAll(ctx, s.dir(d), &snap.Revision, func(kv *mvccpb.KeyValue) {
			c, ok := s.decodeAll(string(kv.Key), kv.Value, false, kv.ModRevision)
			switch {
			case !ok:
			case c.Kind == KindService:
				ws.Services[c.Key] = c.Service
			case c.Kind == KindServiceProgress:
				ws.Progress[c.Key] = c.Progress
			}
		})
		if err != nil {
			return nil, err
		}
	}
	return ws, s.loadEventTail(ctx, ws, eventKeys)
}

// loadEventTail reads the newest n event keys at the snapshot's revision.
func (s *Store) loadEventTail(ctx context.Context, ws *WatchSnapshot, n int) error {
	if n <= 0 {
		return nil
	}
	start := s.dir(dirEvents)
	resp, err := s.cli.Get(ctx, start, clientv3.WithRange(clientv3.GetPrefixRangeEnd(start)), clientv3.WithRev(ws.Revision),
		clientv3.WithSort(clientv3.SortByKey, clientv3.SortDescend), clientv3.WithLimit(int64(n)))
	if err != nil {
		return fmt.Errorf("store: list events: %w", err)
	}
	for i := len(resp.Kvs) - 1; i >= 0; i-- {
		kv := resp.Kvs[i]
		c, ok := s.decodeAll(string(kv.Key), kv.Value, false, kv.ModRevision)
		if !ok {
			continue
		}
		for _, ev := range c.Events {
			ws.Events, ws.EventRevs = append(ws.Events, ev), append(ws.EventRevs, kv.ModRevision)
		}
	}
	return nil
}

// Batch is the changes of one etcd revision, in the order etcd gave them.
// A Batch without changes is progress: nothing else is owed up to
// Revision. A Batch with Err is the last before the channel closes: the
// caller must LoadWatchState again and WatchAll from its revision.
type Batch struct {
	Revision int64
	Changes  []Change
	Err      error
}

// WatchAll streams every change the watch hub serves after fromRevision,
// one Batch per revision (etcd never splits a revision across responses),
// with etcd's progress notifications as empty batches. The channel closes
// when ctx ends; the caller must drain it.
func (s *Store) WatchAll(ctx context.Context, fromRevision int64) <-chan Batch {
	out := make(chan Batch, watchAllBuffer)
	go s.watchAllLoop(ctx, fromRevision, out)
	return out
}

func (s *Store) watchAllLoop(ctx context.Context, fromRevision int64, out chan<- Batch) {
	defer close(out)
	wctx, cancel := context.WithCancel(clientv3.WithRequireLeader(ctx))
	defer cancel()
	wch := s.cli.Watch(wctx, s.prefix+"/", clientv3.WithPrefix(), clientv3.WithRev(fromRevision+1), clientv3.WithProgressNotify())
	send := func(b Batch) bool {
		select {
		case out <- b:
			return true
		case <-ctx.Done():
			return false
		}
	}
	for {
		select {
		case <-ctx.Done():
			return
		case resp, ok := <-wch:
			if err := watchAllErr(resp, ok, fromRevision); err != nil {
				if ctx.Err() == nil {
					send(Batch{Err: err})
				}
				return
			}
			for _, b := range s.batches(resp) {
				if !send(b) {
					return
				}
			}
			fromRevision = max(fromRevision, resp.Header.Revision)
		}
	}
}

// watchAllErr says why a watch response ends the watch; nil when it
// does not.
func watchAllErr(resp clientv3.WatchResponse, ok bool, from int64) error {
	switch {
	case !ok:
		return errors.New("store: watch channel closed")
	case resp.Err() != nil && resp.CompactRevision != 0:
		return fmt.Errorf("store: watch from revision %d: compacted at %d: %w", from, resp.CompactRevision, resp.Err())
	case resp.Err() != nil:
		return fmt.Errorf("store: watch: %w", resp.Err())
	case resp.Canceled:
		return errors.New("store: watch canceled by the server")
	}
	return nil
}

// batches splits one watch response into one Batch per revision; a
// progress notification becomes one empty Batch.
func (s *Store) batches(resp clientv3.WatchResponse) []Batch {
	if len(resp.Events) == 0 {
		return []Batch{{Revision: resp.Header.Revision}}
	}
	var out []Batch
	for _, ev := range resp.Events {
		rev := ev.Kv.ModRevision
		if len(out) == 0 || out[len(out)-1].Revision != rev {
			out = append(out, Batch{Revision: rev})
		}
		c, ok := s.decodeAll(string(ev.Kv.Key), ev.Kv.Value, ev.Type == clientv3.EventTypeDelete, rev)
		if ok {
			out[len(out)-1].Changes = append(out[len(out)-1].Changes, c)
		}
	}
	for i := range out {
		out[i].Changes = withDerivedStatuses(out[i].Changes)
	}
	return out
}

// decodeAll is decode plus services, their progress and events.
func (s *Store) decodeAll(key string, value []byte, deleted bool, modRev int64) (Change, bool) {
	if c, ok := s.decode(key, value, deleted, modRev); ok {
		return c, true
	}
	rel, ok := strings.CutPrefix(key, s.prefix+"/")
	if !ok {
		return Change{}, false
	}
	c := Change{Deleted: deleted, ModRevision: modRev}
	switch {
	case strings.HasPrefix(rel, dirServices):
		c.Kind, c.Key = KindService, rel[len(dirServices):]
		if !deleted {
			c.Service = &persysv1.Service{}
		}
		return c, s.decodeValue(&c, key, value, c.Service)
	case strings.HasPrefix(rel, dirServiceProgress):
		c.Kind, c.Key = KindServiceProgress, rel[len(dirServiceProgress):]
		if !deleted {
			c.Progress = &persysv1.ServiceProgress{}
		}
		return c, s.decodeValue(&c, key, value, c.Progress)
	case strings.HasPrefix(rel, dirEvents):
		c.Kind, c.Key = KindEvents, rel[len(dirEvents):]
		if deleted {
			return c, true
		}
		evs, err := decodeEvents(value)
		if err != nil {
			s.log.Warn("skipping undecodable event", "key", key, "error", err)
			return Change{}, false
		}
		c.Events = evs
		return c, true
	}
	return Change{}, false
}

// decodeValue checks c's key and, for a put, decodes value into msg.
func (s *Store) decodeValue(c *Change, key string, value []byte, msg proto.Message) bool {
	if c.Key == "" || strings.Contains(c.Key, "/") {
		return false
	}
	if c.Deleted {
		return true
	}
	if err := proto.Unmarshal(value, msg); err != nil {
		s.log.Warn("skipping undecodable value", "key", key, "revision", c.ModRevision, "error", err)
		return false
	}
	return true
}
