package store

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
	"sync/atomic"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/grpc"
)

// leaseKeeper multiplexes lease keep-alives over one long-lived
// LeaseKeepAlive stream. clientv3's KeepAliveOnce opens (and tears down) a
// gRPC stream per call, which dominates the cost of a heartbeat; here a call
// is one request message and one response on a shared stream.
//
// etcd answers a keep-alive stream's requests one at a time, in order, so
// the responses for one lease id come back in the order of its requests:
// each id has a FIFO of waiters and a response goes to the oldest.
//
// A broken stream fails every waiter in flight; the next call opens a new
// one. The stream lives under the client's context, so closing the client
// ends its goroutines.
type leaseKeeper struct {
	cli *clientv3.Client

	mu  sync.Mutex
	cur *kaStream // nil until the first call

	// wg counts the stream goroutines and opened the streams, for tests.
	wg     sync.WaitGroup
	opened atomic.Int64
}

func newLeaseKeeper(cli *clientv3.Client) *leaseKeeper {
	return &leaseKeeper{cli: cli}
}

// keepAliveShards is how many keep-alive streams the store spreads leases
// over. etcd serves one stream's requests one after another, and a
// renewal on a busy or CPU-starved leader waits for a linearizable read
// (its leadership check): on one stream those waits queued, renewals
// fell far below the heartbeat rate (10,000 nodes: 0/s for minutes) and
// every lease expired. Concurrent renewals on several streams share one
// read.
const keepAliveShards = 16

// leaseKeepers are the keep-alive streams, a lease always on the same
// one (its responses must stay in order).
type leaseKeepers [keepAliveShards]*leaseKeeper

func newLeaseKeepers(cli *clientv3.Client) leaseKeepers {
	var ks leaseKeepers
	for i := range ks {
		ks[i] = newLeaseKeeper(cli)
	}
	return ks
}

func (ks leaseKeepers) keepAlive(ctx context.Context, id int64) (int64, error) {
	return ks[uint64(id)%keepAliveShards].keepAlive(ctx, id)
}

type kaResult struct {
	ttl int64
	err error
}

// kaStream is one LeaseKeepAlive stream and the calls waiting on it.
type kaStream struct {
	ctx    context.Context
	cancel context.CancelFunc
	ready  chan struct{}                 // closed once opening ended; stream or err is set
	done   chan struct{}                 // closed when the stream broke; err is set
	stream pb.Lease_LeaseKeepAliveClient // written before ready closes

	mu      sync.Mutex
	err     error
	waiters map[int64][]chan kaResult
	sendq   []int64
	wake    chan struct{} // capacity 1: sendq has ids to send
}

// keepAlive sends one keep-alive for id and returns the TTL etcd answered
// (<= 0: no such lease). It returns by the time ctx is done.
func (k *leaseKeeper) keepAlive(ctx context.Context, id int64) (int64, error) {
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	st := k.stream()
	select {
	case <-st.ready:
	case <-ctx.Done():
		return 0, ctx.Err()
	}
	// Buffered: the receiver never blocks on a caller that gave up.
	ch := make(chan kaResult, 1)
	if err := st.enqueue(id, ch); err != nil {
		return 0, err
	}
	select {
	case r := <-ch:
		return r.ttl, r.err
	case <-ctx.Done():
		// The waiter stays queued: its response must still be matched to
		// it, not to a later call for the same id.
		return 0, ctx.Err()
	}
}

// stream returns the current stream, starting a new one when there is none
// or it broke. Opening happens in the background so no caller holds k.mu
// while gRPC waits for a connection.
func (k *leaseKeeper) stream() *kaStream {
	k.mu.Lock()
	defer k.mu.Unlock()
	if st := k.cur; st != nil && !st.broken() {
		return st
	}
	// Require a leader, as clientv3's own keep-alive stream does, so a
	// member cut off from the cluster breaks the stream instead of
	// renewing nothing.
	ctx, cancel := context.WithCancel(clientv3.WithRequireLeader(k.cli.Ctx()))
	st := &kaStream{
		ctx:     ctx,
		cancel:  cancel,
		ready:   make(chan struct{}),
		done:    make(chan struct{}),
		waiters: map[int64][]chan kaResult{},
		wake:    make(chan struct{}, 1),
	}
	k.cur = st
	k.opened.Add(1)
	k.wg.Add(1)
	go k.run(st)
	return st
}

