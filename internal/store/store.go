// Package store owns Persys Compute's state in etcd and is the only package
// that imports the etcd client. It gives typed access to the keys under one
// prefix (workloads, statuses, assignments, nodes and their liveness leases,
// events), read-modify-write operations as transactions that compare a key's
// mod revision, a consistent snapshot (Load) and a typed watch from that
// snapshot's revision (Watch). It also starts an embedded etcd server
// (StartEmbedded), connects to external clusters (Dial, Connect), and
// saves and restores etcd snapshots (SaveSnapshot, RestoreSnapshot).
//
// Callers keep the revisions they read and pass them back: a write against a
// revision that changed meanwhile fails with ErrConflict, and the caller
// refreshes and retries. Sentinel errors are wrapped with %w; match them with
// errors.Is and map them to gRPC or HTTP codes at the boundary.
//
// Key layout under Options.Prefix (default "/persys"):
//
//	workloads/<name>      persysv1.Workload (desired state)
//	status/<name>         persysv1.WorkloadStatus (observed state)
//	assignments/<name>    persysv1.Assignment
//	retries/<name>        reserved for the retry engine
//	nodes/<id>            persysv1.Node (registration, state and cordon changes)
//	nodes/<id>/lease      empty value bound to the node's liveness lease
//	events/<nanos>-<seq>  persysv1.Event, bound to a lease so it expires
package store

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	persysv1 "github.com/persys-dev/compute/api/persys/v1"
	"github.com/persys-dev/compute/internal/model"
	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/protobuf/proto"
)

// Sentinel errors; the store wraps them with context.
var (
	// ErrNotFound: the key (or the workload a write depends on) is absent.
	ErrNotFound = errors.New("not found")
	// ErrConflict: the key's mod revision differs from the one expected;
	// refresh and retry.
	ErrConflict = errors.New("revision conflict")
	// ErrExists: a create found the key already present.
	ErrExists = errors.New("already exists")
	// ErrLeaseNotFound: the lease expired or was revoked; the node must
	// register again.
	ErrLeaseNotFound = errors.New("lease not found")
	// ErrInvalid: an argument failed validation; the message names the field.
	ErrInvalid = errors.New("invalid argument")
)

// NotFoundError is ErrNotFound for one object. Its message names the
// object as a client knows it (`workload "web" not found`), never a key,
// so the scheduler may pass it on; errors.Is(err, ErrNotFound) holds.
type NotFoundError struct {
	Kind, Name string
}

func (e *NotFoundError) Error() string { return fmt.Sprintf("%s %q not found", e.Kind, e.Name) }

// Is makes errors.Is(err, ErrNotFound) hold.
func (e *NotFoundError) Is(target error) bool { return target == ErrNotFound }

// notFound wraps a NotFoundError of kind and name for the store's callers.
func notFound(kind, name string) error {
	return fmt.Errorf("store: %w", &NotFoundError{Kind: kind, Name: name})
}

// Defaults for Options.
const (
	DefaultPrefix   = "/persys"
	DefaultEventTTL = time.Hour

	maxNameLen = model.MaxNameLen
)

// Options configure a Store.
type Options struct {
	// Prefix of every key, without a trailing slash; default DefaultPrefix.
	Prefix string
	// EventTTL bounds how long events are kept; default DefaultEventTTL.
	// Events live between EventTTL and 1.1×EventTTL (leases are shared per
	// EventTTL/10 window).
	EventTTL time.Duration
	// Logger receives warnings about undecodable values; nil is silent.
	Logger *slog.Logger
}

// Store is typed access to the cluster state in etcd. It is safe for
// concurrent use.
type Store struct {
	cli *clientv3.Client
	// kv is the KVClient under cli's KV, for group commits (txnRequest).
	kv       pb.KVClient
	prefix   string
	eventTTL time.Duration
	log      *slog.Logger

	evMu    sync.Mutex
	evLease clientv3.LeaseID
	evUntil time.Time
	evSeq   uint64

	// ka carries KeepAliveNode's renewals on one shared stream.
	ka leaseKeepers
	// ownsClient: Close closes cli (a Store made by Dial or LocalStore).
	ownsClient bool
}

