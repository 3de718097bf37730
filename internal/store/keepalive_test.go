package store_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/persys-dev/compute/internal/store"
	"github.com/persys-dev/compute/internal/store/storetest"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
)

func remainingTTL(t *testing.T, ctx context.Context, cli *clientv3.Client, lease int64) int64 {
	t.Helper()
	resp, err := cli.TimeToLive(ctx, clientv3.LeaseID(lease))
	if err != nil {
		t.Fatalf("time to live: %v", err)
	}
	return resp.TTL
}

// keepAliveRenews grants node a 10 s lease, lets it run down and checks
// that KeepAliveNode brings it back near 10 s; it returns the lease.
func keepAliveRenews(t *testing.T, ctx context.Context, s *store.Store, cli *clientv3.Client, node string) int64 {
	t.Helper()
	lease, err := s.GrantNodeLease(ctx, node, 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, "the lease to run down", func() bool {
		return remainingTTL(t, ctx, cli, lease) <= 8
	})
	if err := s.KeepAliveNode(ctx, lease); err != nil {
		t.Fatalf("keepalive: %v", err)
	}
	if ttl := remainingTTL(t, ctx, cli, lease); ttl < 9 {
		t.Fatalf("TTL %d after keep-alive, want it back near 10", ttl)
	}
	return lease
}

func TestKeepAliveNodeExtendsTTL(t *testing.T) {
	t.Parallel()
	ctx := testCtx(t)
	s, cli := storetest.New(t)

	keepAliveRenews(t, ctx, s, cli, "n1")
	if alive, err := s.NodeAlive(ctx, "n1"); err != nil || !alive {
		t.Fatalf("alive: %v, %v", alive, err)
	}
}

func TestKeepAliveNodeUnknownLease(t *testing.T) {
	t.Parallel()
	ctx := testCtx(t)
	s, _ := storetest.New(t)

	if err := s.KeepAliveNode(ctx, 0x1234); !errors.Is(err, store.ErrLeaseNotFound) {
		t.Fatalf("unknown lease: %v", err)
	}
	if err := s.KeepAliveNode(ctx, 0); !errors.Is(err, store.ErrInvalid) {
		t.Fatalf("zero lease: %v", err)
	}
	lease, err := s.GrantNodeLease(ctx, "n1", 30*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.KeepAliveNode(ctx, lease); err != nil {
		t.Fatalf("keepalive: %v", err)
	}
	if err := s.RevokeNodeLease(ctx, lease); err != nil {
		t.Fatal(err)
	}
	if err := s.KeepAliveNode(ctx, lease); !errors.Is(err, store.ErrLeaseNotFound) {
		t.Fatalf("revoked lease: %v", err)
	}
	// A missing lease does not break the stream: one stream per shard
	// used, none opened again.
	want := int64(1)
	if store.KeepAliveShard(0x1234) != store.KeepAliveShard(lease) {
		want = 2
	}
	if n := s.KeepAliveStreamsOpened(); n != want {
		t.Fatalf("%d streams opened, want %d", n, want)
	}
}

func TestKeepAliveNodeConcurrent(t *testing.T) {
	t.Parallel()
	ctx := testCtx(t)
	s, _ := storetest.New(t)

	const leases, calls = 200, 1000
	ids := make([]int64, leases)
	for i := range ids {
		id, err := s.GrantNodeLease(ctx, fmt.Sprintf("n%03d", i), 30*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		ids[i] = id
	}
	var wg sync.WaitGroup
	var failed atomic.Int64
	start := make(chan struct{})
	for i := range calls {
		wg.Go(func() {
			<-start
			if err := s.KeepAliveNode(ctx, ids[i%leases]); err != nil {
				failed.Add(1)
				t.Errorf("keepalive %d: %v", i, err)
			}
		})
	}
	close(start)
	wg.Wait()
	if failed.Load() > 0 {
		t.Fatalf("%d of %d keep-alives failed", failed.Load(), calls)
	}
	shards := map[int]bool{}
	for _, id := range ids {
		shards[store.KeepAliveShard(id)] = true
	}
	if n := s.KeepAliveStreamsOpened(); n != int64(len(shards)) {
		t.Fatalf("%d streams opened, want one per shard used (%d)", n, len(shards))
	}
}

func TestKeepAliveNodeStreamBreakRecovers(t *testing.T) {
	t.Parallel()
	ctx := testCtx(t)
	s, _ := storetest.New(t)

	lease, err := s.GrantNodeLease(ctx, "n1", 30*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.KeepAliveNode(ctx, lease); err != nil {
		t.Fatal(err)
	}

	// Break the stream, twice, while 16 callers keep renewing: every call
	// returns, with success or the stream's error, and none hangs until
	// its deadline.
	var wg sync.WaitGroup
	var ok, failed atomic.Int64
	stop := make(chan struct{})
	for range 16 {
		wg.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
				err := s.KeepAliveNode(cctx, lease)
				cancel()
				switch {
				case err == nil:
					ok.Add(1)
				case errors.Is(err, context.DeadlineExceeded) || errors.Is(err, store.ErrLeaseNotFound):
					t.Errorf("call on a broken stream: %v", err)
					return
				default:
					failed.Add(1)
				}
			}
		})
	}
	for range 2 {
		time.Sleep(100 * time.Millisecond)
		s.BreakKeepAliveStream()
	}
	time.Sleep(100 * time.Millisecond)
	close(stop)
	wg.Wait()
	t.Logf("%d calls succeeded, %d failed with a broken stream", ok.Load(), failed.Load())
	if n := s.KeepAliveStreamsOpened(); n < 3 {
		t.Errorf("%d streams opened after two breaks, want at least 3", n)
	}

	s.BreakKeepAliveStream()
	// The next call may still meet the old stream before its receiver saw
	// the cancel; the one after must go through a new stream.
	waitFor(t, 5*time.Second, "a keep-alive on a new stream", func() bool {
		return s.KeepAliveNode(ctx, lease) == nil && s.KeepAliveStreamsOpened() >= 2
	})
	if err := s.KeepAliveNode(ctx, lease); err != nil {
		t.Fatalf("keepalive after recovery: %v", err)
	}
}