// run opens st's stream, then receives on it until it breaks.
func (k *leaseKeeper) run(st *kaStream) {
	defer k.wg.Done()
	// WaitForReady, like clientv3's default call options: ride out a
	// reconnect rather than fail at once; callers are bounded by their ctx.
	stream, err := leaseClientOf(k.cli).LeaseKeepAlive(st.ctx, grpc.WaitForReady(true))
	if err != nil {
		st.fail(k.streamErr("open", err))
		close(st.ready)
		return
	}
	st.stream = stream
	close(st.ready)
	k.wg.Add(1)
	go k.sendLoop(st)
	for {
		resp, err := stream.Recv()
		if err != nil {
			st.fail(k.streamErr("receive", err))
			return
		}
		st.deliver(resp)
	}
}

// sendLoop sends the queued ids in order until the stream breaks. One
// sender, because a gRPC stream's Send is not safe for concurrent use.
func (k *leaseKeeper) sendLoop(st *kaStream) {
	defer k.wg.Done()
	var batch []int64
	for {
		select {
		case <-st.done:
			return
		case <-st.wake:
		}
		st.mu.Lock()
		batch, st.sendq = st.sendq, batch[:0]
		st.mu.Unlock()
		for _, id := range batch {
			if err := st.stream.Send(&pb.LeaseKeepAliveRequest{ID: id}); err != nil {
				if errors.Is(err, io.EOF) {
					// The stream ended; Recv reports why.
					return
				}
				st.fail(k.streamErr("send", err))
				return
			}
		}
	}
}

// streamErr names a stream failure, mapping gRPC codes to etcd's errors and
// a closed client to its context error.
func (k *leaseKeeper) streamErr(op string, err error) error {
	return fmt.Errorf("keep-alive stream %s: %w", op, clientv3.ContextError(k.cli.Ctx(), err))
}

// breakStream cancels the current stream, as a network failure would.
func (k *leaseKeeper) breakStream() {
	k.mu.Lock()
	st := k.cur
	k.mu.Unlock()
	if st != nil {
		st.cancel()
	}
}

// broken reports whether st failed or is failing: a cancelled stream is
// not reused even before its receiver noticed.
func (st *kaStream) broken() bool {
	select {
	case <-st.done:
		return true
	default:
		return st.ctx.Err() != nil
	}
}

// enqueue registers ch as the newest waiter for id and queues id to send,
// both under one lock so the waiter is in place before its response can
// arrive and no waiter is left without a request.
func (st *kaStream) enqueue(id int64, ch chan kaResult) error {
	st.mu.Lock()
	if st.err != nil {
		err := st.err
		st.mu.Unlock()
		return err
	}
	st.waiters[id] = append(st.waiters[id], ch)
	st.sendq = append(st.sendq, id)
	st.mu.Unlock()
	select {
	case st.wake <- struct{}{}:
	default:
	}
	return nil
}

// deliver hands resp to the oldest waiter for its lease.
func (st *kaStream) deliver(resp *pb.LeaseKeepAliveResponse) {
	st.mu.Lock()
	q := st.waiters[resp.ID]
	if len(q) == 0 {
		// Not ours (cannot happen: every request has a waiter).
		st.mu.Unlock()
		return
	}
	ch := q[0]
	if len(q) == 1 {
		delete(st.waiters, resp.ID)
	} else {
		q[0] = nil
		st.waiters[resp.ID] = q[1:]
	}
	st.mu.Unlock()
	ch <- kaResult{ttl: resp.TTL}
}

// fail marks the stream broken with err (the first error wins), fails every
// waiter in flight and releases the stream.
func (st *kaStream) fail(err error) {
	st.mu.Lock()
	if st.err != nil {
		st.mu.Unlock()
		return
	}
	st.err = err
	waiters := st.waiters
	st.waiters, st.sendq = nil, nil
	close(st.done)
	st.mu.Unlock()
	st.cancel()
	for _, q := range waiters {
		for _, ch := range q {
			ch <- kaResult{err: err}
		}
	}
}
