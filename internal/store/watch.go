package store

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

const (
	loadPageSize    = 1000
	loadAttempts    = 3
	watchBufferSize = 256
)

// Snapshot is the cluster state at one etcd revision (events excluded).
// Maps are keyed by workload name or node id.
type Snapshot struct {
	// Revision is the etcd revision of the read; pass it to Watch.
	Revision       int64
	Workloads      map[string]*persysv1.Workload
	WorkloadRevs   map[string]int64
	Statuses       map[string]*persysv1.WorkloadStatus
	Assignments    map[string]*persysv1.Assignment
	AssignmentRevs map[string]int64
	Nodes          map[string]*persysv1.Node
	// AliveNodes holds true for every node whose liveness key exists.
	AliveNodes map[string]bool
	// Retries holds the retry engine's records.
	Retries map[string]*persysv1.RetryState
}

// Load reads workloads, statuses, assignments, nodes and liveness keys at a
// single revision (paginated, every page pinned to the first page's
// revision). Values that do not decode are skipped with a warning. If the
// revision is compacted during the read, Load starts over (a few times).
func (s *Store) Load(ctx context.Context) (*Snapshot, error) {
	var err error
	for range loadAttempts {
		var snap *Snapshot
		snap, err = s.load(ctx)
		if err == nil {
			return snap, nil
		}
		if !errors.Is(err, rpctypes.ErrCompacted) {
			break
		}
	}
	return nil, fmt.Errorf("store: load snapshot: %w", err)
}

func (s *Store) load(ctx context.Context) (*Snapshot, error) {
	snap := &Snapshot{
		Workloads:      map[string]*persysv1.Workload{},
		WorkloadRevs:   map[string]int64{},
		Statuses:       map[string]*persysv1.WorkloadStatus{},
		Assignments:    map[string]*persysv1.Assignment{},
		AssignmentRevs: map[string]int64{},
		Nodes:          map[string]*persysv1.Node{},
		AliveNodes:     map[string]bool{},
		Retries:        map[string]*persysv1.RetryState{},
	}
	err := s.rangeAll(ctx, s.dir(dirRetries), &snap.Revision, func(kv *mvccpb.KeyValue) {
		r := &persysv1.RetryState{}
		if err := proto.Unmarshal(kv.Value, r); err != nil {
			s.log.Warn("skipping undecodable retry record", "key", string(kv.Key), "err", err)
			return
		}
		snap.Retries[strings.TrimPrefix(string(kv.Key), s.dir(dirRetries))] = r
	})
	if err != nil {
		return nil, err
	}
	statusRevs := map[string]int64{}
	for _, d := range []string{dirWorkloads, dirStatus, dirAssignments, dirNodes} {
		err := s.rangeAll(ctx, s.dir(d), &snap.Revision, func(kv *mvccpb.KeyValue) {
			c, ok := s.decode(string(kv.Key), kv.Value, false, kv.ModRevision)
			if !ok {
				return
			}
			switch c.Kind {
			case KindWorkload:
				snap.Workloads[c.Key], snap.WorkloadRevs[c.Key] = c.Workload, kv.ModRevision
			case KindStatus:
				snap.Statuses[c.Key], statusRevs[c.Key] = c.Status, kv.ModRevision
			case KindAssignment:
				snap.Assignments[c.Key], snap.AssignmentRevs[c.Key] = c.Assignment, kv.ModRevision
			case KindNode:
				snap.Nodes[c.Key] = c.Node
			case KindNodeLease:
				snap.AliveNodes[c.Key] = true
			}
		})
		if err != nil {
			return nil, err
		}
	}
	for name, a := range snap.Assignments {
		if !statusStands(statusRevs[name], snap.AssignmentRevs[name]) {
			snap.Statuses[name] = ScheduledStatus(a)
		}
	}
	return snap, nil
}

