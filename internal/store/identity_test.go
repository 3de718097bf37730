package store_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/protobuf/types/known/timestamppb"

	persysv1 "github.com/persys-dev/compute/api/persys/v1"
	"github.com/persys-dev/compute/internal/store"
	"github.com/persys-dev/compute/internal/store/storetest"
)

func identityCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func TestJoinTokensStoredHashed(t *testing.T) {
	s, cli := storetest.New(t)
	ctx := identityCtx(t)
	const secret = "5ec2e75ec2e75ec2e75ec2e75ec2e7aa"
	tok := &persysv1.JoinToken{Id: "abc123", ExpiresAt: timestamppb.New(time.Now().Add(time.Hour)), MaxUses: 1, Labels: map[string]string{"zone": "a"}}
	if err := s.CreateJoinToken(ctx, tok, store.HashSecret(secret)); err != nil {
		t.Fatal(err)
	}
	if err := s.CreateJoinToken(ctx, tok, store.HashSecret(secret)); !errors.Is(err, store.ErrExists) {
		t.Fatalf("second create: %v, want ErrExists", err)
	}
	if err := s.CreateJoinToken(ctx, &persysv1.JoinToken{Id: "x"}, "short"); !errors.Is(err, store.ErrInvalid) {
		t.Fatalf("bad hash: %v, want ErrInvalid", err)
	}
	// Read etcd raw: the secret is nowhere, its hash is.
	raw, err := cli.Get(ctx, s.Prefix()+"/", clientv3.WithPrefix())
	if err != nil {
		t.Fatal(err)
	}
	sawHash := false
	for _, kv := range raw.Kvs {
		if strings.Contains(string(kv.Value), secret) || strings.Contains(string(kv.Key), secret) {
			t.Fatalf("etcd key %s holds the secret in plain text", kv.Key)
		}
		sawHash = sawHash || string(kv.Value) == store.HashSecret(secret)
	}
	if !sawHash {
		t.Fatal("the secret's hash is not stored")
	}
	got, rev, match, err := s.GetJoinToken(ctx, "abc123", secret)
	if err != nil || !match || got.GetLabels()["zone"] != "a" || rev == 0 {
		t.Fatalf("GetJoinToken = %v rev %d match %v, %v", got, rev, match, err)
	}
	if _, _, match, _ := s.GetJoinToken(ctx, "abc123", "wrong"); match {
		t.Fatal("a wrong secret matched")
	}
	if _, _, _, err := s.GetJoinToken(ctx, "nope", secret); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("unknown token: %v", err)
	}
	list, err := s.ListJoinTokens(ctx)
	if err != nil || len(list) != 1 || list[0].GetId() != "abc123" {
		t.Fatalf("ListJoinTokens = %v, %v", list, err)
	}

	// CommitJoin: the first commit against a revision wins, a second one
	// against the same revision conflicts and stores nothing.
	got.Uses++
	ni := store.NodeIdentity{Serial: "a1", IssuedAt: time.Now(), NotAfter: time.Now().Add(time.Hour), TokenID: "abc123"}
	if err := s.CommitJoin(ctx, got, rev, "node-1", 0, ni); err != nil {
		t.Fatal(err)
	}
	if err := s.CommitJoin(ctx, got, rev, "node-2", 0, ni); !errors.Is(err, store.ErrConflict) {
		t.Fatalf("second commit on the same token revision: %v, want ErrConflict", err)
	}
	if _, _, err := s.GetNodeIdentity(ctx, "node-2"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("a conflicting commit stored an identity: %v", err)
	}
	rec, nrev, err := s.GetNodeIdentity(ctx, "node-1")
	if err != nil || rec.Serial != "a1" || nrev == 0 {
		t.Fatalf("GetNodeIdentity = %+v, %v", rec, err)
	}
	after, _, _, _ := s.GetJoinToken(ctx, "abc123", secret)
	if after.GetUses() != 1 {
		t.Fatalf("uses = %d, want 1", after.GetUses())
	}
	revoked, err := s.RevokeJoinToken(ctx, "abc123")
	if err != nil || !revoked.GetRevoked() {
		t.Fatalf("RevokeJoinToken = %v, %v", revoked, err)
	}
	if _, err := s.RevokeJoinToken(ctx, "nope"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("revoke unknown: %v", err)
	}
}

func TestRevocationsWatch(t *testing.T) {
	s, _ := storetest.New(t)
	ctx, cancel := context.WithCancel(identityCtx(t))
	defer cancel()
	for _, bad := range []*persysv1.Revocation{nil, {}, {Serial: "ab", NodeId: "n"}, {NodeId: "a/b"}} {
		if err := s.PutRevocation(ctx, bad); !errors.Is(err, store.ErrInvalid) {
			t.Errorf("PutRevocation(%v) = %v, want ErrInvalid", bad, err)
		}
	}
	if err := s.PutRevocation(ctx, &persysv1.Revocation{Serial: "AB12", RevokedAt: timestamppb.Now()}); err != nil {
		t.Fatal(err)
	}
	ch := s.WatchRevocations(ctx)
	first := <-ch
	if len(first) != 1 || first[0].GetSerial() != "AB12" {
		t.Fatalf("first list = %v", first)
	}
	if err := s.PutRevocation(ctx, &persysv1.Revocation{NodeId: "node-9", RevokedAt: timestamppb.Now()}); err != nil {
		t.Fatal(err)
	}
	deadline := time.After(20 * time.Second)
	for {
		select {
		case l := <-ch:
			if len(l) == 2 {
				cancel()
				for range ch {
				}
				return
			}
		case <-deadline:
			t.Fatal("the watch did not deliver the second revocation")
		}
	}
}
