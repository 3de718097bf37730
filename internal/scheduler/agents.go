package scheduler

import (
	"context"
	"errors"
	"fmt"
	"sync"
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
	// perNode is how many applies and deletes one node gets at once.
	perNode int
	mu      sync.Mutex
	slots   map[string]chan struct{}
	// inflight cancels, per node, the calls in flight to it: a node whose
	// lease ran out does not answer, and a call to it would otherwise
	// hold its worker (and the workload's reschedule) until the dial or
	// the apply timed out.
	inflight map[string]map[*context.CancelCauseFunc]struct{}
}

// errNodeLost ends the calls in flight to a node that was lost.
var errNodeLost = errors.New("node lost: its lease ran out")

func (s *Scheduler) agents() *agentPool {
	s.poolOnce.Do(func() {
		s.pool = &agentPool{hub: s.nodes, grace: streamGrace, perNode: s.cfg.AgentCallsPerNode,
			slots: map[string]chan struct{}{}, inflight: map[string]map[*context.CancelCauseFunc]struct{}{}}
	})
	return s.pool
}

// slot waits until nodeID has room for one more apply or delete: many
// workers may reconcile workloads of one node at once, and a node (its
// Docker engine, its QEMU) should not get them all at the same moment.
// The caller calls release when its call returns.
func (p *agentPool) slot(ctx context.Context, nodeID string) (release func(), err error) {
	p.mu.Lock()
	ch := p.slots[nodeID]
	if ch == nil {
		ch = make(chan struct{}, p.perNode)
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

// call runs fn with nodeID's client within one of the node's call slots;
// fn's context ends when ctx does or the node is lost (nodeLost).
func (p *agentPool) call(ctx context.Context, nodeID string, fn func(context.Context, persysv1grpc.AgentServiceClient) error) error {
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	p.mu.Lock()
	if p.inflight[nodeID] == nil {
		p.inflight[nodeID] = map[*context.CancelCauseFunc]struct{}{}
	}
	p.inflight[nodeID][&cancel] = struct{}{}
	p.mu.Unlock()
	defer func() {
		p.mu.Lock()
		delete(p.inflight[nodeID], &cancel)
		if len(p.inflight[nodeID]) == 0 {
			delete(p.inflight, nodeID)
		}
		p.mu.Unlock()
	}()
	release, err := p.slot(ctx, nodeID)
	if err != nil {
		return err
	}
	defer release()
	cli, err := p.client(ctx, nodeID)
	if err == nil {
		err = fn(ctx, cli)
	}
	if err != nil {
		if cause := context.Cause(ctx); errors.Is(cause, errNodeLost) {
			return fmt.Errorf("node %s: %w (%v)", nodeID, cause, err)
		}
		return err
	}
	return nil
}

// nodeLost ends the calls in flight to nodeID.
func (p *agentPool) nodeLost(nodeID string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for c := range p.inflight[nodeID] {
		(*c)(errNodeLost)
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