// rangeAll calls fn for every key under prefix, in pages, at revision *rev
// (0: the current one, which it stores in *rev).
func (s *Store) rangeAll(ctx context.Context, prefix string, rev *int64, fn func(*mvccpb.KeyValue)) error {
	key, end := prefix, clientv3.GetPrefixRangeEnd(prefix)
	for {
		opts := []clientv3.OpOption{clientv3.WithRange(end), clientv3.WithLimit(loadPageSize)}
		if *rev > 0 {
			opts = append(opts, clientv3.WithRev(*rev))
		}
		resp, err := s.cli.Get(ctx, key, opts...)
		if err != nil {
			// The collection, not the key prefix: errors reach clients.
			return fmt.Errorf("store: list %s: %w", strings.Trim(strings.TrimPrefix(prefix, s.prefix), "/"), err)
		}
		if *rev == 0 {
			*rev = resp.Header.Revision
		}
		for _, kv := range resp.Kvs {
			fn(kv)
		}
		if !resp.More || len(resp.Kvs) == 0 {
			return nil
		}
		key = string(resp.Kvs[len(resp.Kvs)-1].Key) + "\x00"
	}
}

// Kind says which key space a Change concerns.
type Kind int

// Kinds of changes.
const (
	KindUnknown Kind = iota
	KindWorkload
	KindStatus
	KindAssignment
	KindNode
	// KindNodeLease: a node's liveness key appeared (not Deleted) or
	// vanished because its lease expired or was revoked (Deleted).
	KindNodeLease
	// KindResync: the watch ended and changes may have been missed
	// (history compacted, leader lost, connection closed). It is the last
	// Change before the channel closes: reload with Load and watch again
	// from the new snapshot's revision.
	KindResync
)

func (k Kind) String() string {
	switch k {
	case KindWorkload:
		return "workload"
	case KindStatus:
		return "status"
	case KindAssignment:
		return "assignment"
	case KindNode:
		return "node"
	case KindNodeLease:
		return "node-lease"
	case KindResync:
		return "resync"
	case KindService:
		return "service"
	case KindServiceProgress:
		return "service-progress"
	case KindEvents:
		return "events"
	default:
		return "unknown"
	}
}

// Change is one decoded modification. Exactly one payload field is set for
// a put of its kind; all are nil when Deleted and for lease changes.
type Change struct {
	Kind Kind
	// Key is the workload name or node id.
	Key     string
	Deleted bool
	// ModRevision is the revision of the change (for a delete, the revision
	// of the deletion). For a put of a workload or assignment it is the
	// value to compare against in the next write.
	ModRevision int64
	Workload    *persysv1.Workload
	Status      *persysv1.WorkloadStatus
	Assignment  *persysv1.Assignment
	Node        *persysv1.Node
	// Service, Progress and Events: only from WatchAll (watchall.go).
	Service  *persysv1.Service
	Progress *persysv1.ServiceProgress
	Events   []*persysv1.Event
	// Err says why, for KindResync.
	Err error
}

// Watch streams the changes to workloads, statuses, assignments, nodes and
// liveness keys after fromRevision (typically Snapshot.Revision; 0 means
// from now), in revision order. Events and retries are not streamed.
//
// The channel closes when ctx ends. If the watch fails for any other reason
// (fromRevision compacted, no etcd leader, client closed), the last value
// sent is a Change of KindResync carrying the cause, and then the channel
// closes: the caller must Load a new snapshot and Watch from its revision.
// The caller must drain the channel until it closes.
func (s *Store) Watch(ctx context.Context, fromRevision int64) <-chan Change {
	return s.WatchSkipping(ctx, fromRevision, nil)
}

// Known tells whether a watcher holds key of kind at modRev or later
// already: the echo of its own write, which it recorded when the write
// returned. It is asked about puts of workloads, statuses and assignments
// only, never about a delete.
type Known func(kind Kind, key string, modRev int64) bool

// WatchSkipping is Watch without the puts known says the caller holds:
// they are neither decoded nor sent (nor is the SCHEDULED status an
// assignment implies: the write that recorded the assignment recorded
// its status). A scheduler that wrote nearly every change it watches
// decoded each twice, its own value once more from the watch; at a
// million placements that was 2.3 of its 28 GB of allocations.
func (s *Store) WatchSkipping(ctx context.Context, fromRevision int64, known Known) <-chan Change {
	out := make(chan Change, watchBufferSize)
	go s.watchLoop(ctx, fromRevision, known, out)
	return out
}

