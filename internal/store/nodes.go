package store

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	persysv1 "github.com/persys-dev/compute/api/persys/v1"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/protobuf/proto"
)

// PutNode writes the node record. Call it at registration and when the
// node's state or cordon flag changes, never per heartbeat: live figures
// (usage, last heartbeat) belong in the scheduler's memory. It returns the
// revision of the write.
func (s *Store) PutNode(ctx context.Context, n *persysv1.Node) (rev int64, err error) {
	if n == nil {
		return 0, fmt.Errorf("store: node: %w: nil", ErrInvalid)
	}
	if err := ValidateName("node id", n.GetId()); err != nil {
		return 0, err
	}
	val, err := marshal("node", n)
	if err != nil {
		return 0, err
	}
	resp, err := s.cli.Put(ctx, s.nodeKey(n.GetId()), val)
	if err != nil {
		return 0, fmt.Errorf("store: put node %q: %w", n.GetId(), err)
	}
	return resp.Header.GetRevision(), nil
}

// GetNode returns the node record; ErrNotFound when absent.
func (s *Store) GetNode(ctx context.Context, id string) (*persysv1.Node, error) {
	if err := ValidateName("node id", id); err != nil {
		return nil, err
	}
	n := &persysv1.Node{}
	if _, err := s.getProto(ctx, "node", id, s.nodeKey(id), n); err != nil {
		return nil, err
	}
	return n, nil
}

// ListNodes returns every node record, sorted by id. Liveness keys are not
// nodes and are skipped; use NodeAlive or Load for liveness.
func (s *Store) ListNodes(ctx context.Context) ([]*persysv1.Node, error) {
	dir := s.dir(dirNodes)
	resp, err := s.cli.Get(ctx, dir, clientv3.WithPrefix(), clientv3.WithSort(clientv3.SortByKey, clientv3.SortAscend))
	if err != nil {
		return nil, fmt.Errorf("store: list nodes: %w", err)
	}
	nodes := make([]*persysv1.Node, 0, len(resp.Kvs))
	for _, kv := range resp.Kvs {
		id := strings.TrimPrefix(string(kv.Key), dir)
		if strings.Contains(id, "/") {
			continue
		}
		n := &persysv1.Node{}
		if err := proto.Unmarshal(kv.Value, n); err != nil {
			s.log.Warn("skipping undecodable node", "key", string(kv.Key), "error", err)
			continue
		}
		nodes = append(nodes, n)
	}
	return nodes, nil
}

// DeleteNode removes the node record and its liveness key in one
// transaction. Missing keys are not an error.
func (s *Store) DeleteNode(ctx context.Context, id string) error {
	if err := ValidateName("node id", id); err != nil {
		return err
	}
	_, err := s.cli.Txn(ctx).Then(
		clientv3.OpDelete(s.nodeKey(id)),
		clientv3.OpDelete(s.nodeLeaseKey(id)),
	).Commit()
	if err != nil {
		return fmt.Errorf("store: delete node %q: %w", id, err)
	}
	return nil
}

// leaseSeconds rounds ttl up to whole seconds, at least one.
func leaseSeconds(ttl time.Duration) int64 {
	sec := int64((ttl + time.Second - 1) / time.Second)
	return max(sec, 1)
}

// ErrNodeHeld: a node id's lease is alive and held by another identity.
var ErrNodeHeld = errors.New("held by another identity")

// GrantNodeLease is GrantNodeLeaseAs with no holder identity.
func (s *Store) GrantNodeLease(ctx context.Context, id string, ttl time.Duration) (int64, error) {
	return s.GrantNodeLeaseAs(ctx, id, "", ttl)
}

// grantTries bounds the retries when the liveness key changes between the
// read and the write of GrantNodeLeaseAs.
const grantTries = 5

// GrantNodeLeaseAs grants a lease of ttl (rounded up to whole seconds; etcd
// may raise very short TTLs to its minimum) and binds nodes/<id>/lease to
// it, with holder (the registering agent's identity) as the key's value. A
// lease the key was bound to before is revoked. The node is alive until the
// lease expires; KeepAliveNode extends it.
//
// While the key is alive with another non-empty holder, it fails with
// ErrNodeHeld and changes nothing: two agents never share one node id. An
// empty holder, on either side, is an agent that predates holders and is
// not refused.
func (s *Store) GrantNodeLeaseAs(ctx context.Context, id, holder string, ttl time.Duration) (int64, error) {
	if err := ValidateName("node id", id); err != nil {
		return 0, err
	}
	if ttl <= 0 {
		return 0, fmt.Errorf("store: lease ttl: %w: must be positive, got %s", ErrInvalid, ttl)
	}
	key := s.nodeLeaseKey(id)
	for try := 0; try < grantTries; try++ {
		// Not keys-only: that read path omits the lease id.
		cur, err := s.cli.Get(ctx, key)
		if err != nil {
			return 0, fmt.Errorf("store: read lease of node %q: %w", id, err)
		}
		var modRev int64
		var old clientv3.LeaseID
		if len(cur.Kvs) > 0 {
			kv := cur.Kvs[0]
			if held := string(kv.Value); held != "" && holder != "" && held != holder {
				return 0, fmt.Errorf("store: node %q: %w (%s), and its lease is alive", id, ErrNodeHeld, held)
			}
			modRev, old = kv.ModRevision, clientv3.LeaseID(kv.Lease)
		}
		lease, bound, err := s.bindNewLease(ctx, id, key, holder, modRev, ttl)
		if err != nil {
			return 0, err
		}
		if !bound {
			// Another registration (or the lease's expiry) came between.
			continue
		}
		if old != 0 && old != lease {
			// Only the liveness key was bound to it, and that key has moved.
			s.revokeQuietly(old)
		}
		return int64(lease), nil
	}
	return 0, fmt.Errorf("store: bind lease for node %q: %w: the liveness key kept changing", id, ErrConflict)
}