func TestKeepAliveNodeCancelledContext(t *testing.T) {
	t.Parallel()
	ctx := testCtx(t)
	s, _ := storetest.New(t)

	lease, err := s.GrantNodeLease(ctx, "n1", 30*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	start := time.Now()
	if err := s.KeepAliveNode(cctx, lease); !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled ctx: %v", err)
	}
	if d := time.Since(start); d > 100*time.Millisecond {
		t.Fatalf("cancelled call took %s", d)
	}
	// The stream is unharmed.
	if err := s.KeepAliveNode(ctx, lease); err != nil {
		t.Fatal(err)
	}
}

// A server that goes away must not make calls hang: they fail by their
// deadline, and closing the client ends the keep-alive goroutines.
func TestKeepAliveNodeServerGone(t *testing.T) {
	t.Parallel()
	ctx := testCtx(t)
	e := storetest.Embedded(t)
	cli, err := e.Client()
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	s := store.New(cli, store.Options{})

	lease, err := s.GrantNodeLease(ctx, "n1", 30*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.KeepAliveNode(ctx, lease); err != nil {
		t.Fatal(err)
	}
	e.Close()
	for range 3 {
		cctx, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
		start := time.Now()
		err := s.KeepAliveNode(cctx, lease)
		cancel()
		if err == nil {
			t.Fatal("keepalive succeeded with the server stopped")
		}
		if d := time.Since(start); d > 2*time.Second {
			t.Fatalf("call took %s past a 300ms deadline: %v", d, err)
		}
	}
	if err := cli.Close(); err != nil && !errors.Is(err, context.Canceled) {
		t.Logf("close: %v", err)
	}
	if !s.WaitKeepAliveGoroutines(5 * time.Second) {
		t.Fatal("keep-alive goroutines still running after the client closed")
	}
}

func TestKeepAliveNodeGoroutinesEndOnClose(t *testing.T) {
	t.Parallel()
	ctx := testCtx(t)
	e := storetest.Embedded(t)
	cli, err := e.Client()
	if err != nil {
		t.Fatal(err)
	}
	s := store.New(cli, store.Options{})
	lease, err := s.GrantNodeLease(ctx, "n1", 30*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.KeepAliveNode(ctx, lease); err != nil {
		t.Fatal(err)
	}
	_ = cli.Close()
	if !s.WaitKeepAliveGoroutines(5 * time.Second) {
		t.Fatal("keep-alive goroutines still running after the client closed")
	}
	if err := s.KeepAliveNode(ctx, lease); err == nil || errors.Is(err, store.ErrLeaseNotFound) {
		t.Fatalf("keepalive on a closed client: %v", err)
	}
	if !s.WaitKeepAliveGoroutines(5 * time.Second) {
		t.Fatal("keep-alive goroutines started on a closed client still running")
	}
}

// BenchmarkKeepAliveNode compares clientv3's KeepAliveOnce (a new stream per
// call, what KeepAliveNode used before) with the multiplexed stream, over
// 200 leases renewed in parallel. The embedded server runs in this process,
// so allocations include the server's.
func BenchmarkKeepAliveNode(b *testing.B) {
	s, cli := storetest.New(b)
	ctx := context.Background()
	ids := make([]int64, 200)
	for i := range ids {
		id, err := s.GrantNodeLease(ctx, fmt.Sprintf("n%03d", i), time.Minute)
		if err != nil {
			b.Fatal(err)
		}
		ids[i] = id
	}
	paths := []struct {
		name string
		keep func(id int64) error
	}{
		{"KeepAliveOnce", func(id int64) error {
			_, err := cli.KeepAliveOnce(ctx, clientv3.LeaseID(id))
			if errors.Is(err, rpctypes.ErrLeaseNotFound) {
				return store.ErrLeaseNotFound
			}
			return err
		}},
		{"Multiplexed", func(id int64) error { return s.KeepAliveNode(ctx, id) }},
	}
	// p1: GOMAXPROCS callers; p32: 32 per CPU, like many agents'
	// heartbeats arriving at once.
	for _, par := range []int{1, 32} {
		for _, p := range paths {
			b.Run(fmt.Sprintf("%s/p%d", p.name, par), func(b *testing.B) {
				var next atomic.Int64
				b.ReportAllocs()
				b.SetParallelism(par)
				b.RunParallel(func(pb *testing.PB) {
					i := int(next.Add(1))
					for pb.Next() {
						if err := p.keep(ids[i%len(ids)]); err != nil {
							b.Error(err)
							return
						}
						i++
					}
				})
			})
		}
	}
}
