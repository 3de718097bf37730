package store_test

import (
	"errors"
	"testing"
	"time"

	"github.com/persys-dev/compute/internal/store"
	"github.com/persys-dev/compute/internal/store/storetest"
)

func TestEnsureClusterIDFirstWins(t *testing.T) {
	t.Parallel()
	ctx := testCtx(t)
	s, _ := storetest.New(t)
	if _, err := s.EnsureClusterID(ctx, ""); !errors.Is(err, store.ErrInvalid) {
		t.Fatalf("empty proposal: %v, want ErrInvalid", err)
	}
	id, err := s.EnsureClusterID(ctx, "cluster-a1")
	if err != nil || id != "cluster-a1" {
		t.Fatalf("first: %q, %v", id, err)
	}
	// A replica (or a restart) with another CA folder gets the stored id.
	id, err = s.EnsureClusterID(ctx, "cluster-b2")
	if err != nil || id != "cluster-a1" {
		t.Fatalf("second: %q, %v; want cluster-a1", id, err)
	}
}

func TestNodeLeaseHolder(t *testing.T) {
	t.Parallel()
	ctx := testCtx(t)
	s, _ := storetest.New(t)

	first, err := s.GrantNodeLeaseAs(ctx, "n1", "agent-a", 30*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	// Another identity while the lease lives: refused, nothing changes.
	if _, err := s.GrantNodeLeaseAs(ctx, "n1", "agent-b", 30*time.Second); !errors.Is(err, store.ErrNodeHeld) {
		t.Fatalf("other holder: %v, want ErrNodeHeld", err)
	}
	if err := s.KeepAliveNode(ctx, first); err != nil {
		t.Fatalf("the holder's lease after a refused grant: %v", err)
	}
	// The same identity (an agent restart) takes a new lease.
	second, err := s.GrantNodeLeaseAs(ctx, "n1", "agent-a", 30*time.Second)
	if err != nil || second == first {
		t.Fatalf("same holder: %d, %v", second, err)
	}
	// An agent without an identity is not refused (it predates holders).
	third, err := s.GrantNodeLease(ctx, "n1", 30*time.Second)
	if err != nil {
		t.Fatalf("no holder: %v", err)
	}
	// Unknown holder on the key: anyone takes it.
	fourth, err := s.GrantNodeLeaseAs(ctx, "n1", "agent-b", 30*time.Second)
	if err != nil {
		t.Fatalf("holder after an unknown one: %v", err)
	}
	if err := s.KeepAliveNode(ctx, third); !errors.Is(err, store.ErrLeaseNotFound) {
		t.Fatalf("replaced lease not revoked: %v", err)
	}
	// Once the lease is gone, another identity may register.
	if err := s.RevokeNodeLease(ctx, fourth); err != nil {
		t.Fatal(err)
	}
	if _, err := s.GrantNodeLeaseAs(ctx, "n1", "agent-c", 30*time.Second); err != nil {
		t.Fatalf("after the lease ended: %v", err)
	}
}
