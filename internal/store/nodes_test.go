package store_test

import (
	"errors"
	"testing"
	"time"

	persysv1 "github.com/persys-dev/compute/api/persys/v1"
	"github.com/persys-dev/compute/internal/store"
	"github.com/persys-dev/compute/internal/store/storetest"
	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/protobuf/proto"
)

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", timeout, what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func TestNodes(t *testing.T) {
	t.Parallel()
	ctx := testCtx(t)
	s, _ := storetest.New(t)

	if _, err := s.GetNode(ctx, "n1"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("missing node: %v", err)
	}
	n1 := &persysv1.Node{Id: "n1", Address: "10.0.0.1:7443", State: persysv1.NodeState_NODE_STATE_READY}
	n2 := &persysv1.Node{Id: "n2", Address: "10.0.0.2:7443", Cordoned: true}
	for _, n := range []*persysv1.Node{n2, n1} {
		if _, err := s.PutNode(ctx, n); err != nil {
			t.Fatalf("put %s: %v", n.Id, err)
		}
	}
	if _, err := s.GrantNodeLease(ctx, "n1", 30*time.Second); err != nil {
		t.Fatalf("grant: %v", err)
	}
	got, err := s.GetNode(ctx, "n1")
	if err != nil || !proto.Equal(got, n1) {
		t.Fatalf("get: %v, %v", got, err)
	}
	list, err := s.ListNodes(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(list) != 2 || list[0].GetId() != "n1" || list[1].GetId() != "n2" {
		t.Fatalf("list skipped no lease key or misordered: %v", list)
	}
	if err := s.DeleteNode(ctx, "n1"); err != nil {
		t.Fatal(err)
	}
	if alive, _ := s.NodeAlive(ctx, "n1"); alive {
		t.Fatal("liveness key survived DeleteNode")
	}
	if list, _ := s.ListNodes(ctx); len(list) != 1 {
		t.Fatalf("after delete: %v", list)
	}
}

func TestNodeLeaseExpiry(t *testing.T) {
	t.Parallel()
	ctx := testCtx(t)
	s, cli := storetest.New(t)

	lease, err := s.GrantNodeLease(ctx, "n1", time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if alive, err := s.NodeAlive(ctx, "n1"); err != nil || !alive {
		t.Fatalf("alive after grant: %v, %v", alive, err)
	}

	// Keep-alives renew without creating revisions.
	before, err := cli.Get(ctx, "any")
	if err != nil {
		t.Fatal(err)
	}
	for range 3 {
		if err := s.KeepAliveNode(ctx, lease); err != nil {
			t.Fatalf("keepalive: %v", err)
		}
	}
	after, err := cli.Get(ctx, "any")
	if err != nil {
		t.Fatal(err)
	}
	if before.Header.Revision != after.Header.Revision {
		t.Fatalf("keep-alive moved the revision from %d to %d", before.Header.Revision, after.Header.Revision)
	}

	waitFor(t, 15*time.Second, "lease expiry", func() bool {
		alive, err := s.NodeAlive(ctx, "n1")
		return err == nil && !alive
	})
	if err := s.KeepAliveNode(ctx, lease); !errors.Is(err, store.ErrLeaseNotFound) {
		t.Fatalf("keepalive after expiry: %v", err)
	}
}

func TestNodeLeaseRegrantAndRevoke(t *testing.T) {
	t.Parallel()
	ctx := testCtx(t)
	s, _ := storetest.New(t)

	first, err := s.GrantNodeLease(ctx, "n1", 30*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	second, err := s.GrantNodeLease(ctx, "n1", 30*time.Second)
	if err != nil || second == first {
		t.Fatalf("regrant: %d, %v", second, err)
	}
	if err := s.KeepAliveNode(ctx, first); !errors.Is(err, store.ErrLeaseNotFound) {
		t.Fatalf("previous lease not revoked: %v", err)
	}
	if alive, _ := s.NodeAlive(ctx, "n1"); !alive {
		t.Fatal("not alive on the new lease")
	}
	if err := s.RevokeNodeLease(ctx, second); err != nil {
		t.Fatal(err)
	}
	if alive, _ := s.NodeAlive(ctx, "n1"); alive {
		t.Fatal("alive after revoke")
	}
	if err := s.RevokeNodeLease(ctx, second); err != nil {
		t.Fatalf("second revoke: %v", err)
	}
}

// A node's lease is extended without a gap in its liveness: the key moves
// to a new lease of the longer TTL with its holder, the old lease is
// revoked, and an extension from a lease the key no longer holds changes
// nothing.
func TestExtendNodeLease(t *testing.T) {
	t.Parallel()
	ctx := testCtx(t)
	s, cli := storetest.New(t)

	first, err := s.GrantNodeLeaseAs(ctx, "n1", "agent-a", 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	longer, err := s.ExtendNodeLease(ctx, "n1", first, 60*time.Second)
	if err != nil || longer == first {
		t.Fatalf("extend: %d, %v", longer, err)
	}
	if err := s.KeepAliveNode(ctx, first); !errors.Is(err, store.ErrLeaseNotFound) {
		t.Fatalf("the lease extended from is still alive: %v", err)
	}
	ttl, err := cli.TimeToLive(ctx, clientv3.LeaseID(longer))
	if err != nil || ttl.GrantedTTL != 60 {
		t.Fatalf("new lease granted TTL %d (%v), want 60", ttl.GrantedTTL, err)
	}
	if alive, _ := s.NodeAlive(ctx, "n1"); !alive {
		t.Fatal("not alive on the extended lease")
	}
	if _, err := s.GrantNodeLeaseAs(ctx, "n1", "agent-b", 10*time.Second); !errors.Is(err, store.ErrNodeHeld) {
		t.Fatalf("another identity after the extension: %v, want ErrNodeHeld (the holder is kept)", err)
	}
	if _, err := s.ExtendNodeLease(ctx, "n1", first, 90*time.Second); !errors.Is(err, store.ErrConflict) {
		t.Fatalf("extend from a lease the key left: %v, want ErrConflict", err)
	}
	if err := s.KeepAliveNode(ctx, longer); err != nil {
		t.Fatalf("a refused extension touched the lease held: %v", err)
	}
}