// New returns a Store over cli. The caller owns cli and closes it after the
// store is no longer used; closing it also ends the store's keep-alive
// stream and its goroutines.
func New(cli *clientv3.Client, opts Options) *Store {
	prefix := strings.TrimRight(opts.Prefix, "/")
	if prefix == "" {
		prefix = DefaultPrefix
	}
	ttl := opts.EventTTL
	if ttl <= 0 {
		ttl = DefaultEventTTL
	}
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Store{cli: cli, kv: kvClientOf(cli), prefix: prefix, eventTTL: ttl, log: log, ka: newLeaseKeepers(cli)}
}

// Dial connects to an external etcd cluster (as Connect) and returns a
// Store that owns the client: Close closes it. tlsCfg is nil only for
// plaintext endpoints, which callers allow explicitly.
func Dial(endpoints []string, tlsCfg *tls.Config, opts Options) (*Store, error) {
	cli, err := connect(endpoints, tlsCfg, opts.Logger)
	if err != nil {
		return nil, err
	}
	s := New(cli, opts)
	s.ownsClient = true
	return s, nil
}

// Close closes the etcd client of a Store made by Dial or LocalStore, which
// also ends the keep-alive stream; a Store made by New leaves its client to
// the caller and Close does nothing.
func (s *Store) Close() error {
	if !s.ownsClient {
		return nil
	}
	// A client without a connection (LocalStore's) reports its own
	// cancellation as the result of a clean close.
	if err := s.cli.Close(); err != nil && !errors.Is(err, context.Canceled) {
		return fmt.Errorf("store: close: %w", err)
	}
	return nil
}

// Client returns the underlying etcd client (for leader election).
func (s *Store) Client() *clientv3.Client { return s.cli }

// Prefix returns the key prefix, without a trailing slash.
func (s *Store) Prefix() string { return s.prefix }

// Revision returns the store's current revision (a linearizable read).
func (s *Store) Revision(ctx context.Context) (int64, error) {
	resp, err := s.cli.Get(ctx, s.prefix+"/", clientv3.WithCountOnly())
	if err != nil {
		return 0, fmt.Errorf("store: read revision: %w", err)
	}
	return resp.Header.Revision, nil
}

// Key-space directories.
const (
	dirWorkloads   = "workloads/"
	dirStatus      = "status/"
	dirAssignments = "assignments/"
	dirRetries     = "retries/"
	dirNodes       = "nodes/"
	dirEvents      = "events/"
	leaseSuffix    = "/lease"
)

// Keys are built in one concatenation each: a placement writes several.
func (s *Store) dir(d string) string              { return s.prefix + "/" + d }
func (s *Store) workloadKey(name string) string   { return s.prefix + "/" + dirWorkloads + name }
func (s *Store) statusKey(name string) string     { return s.prefix + "/" + dirStatus + name }
func (s *Store) assignmentKey(name string) string { return s.prefix + "/" + dirAssignments + name }
func (s *Store) retryKey(name string) string      { return s.prefix + "/" + dirRetries + name }
func (s *Store) nodeKey(id string) string         { return s.prefix + "/" + dirNodes + id }
func (s *Store) nodeLeaseKey(id string) string    { return s.prefix + "/" + dirNodes + id + leaseSuffix }

// ValidateName checks that v can be used as a workload name or node id in a
// key (model.NameProblem: non-empty, at most 253 bytes, no '/', no spaces
// or control characters). field names the argument in the error.
func ValidateName(field, v string) error {
	switch p := model.NameProblem(v); {
	case p == "":
		return nil
	case v == "" || len(v) > maxNameLen:
		return fmt.Errorf("store: %s: %w: %s", field, ErrInvalid, p)
	default:
		return fmt.Errorf("store: %s %q: %w: %s", field, v, ErrInvalid, p)
	}
}

func validateRev(field string, rev int64) error {
	if rev <= 0 {
		return fmt.Errorf("store: %s: %w: must be a positive revision, got %d", field, ErrInvalid, rev)
	}
	return nil
}

