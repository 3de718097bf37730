// Package fedstore owns the federation's state in its own etcd: member
// records (with the identity each member issued to the federation), each
// member's last health, federated workloads and services with their
// placement decisions, the relay's resume point per member, and events written with a lease so that
// they expire. It is the only federation package that imports the etcd
// client. Values are JSON (the federation's types are not protobuf yet).
// Every write that must not race is a transaction: a member is created
// only if absent, and health is written only while its member exists, so
// that a probe finishing after a leave cannot bring the member back.
package fedstore

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/persys-dev/compute/internal/federation/fedapi"
)

// DefaultPrefix is the key prefix of the federation's state.
const DefaultPrefix = "/persys-federation"

// DefaultEventTTL bounds how long a member event is kept.
const DefaultEventTTL = time.Hour

// Sentinel errors; callers test them with errors.Is.
var (
	ErrNotFound = errors.New("not found")
	ErrExists   = errors.New("already exists")
	// ErrConflict: the key changed since it was read; read again.
	ErrConflict = errors.New("changed since it was read")
)

// Member is a member cluster as stored: its gateway and the identity the
// member issued to the federation (PEM). The private key stays in the
// federation's store, which answers only to the federation's certificate.
type Member struct {
	Name     string    `json:"name"`
	Gateway  string    `json:"gateway"`
	CA       string    `json:"ca"`
	Cert     string    `json:"cert"`
	Key      string    `json:"key"`
	JoinedAt time.Time `json:"joined_at"`
	// Labels describe the member; placements select members by them.
	Labels map[string]string `json:"labels,omitempty"`
}

// Store reads and writes the federation's keys under one prefix.
type Store struct {
	cli      *clientv3.Client
	prefix   string
	eventTTL time.Duration
	seq      atomic.Uint64
}

// New returns a Store over cli under prefix ("" means DefaultPrefix);
// eventTTL 0 means DefaultEventTTL. The caller owns cli.
func New(cli *clientv3.Client, prefix string, eventTTL time.Duration) *Store {
	if prefix == "" {
		prefix = DefaultPrefix
	}
	if eventTTL <= 0 {
		eventTTL = DefaultEventTTL
	}
	return &Store{cli: cli, prefix: strings.TrimSuffix(prefix, "/"), eventTTL: eventTTL}
}

func (s *Store) memberKey(name string) string { return s.prefix + "/members/" + name }
func (s *Store) healthKey(name string) string { return s.prefix + "/health/" + name }
func (s *Store) eventsDir() string            { return s.prefix + "/events/" }

// CreateMember stores m if no member of that name exists, with a Joined
// event, in one transaction.
func (s *Store) CreateMember(ctx context.Context, m Member) error {
	if m.Name == "" {
		return errors.New("fedstore: create member: name: empty")
	}
	val, err := json.Marshal(m)
	if err != nil {
		return fmt.Errorf("fedstore: encode member %q: %w", m.Name, err)
	}
	k := s.memberKey(m.Name)
	resp, err := s.cli.Txn(ctx).
		If(clientv3.Compare(clientv3.CreateRevision(k), "=", 0)).
		Then(clientv3.OpPut(k, string(val)), clientv3.OpDelete(s.healthKey(m.Name))).
		Commit()
	if err != nil {
		return fmt.Errorf("fedstore: create member %q: %w", m.Name, err)
	}
	if !resp.Succeeded {
		return fmt.Errorf("cluster %q: %w", m.Name, ErrExists)
	}
	return nil
}

// GetMember returns one member.
func (s *Store) GetMember(ctx context.Context, name string) (Member, error) {
	resp, err := s.cli.Get(ctx, s.memberKey(name))
	if err != nil {
		return Member{}, fmt.Errorf("fedstore: get member %q: %w", name, err)
	}
	if len(resp.Kvs) == 0 {
		return Member{}, fmt.Errorf("cluster %q: %w", name, ErrNotFound)
	}
	var m Member
	if err := json.Unmarshal(resp.Kvs[0].Value, &m); err != nil {
		return Member{}, fmt.Errorf("fedstore: decode member %q: %w", name, err)
	}
	return m, nil
}

// ListMembers returns every member, sorted by name.
func (s *Store) ListMembers(ctx context.Context) ([]Member, error) {
	resp, err := s.cli.Get(ctx, s.prefix+"/members/", clientv3.WithPrefix(), clientv3.WithSort(clientv3.SortByKey, clientv3.SortAscend))
	if err != nil {
		return nil, fmt.Errorf("fedstore: list members: %w", err)
	}
	out := make([]Member, 0, len(resp.Kvs))
	for _, kv := range resp.Kvs {
		var m Member
		if err := json.Unmarshal(kv.Value, &m); err != nil {
			return nil, fmt.Errorf("fedstore: decode member %s: %w", kv.Key, err)
		}
		out = append(out, m)
	}
	return out, nil
}

// UpdateMemberLabels sets and removes labels of a member in one
// compare-and-swap, retried a few times when the member changed meanwhile.
func (s *Store) UpdateMemberLabels(ctx context.Context, name string, set map[string]string, remove []string) (Member, error) {
	k := s.memberKey(name)
	for attempt := 0; ; attempt++ {
		resp, err := s.cli.Get(ctx, k)
		if err != nil {
			return Member{}, fmt.Errorf("fedstore: get member %q: %w", name, err)
		}
		if len(resp.Kvs) == 0 {
			return Member{}, fmt.Errorf("cluster %q: %w", name, ErrNotFound)
		}
		var m Member
		if err := json.Unmarshal(resp.Kvs[0].Value, &m); err != nil {
			return Member{}, fmt.Errorf("fedstore: decode member %q: %w", name, err)
		}
		if m.Labels == nil {
			m.Labels = map[string]string{}
		}
		for _, r := range remove {
			delete(m.Labels, r)
		}
		for lk, lv := range set {
			m.Labels[lk] = lv
		}
		val, err := json.Marshal(m)
		if err != nil {
			return Member{}, fmt.Errorf("fedstore: encode member %q: %w", name, err)
		}
		tx, err := s.cli.Txn(ctx).
			If(clientv3.Compare(clientv3.ModRevision(k), "=", resp.Kvs[0].ModRevision)).
			Then(clientv3.OpPut(k, string(val))).
			Commit()
		if err != nil {
			return Member{}, fmt.Errorf("fedstore: update member %q: %w", name, err)
		}
		if tx.Succeeded {
			return m, nil
		}
		if attempt == 4 {
			return Member{}, fmt.Errorf("cluster %q: %w", name, ErrConflict)
		}
	}
}

