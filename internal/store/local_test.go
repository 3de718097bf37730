package store_test

import (
	"context"
	"errors"
	"net"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"

	persysv1 "github.com/persys-dev/compute/api/persys/v1"
	"github.com/persys-dev/compute/internal/store"
	"github.com/persys-dev/compute/internal/store/storetest"
)

// TestLocalClient runs what the scheduler needs of etcd through an
// embedded server's in-process client: writes and reads, the watch, node
// leases kept alive over the keep-alive stream, the database status and
// an election.
func TestLocalClient(t *testing.T) {
	ctx := testCtx(t)
	e := storetest.Embedded(t)
	cli := e.LocalClient()
	t.Cleanup(func() { _ = cli.Close() })
	s := store.New(cli, store.Options{})

	rev0, err := s.Revision(ctx)
	if err != nil {
		t.Fatal(err)
	}
	changes := s.Watch(ctx, rev0)
	w := &persysv1.Workload{Name: "local", Uid: "u1", Revision: 1, Spec: &persysv1.WorkloadSpec{}}
	if _, err := s.CreateWorkload(ctx, w); err != nil {
		t.Fatalf("create: %v", err)
	}
	got, _, err := s.GetWorkload(ctx, "local")
	if err != nil || got.GetUid() != "u1" {
		t.Fatalf("get: %v, %v", got, err)
	}
	select {
	case c := <-changes:
		if c.Kind != store.KindWorkload || c.Key != "local" {
			t.Fatalf("first change %+v, want the workload put", c)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no watch event for the put")
	}

	// Group commits go below clientv3's KV, to the in-process KVClient:
	// one name taken, one new.
	res := s.CreateWorkloads(ctx, []*persysv1.Workload{
		{Name: "local", Uid: "u2", Revision: 1, Spec: &persysv1.WorkloadSpec{}},
		{Name: "local-2", Uid: "u3", Revision: 1, Spec: &persysv1.WorkloadSpec{}}})
	if !errors.Is(res[0].Err, store.ErrExists) || res[1].Err != nil || res[1].Rev <= 0 {
		t.Fatalf("group create over the local client: %+v", res)
	}
	if got, rev, err := s.GetWorkload(ctx, "local-2"); err != nil || got.GetUid() != "u3" || rev != res[1].Rev {
		t.Fatalf("local-2: %v at %d, %v; want u3 at %d", got, rev, err, res[1].Rev)
	}

	// Over the in-process keep-alive stream.
	lease := keepAliveRenews(t, ctx, s, cli, "n1")
	if _, err := cli.Revoke(ctx, clientv3.LeaseID(lease)); err != nil {
		t.Fatal(err)
	}
	if err := s.KeepAliveNode(ctx, lease); err == nil {
		t.Fatal("keep-alive of a revoked lease succeeded")
	}

	st, err := s.DBStatus(ctx)
	if err != nil || st.DBSize <= 0 || st.Revision <= rev0 {
		t.Fatalf("DBStatus = %+v, %v; want a size and a revision past %d", st, err, rev0)
	}

	el, err := s.NewElection(ctx, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer el.Close()
	if err := el.Campaign(ctx, "me"); err != nil {
		t.Fatalf("campaign: %v", err)
	}
	if leader, err := el.Leader(ctx); err != nil || leader != "me" {
		t.Fatalf("leader %q, %v; want me", leader, err)
	}
}

// plainAuth is the AuthInfo of a gRPC connection without TLS.
type plainAuth struct{}

func (plainAuth) AuthType() string { return "plain" }

// TestLocalClientHidesCallerIdentity: the scheduler calls the store from
// its gRPC handlers, whose contexts carry the caller's connection. The
// in-process client must not hand that to etcd, which reads a peer as its
// own TLS client when client-certificate auth is on (and failed hard on a
// connection without TLS).
func TestLocalClientHidesCallerIdentity(t *testing.T) {
	e := storetest.Embedded(t)
	cli := e.LocalClient()
	t.Cleanup(func() { _ = cli.Close() })
	ctx := peer.NewContext(testCtx(t), &peer.Peer{Addr: &net.TCPAddr{IP: net.IPv4(10, 0, 0, 1), Port: 1}, AuthInfo: plainAuth{}})
	ctx = metadata.NewIncomingContext(ctx, metadata.Pairs("token", "not-an-etcd-token"))

	if _, err := cli.Put(ctx, "k", "v"); err != nil {
		t.Fatalf("put: %v", err)
	}
	if _, err := cli.Txn(ctx).If(clientv3.Compare(clientv3.Value("k"), "=", "v")).Then(clientv3.OpPut("k", "w")).Commit(); err != nil {
		t.Fatalf("txn: %v", err)
	}
	if resp, err := cli.Get(ctx, "k"); err != nil || len(resp.Kvs) != 1 || string(resp.Kvs[0].Value) != "w" {
		t.Fatalf("get: %v, %v", resp, err)
	}
	lease, err := cli.Grant(ctx, 5)
	if err != nil {
		t.Fatalf("grant: %v", err)
	}
	if _, err := cli.KeepAliveOnce(ctx, lease.ID); err != nil {
		t.Fatalf("keep-alive: %v", err)
	}
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	wch := cli.Watch(wctx, "w")
	if _, err := cli.Put(ctx, "w", "1"); err != nil {
		t.Fatalf("put: %v", err)
	}
	select {
	case wr := <-wch:
		if err := wr.Err(); err != nil || len(wr.Events) != 1 {
			t.Fatalf("watch: %+v, %v", wr, err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no watch event")
	}
	if _, err := cli.Revoke(ctx, lease.ID); err != nil {
		t.Fatalf("revoke: %v", err)
	}
}