func (s *Store) watchLoop(ctx context.Context, fromRevision int64, known Known, out chan<- Change) {
	defer close(out)
	wctx, cancel := context.WithCancel(clientv3.WithRequireLeader(ctx))
	defer cancel()
	opts := []clientv3.OpOption{clientv3.WithPrefix()}
	if fromRevision > 0 {
		opts = append(opts, clientv3.WithRev(fromRevision+1))
	}
	wch := s.cli.Watch(wctx, s.prefix+"/", opts...)
	send := func(c Change) bool {
		select {
		case out <- c:
			return true
		case <-ctx.Done():
			return false
		}
	}
	resync := func(err error) {
		if ctx.Err() != nil {
			return
		}
		s.log.Warn("store watch ended; caller must resync", "from_revision", fromRevision, "error", err)
		send(Change{Kind: KindResync, Err: err})
	}
	for {
		select {
		case <-ctx.Done():
			return
		case resp, ok := <-wch:
			if !ok {
				resync(errors.New("store: watch channel closed"))
				return
			}
			if err := resp.Err(); err != nil {
				if resp.CompactRevision != 0 {
					err = fmt.Errorf("store: watch from revision %d: compacted at %d: %w", fromRevision, resp.CompactRevision, err)
				} else {
					err = fmt.Errorf("store: watch: %w", err)
				}
				resync(err)
				return
			}
			if resp.Canceled {
				resync(errors.New("store: watch canceled by the server"))
				return
			}
			changes := make([]Change, 0, len(resp.Events))
			for _, ev := range resp.Events {
				if c, ok := s.decodeUnknown(string(ev.Kv.Key), ev.Kv.Value, ev.Type == clientv3.EventTypeDelete, ev.Kv.ModRevision, known); ok {
					changes = append(changes, c)
				}
			}
			if n := len(resp.Events); n > 0 {
				// Skipped changes count as seen.
				fromRevision = resp.Events[n-1].Kv.ModRevision
			}
			for _, c := range withDerivedStatuses(changes) {
				if !send(c) {
					return
				}
				fromRevision = c.ModRevision
			}
		}
	}
}

// decode turns a key and value into a Change; false for keys outside the
// watched spaces and for values that do not decode (logged).
func (s *Store) decode(key string, value []byte, deleted bool, modRev int64) (Change, bool) {
	return s.decodeUnknown(key, value, deleted, modRev, nil)
}

// decodeUnknown is decode, and false, without decoding, for a put known
// holds (nil: none).
func (s *Store) decodeUnknown(key string, value []byte, deleted bool, modRev int64, known Known) (Change, bool) {
	rel, ok := strings.CutPrefix(key, s.prefix+"/")
	if !ok {
		return Change{}, false
	}
	c := Change{Deleted: deleted, ModRevision: modRev}
	switch {
	case strings.HasPrefix(rel, dirWorkloads):
		c.Kind, c.Key = KindWorkload, rel[len(dirWorkloads):]
	case strings.HasPrefix(rel, dirStatus):
		c.Kind, c.Key = KindStatus, rel[len(dirStatus):]
	case strings.HasPrefix(rel, dirAssignments):
		c.Kind, c.Key = KindAssignment, rel[len(dirAssignments):]
	case strings.HasPrefix(rel, dirNodes):
		id := rel[len(dirNodes):]
		if lid, ok := strings.CutSuffix(id, leaseSuffix); ok && lid != "" && !strings.Contains(lid, "/") {
			c.Kind, c.Key = KindNodeLease, lid
			return c, true
		}
		c.Kind, c.Key = KindNode, id
	default:
		return Change{}, false
	}
	if c.Key == "" || strings.Contains(c.Key, "/") {
		return Change{}, false
	}
	if deleted {
		return c, true
	}
	if c.Kind != KindNode && known != nil && known(c.Kind, c.Key, modRev) {
		return Change{}, false
	}
	var msg proto.Message
	switch c.Kind {
	case KindWorkload:
		c.Workload = &persysv1.Workload{}
		msg = c.Workload
	case KindStatus:
		c.Status = &persysv1.WorkloadStatus{}
		msg = c.Status
	case KindAssignment:
		c.Assignment = &persysv1.Assignment{}
		msg = c.Assignment
	default: // KindNode
		c.Node = &persysv1.Node{}
		msg = c.Node
	}
	if err := proto.Unmarshal(value, msg); err != nil {
		s.log.Warn("skipping undecodable value", "key", key, "revision", modRev, "error", err)
		return Change{}, false
	}
	return c, true
}