// getProto reads key, the key of the object what (a kind) called name, into
// msg and returns its mod revision; a NotFoundError when the key is absent.
// Errors name the object, not the key: they reach clients.
func (s *Store) getProto(ctx context.Context, what, name, key string, msg proto.Message) (int64, error) {
	resp, err := s.cli.Get(ctx, key)
	if err != nil {
		return 0, fmt.Errorf("store: get %s %q: %w", what, name, err)
	}
	if len(resp.Kvs) == 0 {
		return 0, notFound(what, name)
	}
	kv := resp.Kvs[0]
	if err := proto.Unmarshal(kv.Value, msg); err != nil {
		return 0, fmt.Errorf("store: decode %s %q: %w", what, name, err)
	}
	return kv.ModRevision, nil
}

func marshal(what string, m proto.Message) (string, error) {
	b, err := marshalBytes(what, m)
	return string(b), err
}

// marshalBytes is marshal without the copy into a string, for the group
// commits' values.
func marshalBytes(what string, m proto.Message) ([]byte, error) {
	b, err := proto.Marshal(m)
	if err != nil {
		return nil, fmt.Errorf("store: encode %s: %w", what, err)
	}
	return b, nil
}

// casFailure explains a failed compare on key: ErrNotFound when the else
// branch's read of key came back empty, ErrConflict otherwise.
func casFailure(op, what, name string, resp *clientv3.TxnResponse, expectRev int64) error {
	if len(resp.Responses) > 0 {
		if rr := resp.Responses[0].GetResponseRange(); rr != nil && len(rr.Kvs) == 0 {
			return fmt.Errorf("store: %s: %w", op, &NotFoundError{Kind: what, Name: name})
		} else if rr != nil {
			return fmt.Errorf("store: %s %s %q: expected revision %d, found %d: %w", op, what, name, expectRev, rr.Kvs[0].ModRevision, ErrConflict)
		}
	}
	return fmt.Errorf("store: %s %s %q: %w", op, what, name, ErrConflict)
}

// GetWorkload returns the workload and its mod revision.
func (s *Store) GetWorkload(ctx context.Context, name string) (*persysv1.Workload, int64, error) {
	if err := ValidateName("workload name", name); err != nil {
		return nil, 0, err
	}
	w := &persysv1.Workload{}
	rev, err := s.getProto(ctx, "workload", name, s.workloadKey(name), w)
	if err != nil {
		return nil, 0, err
	}
	return w, rev, nil
}

func validateWorkload(w *persysv1.Workload) error {
	if w == nil {
		return fmt.Errorf("store: workload: %w: nil", ErrInvalid)
	}
	if err := ValidateName("workload name", w.GetName()); err != nil {
		return err
	}
	if w.GetUid() == "" {
		return fmt.Errorf("store: workload %q uid: %w: empty", w.GetName(), ErrInvalid)
	}
	return nil
}

// CreateWorkload stores a new workload and returns its mod revision;
// ErrExists when a workload of that name is present.
func (s *Store) CreateWorkload(ctx context.Context, w *persysv1.Workload) (int64, error) {
	c, err := s.prepareCreate(w)
	if err != nil {
		return 0, err
	}
	return s.commitCreate(ctx, c)
}

// UpdateWorkload replaces the workload if its mod revision is still
// expectRev and returns the new mod revision; ErrConflict if it changed,
// ErrNotFound if it is gone.
func (s *Store) UpdateWorkload(ctx context.Context, w *persysv1.Workload, expectRev int64) (int64, error) {
	if err := validateWorkload(w); err != nil {
		return 0, err
	}
	if err := validateRev("expectRev", expectRev); err != nil {
		return 0, err
	}
	val, err := marshal("workload", w)
	if err != nil {
		return 0, err
	}
	key := s.workloadKey(w.GetName())
	resp, err := s.cli.Txn(ctx).
		If(clientv3.Compare(clientv3.ModRevision(key), "=", expectRev)).
		Then(clientv3.OpPut(key, val)).
		Else(clientv3.OpGet(key, clientv3.WithKeysOnly())).
		Commit()
	if err != nil {
		return 0, fmt.Errorf("store: update workload %q: %w", w.GetName(), err)
	}
	if !resp.Succeeded {
		return 0, casFailure("update", "workload", w.GetName(), resp, expectRev)
	}
	return resp.Header.Revision, nil
}

