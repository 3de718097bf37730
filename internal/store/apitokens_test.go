package store_test

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/protobuf/types/known/timestamppb"

	persysv1 "github.com/persys-dev/compute/api/persys/v1"
	"github.com/persys-dev/compute/internal/store"
	"github.com/persys-dev/compute/internal/store/storetest"
)

func TestAPITokensCreateGetListRevoke(t *testing.T) {
	t.Parallel()
	ctx := testCtx(t)
	s, cli := storetest.New(t)

	secret := "psy_abc123_supersecretvalue"
	sum := sha256.Sum256([]byte(secret))
	now := time.Now()
	info := &persysv1.APIToken{Id: "abc123", User: "ci", Role: "operator",
		CreatedAt: timestamppb.New(now), ExpiresAt: timestamppb.New(now.Add(time.Hour))}
	if err := s.CreateAPIToken(ctx, info, sum[:]); err != nil {
		t.Fatalf("create: %v", err)
	}
	if err := s.CreateAPIToken(ctx, info, sum[:]); !errors.Is(err, store.ErrExists) {
		t.Fatalf("create twice: got %v, want ErrExists", err)
	}
	later := &persysv1.APIToken{Id: "def456", User: "bot", Role: "viewer", CreatedAt: timestamppb.New(now.Add(time.Second))}
	other := sha256.Sum256([]byte("psy_def456_x"))
	if err := s.CreateAPIToken(ctx, later, other[:]); err != nil {
		t.Fatal(err)
	}

	got, hash, rev, err := s.GetAPIToken(ctx, "abc123")
	if err != nil {
		t.Fatalf("get: %v", err)
	}
	if got.GetUser() != "ci" || got.GetRole() != "operator" || !bytes.Equal(hash, sum[:]) || rev <= 0 {
		t.Fatalf("get: %v hash %x rev %d", got, hash, rev)
	}

	list, err := s.ListAPITokens(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(list) != 2 || list[0].GetId() != "abc123" || list[1].GetId() != "def456" {
		t.Fatalf("list: %v", list)
	}

	// Nothing under the prefix holds the token in plaintext.
	raw, err := cli.Get(ctx, s.Prefix()+"/", clientv3.WithPrefix())
	if err != nil {
		t.Fatal(err)
	}
	for _, kv := range raw.Kvs {
		if bytes.Contains(kv.Value, []byte(secret)) || bytes.Contains(kv.Value, []byte("supersecretvalue")) {
			t.Fatalf("key %s holds the token in plaintext", kv.Key)
		}
	}

	if _, err := s.RevokeAPIToken(ctx, "abc123", rev+100); !errors.Is(err, store.ErrConflict) {
		t.Fatalf("revoke with a stale revision: got %v, want ErrConflict", err)
	}
	revoked, err := s.RevokeAPIToken(ctx, "abc123", rev)
	if err != nil {
		t.Fatalf("revoke: %v", err)
	}
	if !revoked.GetRevoked() {
		t.Fatal("revoke: not marked revoked")
	}
	got, hash, _, err = s.GetAPIToken(ctx, "abc123")
	if err != nil || !got.GetRevoked() || hash != nil {
		t.Fatalf("after revoke: %v hash %x err %v (want revoked, no hash)", got, hash, err)
	}
	if _, _, _, err := s.GetAPIToken(ctx, "nosuch"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("get missing: got %v, want ErrNotFound", err)
	}
}

// An expiring token's keys carry a lease of about keep, which a
// revocation keeps; a plain token's carry none.
func TestAPITokensExpiring(t *testing.T) {
	t.Parallel()
	ctx := testCtx(t)
	s, cli := storetest.New(t)
	sum := sha256.Sum256([]byte("psy_exp1_x"))
	info := &persysv1.APIToken{Id: "exp1", User: "ci", Role: "viewer"}
	if err := s.CreateExpiringAPIToken(ctx, info, sum[:], 0); !errors.Is(err, store.ErrInvalid) {
		t.Fatalf("keep 0: %v, want ErrInvalid", err)
	}
	if err := s.CreateExpiringAPIToken(ctx, info, sum[:], time.Hour); err != nil {
		t.Fatal(err)
	}
	plain := &persysv1.APIToken{Id: "plain1", User: "ci", Role: "viewer"}
	if err := s.CreateAPIToken(ctx, plain, sum[:]); err != nil {
		t.Fatal(err)
	}
	leaseOf := func(key string) clientv3.LeaseID {
		t.Helper()
		resp, err := cli.Get(ctx, key)
		if err != nil || len(resp.Kvs) != 1 {
			t.Fatalf("get %s: %v %v", key, resp, err)
		}
		return clientv3.LeaseID(resp.Kvs[0].Lease)
	}
	key := s.Prefix() + "/apitokens/exp1"
	lease := leaseOf(key)
	if lease == 0 || leaseOf(key+"/hash") != lease {
		t.Fatalf("expiring token: leases %x and %x, want one lease on both keys", lease, leaseOf(key+"/hash"))
	}
	ttl, err := cli.TimeToLive(ctx, lease)
	if err != nil || ttl.GrantedTTL != 3600 {
		t.Fatalf("lease ttl %+v %v, want 3600 s", ttl, err)
	}
	if l := leaseOf(s.Prefix() + "/apitokens/plain1"); l != 0 {
		t.Fatalf("plain token has lease %x", l)
	}
	_, _, rev, err := s.GetAPIToken(ctx, "exp1")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.RevokeAPIToken(ctx, "exp1", rev); err != nil {
		t.Fatal(err)
	}
	if l := leaseOf(key); l != lease {
		t.Fatalf("after revoke: lease %x, want %x kept", l, lease)
	}
	// The lease's end removes the token.
	if _, err := cli.Revoke(ctx, lease); err != nil {
		t.Fatal(err)
	}
	if _, _, _, err := s.GetAPIToken(ctx, "exp1"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("after the lease ended: %v, want ErrNotFound", err)
	}
}

func TestAPITokensValidate(t *testing.T) {
	t.Parallel()
	ctx := testCtx(t)
	s, _ := storetest.New(t)
	sum := sha256.Sum256([]byte("x"))
	tests := []struct {
		name string
		info *persysv1.APIToken
		hash []byte
	}{
		{"nil", nil, sum[:]},
		{"empty id", &persysv1.APIToken{}, sum[:]},
		{"id with slash", &persysv1.APIToken{Id: "a/b"}, sum[:]},
		{"id upper case", &persysv1.APIToken{Id: "ABC"}, sum[:]},
		{"short hash", &persysv1.APIToken{Id: "abc"}, sum[:4]},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := s.CreateAPIToken(ctx, tt.info, tt.hash); !errors.Is(err, store.ErrInvalid) {
				t.Fatalf("got %v, want ErrInvalid", err)
			}
		})
	}
}
