package store

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	persysv1 "github.com/persys-dev/compute/api/persys/v1"
	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/protobuf/proto"
)

// Identity key space (under the prefix):
//
//	jointokens/<id>          persysv1.JoinToken (the public part)
//	jointokens/<id>/secret   hex SHA-256 of the token's secret; the secret
//	                         itself is never stored
//	identities/nodes/<id>    JSON NodeIdentity: the node's last issued
//	                         certificate (serial, lifetime)
//	revocations/<kind>-<v>   persysv1.Revocation; kind is serial, node or user
const (
	dirJoinTokens  = "jointokens/"
	dirNodeIDs     = "identities/nodes/"
	dirRevocations = "revocations/"
	secretSuffix   = "/secret"
)

func (s *Store) joinTokenKey(id string) string { return s.dir(dirJoinTokens) + id }
func (s *Store) nodeIdentityKey(id string) string {
	return s.dir(dirNodeIDs) + id
}

// HashSecret returns the hex SHA-256 of a join token's secret, the only
// form in which the secret is stored.
func HashSecret(secret string) string {
	sum := sha256.Sum256([]byte(secret))
	return hex.EncodeToString(sum[:])
}

// CreateJoinToken stores t with the hash of its secret (HashSecret);
// ErrExists when a token with t.Id exists.
func (s *Store) CreateJoinToken(ctx context.Context, t *persysv1.JoinToken, secretHash string) error {
	if t == nil {
		return fmt.Errorf("store: join token: %w: nil", ErrInvalid)
	}
	if err := ValidateName("join token id", t.GetId()); err != nil {
		return err
	}
	if len(secretHash) != sha256.Size*2 {
		return fmt.Errorf("store: join token %q secret hash: %w: want %d hex digits", t.GetId(), ErrInvalid, sha256.Size*2)
	}
	val, err := marshal("join token", t)
	if err != nil {
		return err
	}
	key := s.joinTokenKey(t.GetId())
	resp, err := s.cli.Txn(ctx).If(clientv3.Compare(clientv3.CreateRevision(key), "=", 0)).Then(
		clientv3.OpPut(key, val),
		clientv3.OpPut(key+secretSuffix, secretHash),
	).Commit()
	if err != nil {
		return fmt.Errorf("store: create join token %q: %w", t.GetId(), err)
	}
	if !resp.Succeeded {
		return fmt.Errorf("store: join token %q: %w", t.GetId(), ErrExists)
	}
	return nil
}

// GetJoinToken returns the token, its mod revision, and whether secret
// matches the stored hash (compared in constant time). ErrNotFound when
// absent.
func (s *Store) GetJoinToken(ctx context.Context, id, secret string) (*persysv1.JoinToken, int64, bool, error) {
	if err := ValidateName("join token id", id); err != nil {
		return nil, 0, false, err
	}
	key := s.joinTokenKey(id)
	resp, err := s.cli.Txn(ctx).Then(clientv3.OpGet(key), clientv3.OpGet(key+secretSuffix)).Commit()
	if err != nil {
		return nil, 0, false, fmt.Errorf("store: get join token %q: %w", id, err)
	}
	tk, sk := resp.Responses[0].GetResponseRange().GetKvs(), resp.Responses[1].GetResponseRange().GetKvs()
	if len(tk) == 0 || len(sk) == 0 {
		return nil, 0, false, notFound("join token", id)
	}
	t := &persysv1.JoinToken{}
	if err := proto.Unmarshal(tk[0].Value, t); err != nil {
		return nil, 0, false, fmt.Errorf("store: decode join token %q: %w", id, err)
	}
	want := sk[0].Value
	got := []byte(HashSecret(secret))
	match := subtle.ConstantTimeCompare(want, got) == 1
	return t, tk[0].ModRevision, match, nil
}

// ListJoinTokens returns every join token (public parts), sorted by id.
func (s *Store) ListJoinTokens(ctx context.Context) ([]*persysv1.JoinToken, error) {
	dir := s.dir(dirJoinTokens)
	resp, err := s.cli.Get(ctx, dir, clientv3.WithPrefix(), clientv3.WithSort(clientv3.SortByKey, clientv3.SortAscend))
	if err != nil {
		return nil, fmt.Errorf("store: list join tokens: %w", err)
	}
	var out []*persysv1.JoinToken
	for _, kv := range resp.Kvs {
		if strings.Contains(strings.TrimPrefix(string(kv.Key), dir), "/") {
			continue
		}
		t := &persysv1.JoinToken{}
		if err := proto.Unmarshal(kv.Value, t); err != nil {
			s.log.Warn("skipping undecodable join token", "key", string(kv.Key), "error", err)
			continue
		}
		out = append(out, t)
	}
	return out, nil
}

