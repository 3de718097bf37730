package store

import (
	"context"
	"crypto/sha256"
	"fmt"
	"sort"
	"strings"
	"time"

	persysv1 "github.com/persys-dev/compute/api/persys/v1"
	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/protobuf/proto"
)

// API tokens live under apitokens/:
//
//	apitokens/<id>        persysv1.APIToken (id, user, role, expiry, revoked)
//	apitokens/<id>/hash   the SHA-256 of the whole token, 32 raw bytes
//
// The token itself is never stored: only its hash, so that a read of etcd
// cannot be replayed against the gateway.
const (
	dirAPITokens = "apitokens/"
	hashSuffix   = "/hash"
	// maxTokenIDLen bounds a token id (the id part of psy_<id>_<secret>).
	maxTokenIDLen = 64
)

func (s *Store) apiTokenKey(id string) string     { return s.dir(dirAPITokens) + id }
func (s *Store) apiTokenHashKey(id string) string { return s.dir(dirAPITokens) + id + hashSuffix }

func validateTokenID(id string) error {
	if id == "" {
		return fmt.Errorf("store: api token id: %w: empty", ErrInvalid)
	}
	if len(id) > maxTokenIDLen {
		return fmt.Errorf("store: api token id: %w: longer than %d bytes", ErrInvalid, maxTokenIDLen)
	}
	for _, r := range id {
		if !(r >= 'a' && r <= 'z' || r >= '0' && r <= '9') {
			return fmt.Errorf("store: api token id %q: %w: only lowercase letters and digits are allowed", id, ErrInvalid)
		}
	}
	return nil
}

// CreateAPIToken stores info and the SHA-256 hash of the token (hash must
// be sha256.Size bytes) in one transaction. It fails with ErrExists when
// the id is taken.
func (s *Store) CreateAPIToken(ctx context.Context, info *persysv1.APIToken, hash []byte) error {
	return s.createAPIToken(ctx, info, hash, 0)
}

// CreateExpiringAPIToken is CreateAPIToken for a short-lived token whose
// keys etcd deletes after keep (a lease of their own, kept by a
// revocation): console sessions, one per login, leave nothing behind.
func (s *Store) CreateExpiringAPIToken(ctx context.Context, info *persysv1.APIToken, hash []byte, keep time.Duration) error {
	if keep <= 0 {
		return fmt.Errorf("store: api token %s keep: %w: must be positive, got %s", info.GetId(), ErrInvalid, keep)
	}
	return s.createAPIToken(ctx, info, hash, keep)
}

func (s *Store) createAPIToken(ctx context.Context, info *persysv1.APIToken, hash []byte, keep time.Duration) error {
	if info == nil {
		return fmt.Errorf("store: api token: %w: nil", ErrInvalid)
	}
	if err := validateTokenID(info.GetId()); err != nil {
		return err
	}
	if len(hash) != sha256.Size {
		return fmt.Errorf("store: api token %s hash: %w: want %d bytes, got %d", info.GetId(), ErrInvalid, sha256.Size, len(hash))
	}
	val, err := marshal("api token", info)
	if err != nil {
		return err
	}
	var opts []clientv3.OpOption
	if keep > 0 {
		lease, err := s.cli.Grant(ctx, leaseSeconds(keep))
		if err != nil {
			return fmt.Errorf("store: api token %s lease: %w", info.GetId(), err)
		}
		opts = append(opts, clientv3.WithLease(lease.ID))
	}
	key := s.apiTokenKey(info.GetId())
	resp, err := s.cli.Txn(ctx).
		If(clientv3.Compare(clientv3.CreateRevision(key), "=", 0)).
		Then(clientv3.OpPut(key, val, opts...), clientv3.OpPut(s.apiTokenHashKey(info.GetId()), string(hash), opts...)).
		Commit()
	if err != nil {
		return fmt.Errorf("store: create api token %s: %w", info.GetId(), err)
	}
	if !resp.Succeeded {
		return fmt.Errorf("store: api token %s: %w", info.GetId(), ErrExists)
	}
	return nil
}

