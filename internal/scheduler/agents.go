package scheduler

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/persys-dev/compute/api/persys/v1/persysv1grpc"
	"github.com/persys-dev/compute/internal/nodechannel"
)

// agentPool reaches each node's AgentService over the node's control
// stream (the Hub), and bounds the calls that change a node's workloads
// that are in flight to it at once.
type agentPool struct {
	hub *nodechannel.Hub
	// grace is how long a call waits for its node's control stream.
	grace time.Duration
	// limits is how many applies and deletes one node gets at once.
	limits *callLimits
	mu     sync.Mutex
	slots  map[string]chan struct{}
	// inflight cancels, per node, the calls in flight to it: a node whose
	// lease ran out does not answer, and a call to it would otherwise
	// hold its worker (and the workload's reschedule) until the dial or
	// the apply timed out.
	inflight map[string]map[*inflightCall]struct{}
}

// inflightCall is one call in flight: its cancel, and whether the node's
// loss cancelled it (the call's error then says so).
type inflightCall struct {
	cancel context.CancelFunc
	lost   atomic.Bool
}

// errNodeLost ends the calls in flight to a node that was lost.
var errNodeLost = errors.New("node lost: its lease ran out")

func (s *Scheduler) agents() *agentPool {
	s.poolOnce.Do(func() {
		s.pool = &agentPool{hub: s.nodes, grace: streamGrace, limits: s.callLimits,
			slots: map[string]chan struct{}{}, inflight: map[string]map[*inflightCall]struct{}{}}
	})
	return s.pool
}

// slot waits until nodeID has room for one more apply or delete: many
// workers may reconcile workloads of one node at once, and a node (its
// Docker engine, its QEMU) should not get them all at the same moment.
// The caller calls release when its call returns.
func (p *agentPool) slot(ctx context.Context, nodeID string) (release func(), err error) {
	limit := p.limits.of(nodeID)
	p.mu.Lock()
	ch := p.slots[nodeID]
	if cap(ch) != limit {
		// A registration changed the node's limit: the calls in flight
		// give their slots back to the old channel.
		ch = make(chan struct{}, limit)
		p.slots[nodeID] = ch
	}
	p.mu.Unlock()
	select {
	case ch <- struct{}{}:
		return func() { <-ch }, nil
	case <-ctx.Done():
		return nil, fmt.Errorf("waiting for a free call slot on node %s: %w", nodeID, ctx.Err())
	}
}

// client returns nodeID's AgentService over its control stream. A node
// that has none yet (its agent is still connecting, or reconnecting to
// this leader) gets the pool's grace to connect within ctx; after that
// the call fails with Unavailable, as a call to an unreachable agent does.
func (p *agentPool) client(ctx context.Context, nodeID string) (persysv1grpc.AgentServiceClient, error) {
	// A connected node (the usual case) needs no grace timer.
	if cli, err := p.hub.Client(nodeID); err == nil {
		return cli, nil
	}
	ctx, cancel := context.WithTimeout(ctx, p.grace)
	defer cancel()
	return p.hub.Await(ctx, nodeID)
}

// streamGrace is how long a call waits for its node's control stream.
const streamGrace = 3 * time.Second

// call runs fn with nodeID's client within one of the node's call slots,
// all within timeout (0: none); fn's context ends when ctx does, the time
// is up or the node is lost (nodeLost). One context serves the timeout
// and the loss: a call is made per placement.
func (p *agentPool) call(ctx context.Context, nodeID string, timeout time.Duration, fn func(context.Context, persysv1grpc.AgentServiceClient) error) error {
	c := &inflightCall{}
	if timeout > 0 {
		ctx, c.cancel = context.WithTimeout(ctx, timeout)
	} else {
		ctx, c.cancel = context.WithCancel(ctx)
	}
	defer c.cancel()
	p.mu.Lock()
	if p.inflight[nodeID] == nil {
		p.inflight[nodeID] = map[*inflightCall]struct{}{}
	}
	p.inflight[nodeID][c] = struct{}{}
	p.mu.Unlock()
	defer func() {
		p.mu.Lock()
		delete(p.inflight[nodeID], c)
		if len(p.inflight[nodeID]) == 0 {
			delete(p.inflight, nodeID)
		}
		p.mu.Unlock()
	}()
	release, err := p.slot(ctx, nodeID)
	if err == nil {
		defer release()
		var cli persysv1grpc.AgentServiceClient
		if cli, err = p.client(ctx, nodeID); err == nil {
			err = fn(ctx, cli)
		}
	}
	if err != nil && c.lost.Load() {
		return fmt.Errorf("node %s: %w (%v)", nodeID, errNodeLost, err)
	}
	return err
}

// nodeLost ends the calls in flight to nodeID.
func (p *agentPool) nodeLost(nodeID string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for c := range p.inflight[nodeID] {
		c.lost.Store(true)
		c.cancel()
	}
}

// agentsClose ends every node's control stream when the term ends: the
// agents reconnect, to the next leader.
func (s *Scheduler) agentsClose() {
	s.nodes.CloseAll(nodechannel.ReasonLeadershipLost)
}

// AgentClient returns nodeID's AgentService over its control stream, as
// the scheduler calls it; it waits within ctx for a node whose stream is
// not connected yet.
func (s *Scheduler) AgentClient(ctx context.Context, nodeID string) (persysv1grpc.AgentServiceClient, error) {
	return s.nodes.Await(ctx, nodeID)
}