// ExtendNodeLease moves node id's liveness key from its lease old to a new
// lease of ttl, keeping the key's holder, and revokes old: the node stays
// alive throughout, and the key's watchers see a put, not a delete. It
// fails with ErrConflict, changing nothing, when the key is no longer
// bound to old (the node registered again, or its lease expired).
func (s *Store) ExtendNodeLease(ctx context.Context, id string, old int64, ttl time.Duration) (int64, error) {
	if err := ValidateName("node id", id); err != nil {
		return 0, err
	}
	if old == 0 || ttl <= 0 {
		return 0, fmt.Errorf("store: extend lease of node %q: %w: lease %x, ttl %s", id, ErrInvalid, old, ttl)
	}
	key := s.nodeLeaseKey(id)
	cur, err := s.cli.Get(ctx, key)
	if err != nil {
		return 0, fmt.Errorf("store: read lease of node %q: %w", id, err)
	}
	if len(cur.Kvs) == 0 || cur.Kvs[0].Lease != old {
		return 0, fmt.Errorf("store: extend lease of node %q: %w: the liveness key is not bound to lease %x", id, ErrConflict, old)
	}
	kv := cur.Kvs[0]
	lease, bound, err := s.bindNewLease(ctx, id, key, string(kv.Value), kv.ModRevision, ttl)
	if err != nil {
		return 0, err
	}
	if !bound {
		return 0, fmt.Errorf("store: extend lease of node %q: %w: the liveness key changed", id, ErrConflict)
	}
	s.revokeQuietly(clientv3.LeaseID(old))
	return int64(lease), nil
}

// bindNewLease grants a lease of ttl and binds node id's liveness key to
// it with holder as its value, if the key's mod revision is still modRev
// (0: absent); bound is false, and the new lease revoked, when it is not.
func (s *Store) bindNewLease(ctx context.Context, id, key, holder string, modRev int64, ttl time.Duration) (lease clientv3.LeaseID, bound bool, err error) {
	grant, err := s.cli.Grant(ctx, leaseSeconds(ttl))
	if err != nil {
		return 0, false, fmt.Errorf("store: grant lease for node %q: %w", id, err)
	}
	resp, err := s.cli.Txn(ctx).
		If(clientv3.Compare(clientv3.ModRevision(key), "=", modRev)).
		Then(clientv3.OpPut(key, holder, clientv3.WithLease(grant.ID))).
		Commit()
	if err != nil {
		s.revokeQuietly(grant.ID)
		return 0, false, fmt.Errorf("store: bind lease for node %q: %w", id, err)
	}
	if !resp.Succeeded {
		s.revokeQuietly(grant.ID)
		return 0, false, nil
	}
	return grant.ID, true, nil
}

func (s *Store) revokeQuietly(id clientv3.LeaseID) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := s.cli.Revoke(ctx, id); err != nil && !errors.Is(err, rpctypes.ErrLeaseNotFound) {
		s.log.Warn("revoke lease", "lease", int64(id), "error", err)
	}
}

// KeepAliveNode renews the lease once; ErrLeaseNotFound when it has expired
// or was revoked (the node must register again). Keep-alives do not create
// etcd revisions, so heartbeats do not grow the history. Renewals of all
// leases share one keep-alive stream (see leaseKeeper): a call costs one
// message each way, not a new stream. It returns by the time ctx is done;
// a broken stream fails the calls in flight and the next call reopens it.
func (s *Store) KeepAliveNode(ctx context.Context, leaseID int64) error {
	if leaseID == 0 {
		return fmt.Errorf("store: lease id: %w: zero", ErrInvalid)
	}
	ttl, err := s.ka.keepAlive(ctx, leaseID)
	if err != nil {
		return fmt.Errorf("store: keep lease %x alive: %w", leaseID, err)
	}
	if ttl <= 0 {
		return fmt.Errorf("store: keep lease %x alive: %w", leaseID, ErrLeaseNotFound)
	}
	return nil
}

// RevokeNodeLease ends a node's liveness at once (graceful leave); the
// liveness key disappears with it. An unknown lease is not an error.
func (s *Store) RevokeNodeLease(ctx context.Context, leaseID int64) error {
	if leaseID == 0 {
		return fmt.Errorf("store: lease id: %w: zero", ErrInvalid)
	}
	if _, err := s.cli.Revoke(ctx, clientv3.LeaseID(leaseID)); err != nil && !errors.Is(err, rpctypes.ErrLeaseNotFound) {
		return fmt.Errorf("store: revoke lease %x: %w", leaseID, err)
	}
	return nil
}

// NodeAlive reports whether the node's liveness key exists.
func (s *Store) NodeAlive(ctx context.Context, id string) (bool, error) {
	if err := ValidateName("node id", id); err != nil {
		return false, err
	}
	resp, err := s.cli.Get(ctx, s.nodeLeaseKey(id), clientv3.WithCountOnly())
	if err != nil {
		return false, fmt.Errorf("store: node %q liveness: %w", id, err)
	}
	return resp.Count > 0, nil
}