// RevokeJoinToken marks the token revoked (it stays listed); ErrNotFound
// when absent.
func (s *Store) RevokeJoinToken(ctx context.Context, id string) (*persysv1.JoinToken, error) {
	for range 5 {
		t, rev, _, err := s.GetJoinToken(ctx, id, "")
		if err != nil {
			return nil, err
		}
		t.Revoked = true
		val, err := marshal("join token", t)
		if err != nil {
			return nil, err
		}
		key := s.joinTokenKey(id)
		resp, err := s.cli.Txn(ctx).If(clientv3.Compare(clientv3.ModRevision(key), "=", rev)).Then(clientv3.OpPut(key, val)).Commit()
		if err != nil {
			return nil, fmt.Errorf("store: revoke join token %q: %w", id, err)
		}
		if resp.Succeeded {
			return t, nil
		}
	}
	return nil, fmt.Errorf("store: revoke join token %q: %w", id, ErrConflict)
}

// NodeIdentity is the record of the last certificate issued to a node
// through JoinNode or RenewCertificate.
type NodeIdentity struct {
	Serial   string    `json:"serial"`
	IssuedAt time.Time `json:"issued_at"`
	NotAfter time.Time `json:"not_after"`
	// TokenID is the join token the node joined with.
	TokenID string `json:"token_id,omitempty"`
}

// GetNodeIdentity returns the node's identity record and its mod revision;
// ErrNotFound when none.
func (s *Store) GetNodeIdentity(ctx context.Context, nodeID string) (NodeIdentity, int64, error) {
	if err := ValidateName("node id", nodeID); err != nil {
		return NodeIdentity{}, 0, err
	}
	resp, err := s.cli.Get(ctx, s.nodeIdentityKey(nodeID))
	if err != nil {
		return NodeIdentity{}, 0, fmt.Errorf("store: get node identity %q: %w", nodeID, err)
	}
	if len(resp.Kvs) == 0 {
		return NodeIdentity{}, 0, notFound("node identity", nodeID)
	}
	var ni NodeIdentity
	if err := json.Unmarshal(resp.Kvs[0].Value, &ni); err != nil {
		return NodeIdentity{}, 0, fmt.Errorf("store: decode node identity %q: %w", nodeID, err)
	}
	return ni, resp.Kvs[0].ModRevision, nil
}

// PutNodeIdentity records the node's current certificate (a renewal).
func (s *Store) PutNodeIdentity(ctx context.Context, nodeID string, ni NodeIdentity) error {
	if err := ValidateName("node id", nodeID); err != nil {
		return err
	}
	val, err := json.Marshal(ni)
	if err != nil {
		return fmt.Errorf("store: encode node identity: %w", err)
	}
	if _, err := s.cli.Put(ctx, s.nodeIdentityKey(nodeID), string(val)); err != nil {
		return fmt.Errorf("store: put node identity %q: %w", nodeID, err)
	}
	return nil
}

// CommitJoin records a join in one transaction: the token (read at
// tokenRev, with its uses incremented by the caller) and the node's new
// identity (whose record was at identityRev, 0 when absent). ErrConflict
// when either changed meanwhile, so a single-use token can never be
// redeemed twice and two joins of one node id cannot both win; the caller
// reads again and re-checks.
func (s *Store) CommitJoin(ctx context.Context, t *persysv1.JoinToken, tokenRev int64, nodeID string, identityRev int64, ni NodeIdentity) error {
	if err := ValidateName("node id", nodeID); err != nil {
		return err
	}
	if err := validateRev("join token revision", tokenRev); err != nil {
		return err
	}
	tval, err := marshal("join token", t)
	if err != nil {
		return err
	}
	nval, err := json.Marshal(ni)
	if err != nil {
		return fmt.Errorf("store: encode node identity: %w", err)
	}
	tkey, nkey := s.joinTokenKey(t.GetId()), s.nodeIdentityKey(nodeID)
	resp, err := s.cli.Txn(ctx).If(
		clientv3.Compare(clientv3.ModRevision(tkey), "=", tokenRev),
		clientv3.Compare(clientv3.ModRevision(nkey), "=", identityRev),
	).Then(
		clientv3.OpPut(tkey, tval),
		clientv3.OpPut(nkey, string(nval)),
	).Commit()
	if err != nil {
		return fmt.Errorf("store: commit join of node %q: %w", nodeID, err)
	}
	if !resp.Succeeded {
		return fmt.Errorf("store: commit join of node %q with token %q: %w", nodeID, t.GetId(), ErrConflict)
	}
	return nil
}