// DeleteWorkloadKeys removes workloads/, status/, assignments/ and retries/
// of name in one transaction, if the workload's mod revision is still
// expectRev; ErrConflict if it changed, ErrNotFound if it is gone.
func (s *Store) DeleteWorkloadKeys(ctx context.Context, name string, expectRev int64) error {
	if err := ValidateName("workload name", name); err != nil {
		return err
	}
	if err := validateRev("expectRev", expectRev); err != nil {
		return err
	}
	key := s.workloadKey(name)
	resp, err := s.cli.Txn(ctx).
		If(clientv3.Compare(clientv3.ModRevision(key), "=", expectRev)).
		Then(
			clientv3.OpDelete(key),
			clientv3.OpDelete(s.statusKey(name)),
			clientv3.OpDelete(s.assignmentKey(name)),
			clientv3.OpDelete(s.retryKey(name)),
		).
		Else(clientv3.OpGet(key, clientv3.WithKeysOnly())).
		Commit()
	if err != nil {
		return fmt.Errorf("store: delete workload %q: %w", name, err)
	}
	if !resp.Succeeded {
		return casFailure("delete", "workload", name, resp, expectRev)
	}
	return nil
}

// GetStatus returns the workload's observed status and its mod revision:
// the stored status, or the one its newer assignment implies with the
// assignment's revision (ScheduledStatus).
func (s *Store) GetStatus(ctx context.Context, name string) (*persysv1.WorkloadStatus, int64, error) {
	if err := ValidateName("workload name", name); err != nil {
		return nil, 0, err
	}
	resp, err := s.cli.Txn(ctx).Then(clientv3.OpGet(s.statusKey(name)), clientv3.OpGet(s.assignmentKey(name))).Commit()
	if err != nil {
		return nil, 0, fmt.Errorf("store: get status of workload %q: %w", name, err)
	}
	skvs, akvs := resp.Responses[0].GetResponseRange().GetKvs(), resp.Responses[1].GetResponseRange().GetKvs()
	var srev, arev int64
	if len(skvs) > 0 {
		srev = skvs[0].ModRevision
	}
	if len(akvs) > 0 {
		arev = akvs[0].ModRevision
	}
	switch {
	case srev == 0 && arev == 0:
		return nil, 0, notFound("status of workload", name)
	case statusStands(srev, arev):
		st := &persysv1.WorkloadStatus{}
		if err := proto.Unmarshal(skvs[0].Value, st); err != nil {
			return nil, 0, fmt.Errorf("store: decode status of workload %q: %w", name, err)
		}
		return st, srev, nil
	}
	a := &persysv1.Assignment{}
	if err := proto.Unmarshal(akvs[0].Value, a); err != nil {
		return nil, 0, fmt.Errorf("store: decode assignment of workload %q: %w", name, err)
	}
	return ScheduledStatus(a), arev, nil
}

func validateStatus(st *persysv1.WorkloadStatus) error {
	if st == nil {
		return fmt.Errorf("store: status: %w: nil", ErrInvalid)
	}
	if err := ValidateName("status name", st.GetName()); err != nil {
		return err
	}
	if st.GetUid() == "" {
		return fmt.Errorf("store: status %q uid: %w: empty", st.GetName(), ErrInvalid)
	}
	return nil
}

// putStatusAttempts bounds PutStatus's read-then-compare loop; a second
// attempt only happens when the workload was deleted or re-created between
// the read and the write.
const putStatusAttempts = 3

// PutStatus writes st unconditionally, but only while workloads/<st.Name>
// exists with uid st.Uid; otherwise ErrNotFound (the status belongs to a
// workload that is gone or was re-created). etcd cannot compare a field
// inside a value, so PutStatus reads the workload, checks its uid, and
// writes in a transaction comparing the workload key's CreateRevision with
// the one read: the uid only changes by deleting and re-creating the key,
// which changes CreateRevision, while spec updates do not disturb the write.
// Callers write only on change; PutStatus does not compare with the stored
// status.
func (s *Store) PutStatus(ctx context.Context, st *persysv1.WorkloadStatus) error {
	_, err := s.PutStatusRev(ctx, st)
	return err
}