// GetAPIToken returns a token's info, the hash stored with it and the
// info's mod revision (for RevokeAPIToken); ErrNotFound when absent.
func (s *Store) GetAPIToken(ctx context.Context, id string) (*persysv1.APIToken, []byte, int64, error) {
	if err := validateTokenID(id); err != nil {
		return nil, nil, 0, err
	}
	resp, err := s.cli.Txn(ctx).Then(
		clientv3.OpGet(s.apiTokenKey(id)),
		clientv3.OpGet(s.apiTokenHashKey(id)),
	).Commit()
	if err != nil {
		return nil, nil, 0, fmt.Errorf("store: get api token %s: %w", id, err)
	}
	infoKvs := resp.Responses[0].GetResponseRange().GetKvs()
	hashKvs := resp.Responses[1].GetResponseRange().GetKvs()
	if len(infoKvs) == 0 {
		return nil, nil, 0, notFound("api token", id)
	}
	info := &persysv1.APIToken{}
	if err := proto.Unmarshal(infoKvs[0].Value, info); err != nil {
		return nil, nil, 0, fmt.Errorf("store: decode api token %s: %w", id, err)
	}
	var hash []byte
	if len(hashKvs) > 0 {
		hash = hashKvs[0].Value
	}
	return info, hash, infoKvs[0].ModRevision, nil
}

// ListAPITokens returns every token's info (never a hash), sorted by
// creation time, then id.
func (s *Store) ListAPITokens(ctx context.Context) ([]*persysv1.APIToken, error) {
	resp, err := s.cli.Get(ctx, s.dir(dirAPITokens), clientv3.WithPrefix())
	if err != nil {
		return nil, fmt.Errorf("store: list api tokens: %w", err)
	}
	var out []*persysv1.APIToken
	for _, kv := range resp.Kvs {
		if strings.HasSuffix(string(kv.Key), hashSuffix) {
			continue
		}
		info := &persysv1.APIToken{}
		if err := proto.Unmarshal(kv.Value, info); err != nil {
			s.log.Warn("skipping undecodable api token", "key", string(kv.Key), "error", err)
			continue
		}
		out = append(out, info)
	}
	sort.Slice(out, func(i, j int) bool {
		ti, tj := out[i].GetCreatedAt().AsTime(), out[j].GetCreatedAt().AsTime()
		if !ti.Equal(tj) {
			return ti.Before(tj)
		}
		return out[i].GetId() < out[j].GetId()
	})
	return out, nil
}

// RevokeAPIToken marks the token revoked and deletes its hash, so that it
// can never authenticate again; the info stays for listing. It compares
// the info's mod revision with rev (from GetAPIToken): ErrConflict when it
// changed, ErrNotFound when the token is gone.
func (s *Store) RevokeAPIToken(ctx context.Context, id string, rev int64) (*persysv1.APIToken, error) {
	info, _, cur, err := s.GetAPIToken(ctx, id)
	if err != nil {
		return nil, err
	}
	if err := validateRev("api token revision", rev); err != nil {
		return nil, err
	}
	if cur != rev {
		return nil, fmt.Errorf("store: revoke api token %s: %w", id, ErrConflict)
	}
	next := proto.CloneOf(info)
	next.Revoked = true
	val, err := marshal("api token", next)
	if err != nil {
		return nil, err
	}
	key := s.apiTokenKey(id)
	resp, err := s.cli.Txn(ctx).
		If(clientv3.Compare(clientv3.ModRevision(key), "=", rev)).
		// The key exists (its revision was compared): it keeps its lease.
		Then(clientv3.OpPut(key, val, clientv3.WithIgnoreLease()), clientv3.OpDelete(s.apiTokenHashKey(id))).
		Else(clientv3.OpGet(key)).
		Commit()
	if err != nil {
		return nil, fmt.Errorf("store: revoke api token %s: %w", id, err)
	}
	if !resp.Succeeded {
		return nil, casFailure("revoke", "api token", id, resp, rev)
	}
	return next, nil
}