// DeleteMember removes a member and its health.
func (s *Store) DeleteMember(ctx context.Context, name string) error {
	k := s.memberKey(name)
	resp, err := s.cli.Txn(ctx).
		If(clientv3.Compare(clientv3.CreateRevision(k), ">", 0)).
		Then(clientv3.OpDelete(k), clientv3.OpDelete(s.healthKey(name)), clientv3.OpDelete(s.cursorKey(name))).
		Commit()
	if err != nil {
		return fmt.Errorf("fedstore: delete member %q: %w", name, err)
	}
	if !resp.Succeeded {
		return fmt.Errorf("cluster %q: %w", name, ErrNotFound)
	}
	return nil
}

// PutHealth records a member's health while the member exists; for a
// member that left it returns ErrNotFound and writes nothing.
func (s *Store) PutHealth(ctx context.Context, name string, h fedapi.Health) error {
	val, err := json.Marshal(h)
	if err != nil {
		return fmt.Errorf("fedstore: encode health of %q: %w", name, err)
	}
	resp, err := s.cli.Txn(ctx).
		If(clientv3.Compare(clientv3.CreateRevision(s.memberKey(name)), ">", 0)).
		Then(clientv3.OpPut(s.healthKey(name), string(val))).
		Commit()
	if err != nil {
		return fmt.Errorf("fedstore: put health of %q: %w", name, err)
	}
	if !resp.Succeeded {
		return fmt.Errorf("cluster %q: %w", name, ErrNotFound)
	}
	return nil
}

// Healths returns the recorded health of every member that has one.
func (s *Store) Healths(ctx context.Context) (map[string]fedapi.Health, error) {
	dir := s.prefix + "/health/"
	resp, err := s.cli.Get(ctx, dir, clientv3.WithPrefix())
	if err != nil {
		return nil, fmt.Errorf("fedstore: list health: %w", err)
	}
	out := make(map[string]fedapi.Health, len(resp.Kvs))
	for _, kv := range resp.Kvs {
		var h fedapi.Health
		if err := json.Unmarshal(kv.Value, &h); err != nil {
			return nil, fmt.Errorf("fedstore: decode health %s: %w", kv.Key, err)
		}
		out[strings.TrimPrefix(string(kv.Key), dir)] = h
	}
	return out, nil
}

// AddEvent writes an event that expires after the store's event TTL.
func (s *Store) AddEvent(ctx context.Context, e fedapi.Event) error {
	if e.Time.IsZero() {
		e.Time = time.Now()
	}
	val, err := json.Marshal(e)
	if err != nil {
		return fmt.Errorf("fedstore: encode event: %w", err)
	}
	lease, err := s.cli.Grant(ctx, int64(s.eventTTL/time.Second))
	if err != nil {
		return fmt.Errorf("fedstore: event lease: %w", err)
	}
	// Time first so that keys sort by time; the sequence keeps two
	// events of one nanosecond apart.
	k := fmt.Sprintf("%s%020d-%06d", s.eventsDir(), e.Time.UnixNano(), s.seq.Add(1)%1_000_000)
	if _, err := s.cli.Put(ctx, k, string(val), clientv3.WithLease(lease.ID)); err != nil {
		return fmt.Errorf("fedstore: put event: %w", err)
	}
	return nil
}

// EventFilter picks events: of one cluster, of one workload or service
// (by name); an empty field picks every event.
type EventFilter struct {
	Cluster, Object string
}

func (f EventFilter) match(e fedapi.Event) bool {
	return (f.Cluster == "" || e.Cluster == f.Cluster) && (f.Object == "" || e.Workload == f.Object || e.Service == f.Object)
}

// ListEvents returns the kept events, oldest first, of one cluster when
// cluster is not empty; at most limit of the newest when limit > 0.
func (s *Store) ListEvents(ctx context.Context, cluster string, limit int) ([]fedapi.Event, error) {
	return s.FindEvents(ctx, EventFilter{Cluster: cluster}, limit)
}

// FindEvents returns the kept events that f picks, oldest first; at most
// limit of the newest when limit > 0.
func (s *Store) FindEvents(ctx context.Context, f EventFilter, limit int) ([]fedapi.Event, error) {
	resp, err := s.cli.Get(ctx, s.eventsDir(), clientv3.WithPrefix(), clientv3.WithSort(clientv3.SortByKey, clientv3.SortAscend))
	if err != nil {
		return nil, fmt.Errorf("fedstore: list events: %w", err)
	}
	out := []fedapi.Event{}
	for _, kv := range resp.Kvs {
		var e fedapi.Event
		if err := json.Unmarshal(kv.Value, &e); err != nil {
			return nil, fmt.Errorf("fedstore: decode event %s: %w", kv.Key, err)
		}
		if f.match(e) {
			out = append(out, e)
		}
	}
	if limit > 0 && len(out) > limit {
		out = out[len(out)-limit:]
	}
	return out, nil
}