// revocationKey names a revocation by what it revokes.
func (s *Store) revocationKey(r *persysv1.Revocation) (string, error) {
	n := 0
	var kind, v string
	for _, c := range []struct{ kind, v string }{{"serial", strings.ToLower(r.GetSerial())}, {"node", r.GetNodeId()}, {"user", r.GetUser()}} {
		if c.v != "" {
			n++
			kind, v = c.kind, c.v
		}
	}
	if n != 1 {
		return "", fmt.Errorf("store: revocation: %w: exactly one of serial, node_id and user must be set", ErrInvalid)
	}
	if err := ValidateName("revocation "+kind, v); err != nil {
		return "", err
	}
	return s.dir(dirRevocations) + kind + "-" + v, nil
}

// PutRevocation stores r (exactly one of serial, node id or user set). A
// later revocation of the same node or user replaces the earlier one (it
// covers more certificates).
func (s *Store) PutRevocation(ctx context.Context, r *persysv1.Revocation) error {
	if r == nil {
		return fmt.Errorf("store: revocation: %w: nil", ErrInvalid)
	}
	key, err := s.revocationKey(r)
	if err != nil {
		return err
	}
	val, err := marshal("revocation", r)
	if err != nil {
		return err
	}
	if _, err := s.cli.Put(ctx, key, val); err != nil {
		return fmt.Errorf("store: put revocation: %w", err)
	}
	return nil
}

// ListRevocations returns every revocation, sorted by key, and the store
// revision it was read at.
func (s *Store) ListRevocations(ctx context.Context) ([]*persysv1.Revocation, int64, error) {
	resp, err := s.cli.Get(ctx, s.dir(dirRevocations), clientv3.WithPrefix(), clientv3.WithSort(clientv3.SortByKey, clientv3.SortAscend))
	if err != nil {
		return nil, 0, fmt.Errorf("store: list revocations: %w", err)
	}
	out := make([]*persysv1.Revocation, 0, len(resp.Kvs))
	for _, kv := range resp.Kvs {
		r := &persysv1.Revocation{}
		if err := proto.Unmarshal(kv.Value, r); err != nil {
			s.log.Warn("skipping undecodable revocation", "key", string(kv.Key), "error", err)
			continue
		}
		out = append(out, r)
	}
	return out, resp.Header.Revision, nil
}

// WatchRevocations sends the full list of revocations now and again after
// every change, until ctx ends (then the channel closes). A failed watch
// is re-established after a fresh read, so no change is missed. Only the
// newest list matters: a slow reader skips intermediate ones.
func (s *Store) WatchRevocations(ctx context.Context) <-chan []*persysv1.Revocation {
	out := make(chan []*persysv1.Revocation, 1)
	go func() {
		defer close(out)
		send := func(l []*persysv1.Revocation) {
			select {
			case <-out:
			default:
			}
			out <- l
		}
		for ctx.Err() == nil {
			list, rev, err := s.ListRevocations(ctx)
			if err != nil {
				if ctx.Err() != nil {
					return
				}
				s.log.Warn("list revocations", "error", err)
				select {
				case <-ctx.Done():
					return
				case <-time.After(time.Second):
				}
				continue
			}
			send(list)
			wctx, cancel := context.WithCancel(clientv3.WithRequireLeader(ctx))
			wch := s.cli.Watch(wctx, s.dir(dirRevocations), clientv3.WithPrefix(), clientv3.WithRev(rev+1))
			for resp := range wch {
				if resp.Err() != nil {
					break
				}
				if len(resp.Events) == 0 {
					continue
				}
				l, _, err := s.ListRevocations(ctx)
				if err != nil {
					break
				}
				send(l)
			}
			cancel()
		}
	}()
	return out
}
