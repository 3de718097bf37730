package scheduler_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	persysv1 "github.com/persys-dev/compute/api/persys/v1"
)

// TestNewTermRenewsLeases: a scheduler that begins to lead renews the
// lease of every node etcd shows alive, so that agents looking for the new
// leader do not lose their nodes while they look.
func TestNewTermRenewsLeases(t *testing.T) {
	c := newBareCluster(t, clusterOptions{})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	// A node that registered with an earlier leader: its lease is granted
	// and nobody renews it.
	const ttl = 20 * time.Second
	lease, err := c.store.GrantNodeLease(ctx, c.nodeID, ttl)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.store.PutNode(ctx, &persysv1.Node{Id: c.nodeID, Address: "127.0.0.1:1", LeaseId: lease,
		State: persysv1.NodeState_NODE_STATE_READY}); err != nil {
		t.Fatal(err)
	}
	// Let it age so that a renewal shows in its remaining TTL.
	time.Sleep(3 * time.Second)
	before, err := c.etcd.TimeToLive(ctx, clientv3.LeaseID(lease))
	if err != nil {
		t.Fatal(err)
	}

	c.startScheduler("127.0.0.1:0")
	waitFor(t, "the new term's lease renewal", waitLong, func() (bool, string) {
		n := c.metric("persys_scheduler_term_leases_renewed_total", nil)
		return n == 1, fmt.Sprintf("%v renewed", n)
	})
	after, err := c.etcd.TimeToLive(ctx, clientv3.LeaseID(lease))
	if err != nil {
		t.Fatal(err)
	}
	if after.TTL <= before.TTL {
		t.Fatalf("lease TTL left %ds after the new term began, %ds before: not renewed", after.TTL, before.TTL)
	}
}