// PutStatusRev is PutStatus that also returns the status key's new mod
// revision.
func (s *Store) PutStatusRev(ctx context.Context, st *persysv1.WorkloadStatus) (int64, error) {
	if err := validateStatus(st); err != nil {
		return 0, err
	}
	val, err := marshal("status", st)
	if err != nil {
		return 0, err
	}
	wkey := s.workloadKey(st.GetName())
	for range putStatusAttempts {
		resp, err := s.cli.Get(ctx, wkey)
		if err != nil {
			return 0, fmt.Errorf("store: put status %q: read workload: %w", st.GetName(), err)
		}
		if len(resp.Kvs) == 0 {
			return 0, fmt.Errorf("store: put status %q: workload: %w", st.GetName(), ErrNotFound)
		}
		kv := resp.Kvs[0]
		w := &persysv1.Workload{}
		if err := proto.Unmarshal(kv.Value, w); err != nil {
			return 0, fmt.Errorf("store: put status %q: decode workload: %w", st.GetName(), err)
		}
		if w.GetUid() != st.GetUid() {
			return 0, fmt.Errorf("store: put status %q: workload uid %q is not %q: %w", st.GetName(), w.GetUid(), st.GetUid(), ErrNotFound)
		}
		tr, err := s.cli.Txn(ctx).
			If(clientv3.Compare(clientv3.CreateRevision(wkey), "=", kv.CreateRevision)).
			Then(clientv3.OpPut(s.statusKey(st.GetName()), val)).
			Commit()
		if err != nil {
			return 0, fmt.Errorf("store: put status %q: %w", st.GetName(), err)
		}
		if tr.Succeeded {
			return tr.Header.Revision, nil
		}
	}
	return 0, fmt.Errorf("store: put status %q: workload keeps being re-created: %w", st.GetName(), ErrConflict)
}

// GetAssignment returns the workload's assignment and its mod revision.
func (s *Store) GetAssignment(ctx context.Context, name string) (*persysv1.Assignment, int64, error) {
	if err := ValidateName("workload name", name); err != nil {
		return nil, 0, err
	}
	a := &persysv1.Assignment{}
	rev, err := s.getProto(ctx, "assignment of workload", name, s.assignmentKey(name), a)
	if err != nil {
		return nil, 0, err
	}
	return a, rev, nil
}

// CommitPlacement writes the assignment a and the status st in one
// transaction that requires workloads/<a.Name> to have mod revision
// workloadRev and assignments/<a.Name> to have mod revision assignmentRev
// (0: the assignment must not exist); ErrConflict otherwise. This is how two
// schedulers can never both place one workload. A nil st writes no status:
// readers take the stored one as older and derive ScheduledStatus(a)
// (scheduled.go). st must name the same workload and uid.
func (s *Store) CommitPlacement(ctx context.Context, a *persysv1.Assignment, st *persysv1.WorkloadStatus, workloadRev, assignmentRev int64) error {
	_, err := s.CommitPlacementRev(ctx, a, st, workloadRev, assignmentRev)
	return err
}

// CommitPlacementRev is CommitPlacement that also returns the revision of
// the commit: the new mod revision of the assignment (and of st), to pass
// as assignmentRev next time.
func (s *Store) CommitPlacementRev(ctx context.Context, a *persysv1.Assignment, st *persysv1.WorkloadStatus, workloadRev, assignmentRev int64) (int64, error) {
	p, err := s.preparePlacement(a, st, workloadRev, assignmentRev)
	if err != nil {
		return 0, err
	}
	return s.commitPlacement(ctx, p)
}

// DeleteAssignment removes the workload's assignment if its mod revision is
// still expectRev; ErrConflict if it changed, ErrNotFound if it is gone.
func (s *Store) DeleteAssignment(ctx context.Context, name string, expectRev int64) error {
	if err := ValidateName("workload name", name); err != nil {
		return err
	}
	if err := validateRev("expectRev", expectRev); err != nil {
		return err
	}
	key := s.assignmentKey(name)
	resp, err := s.cli.Txn(ctx).
		If(clientv3.Compare(clientv3.ModRevision(key), "=", expectRev)).
		Then(clientv3.OpDelete(key)).
		Else(clientv3.OpGet(key, clientv3.WithKeysOnly())).
		Commit()
	if err != nil {
		return fmt.Errorf("store: delete assignment %q: %w", name, err)
	}
	if !resp.Succeeded {
		return casFailure("delete", "assignment", name, resp, expectRev)
	}
	return nil
}
