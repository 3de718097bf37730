package scheduler

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"sync"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"

	"github.com/persys-dev/compute/api/persys/v1/persysv1grpc"
	"github.com/persys-dev/compute/internal/grpcauth"
	"github.com/persys-dev/compute/internal/pki"
)

// AgentDialer gives the scheduler a client for a node's AgentService.
type AgentDialer interface {
	Dial(nodeID, addr string) (persysv1grpc.AgentServiceClient, func() error, error)
}

// TLSDialer dials agents over gRPC with mTLS, verifying the agent's
// certificate against the host part of its advertised address.
type TLSDialer struct {
	TLS *tls.Config
}

// Dial implements AgentDialer.
func (d TLSDialer) Dial(nodeID, addr string) (persysv1grpc.AgentServiceClient, func() error, error) {
	if addr == "" {
		return nil, nil, fmt.Errorf("node %s has no agent address", nodeID)
	}
	cfg := d.TLS.Clone()
	if host, _, err := net.SplitHostPort(addr); err == nil {
		cfg.ServerName = host
	}
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(credentials.NewTLS(cfg)))
	if err != nil {
		return nil, nil, fmt.Errorf("dial agent %s at %s: %w", nodeID, addr, err)
	}
	return persysv1grpc.NewAgentServiceClient(conn), conn.Close, nil
}

// agentPool keeps one connection per node and address, and bounds the
// calls that change a node's workloads that are in flight to it at once.
type agentPool struct {
	dialer AgentDialer
	// perNode is how many applies and deletes one node gets at once.
	perNode int
	mu      sync.Mutex
	conns   map[string]agentConn
	slots   map[string]chan struct{}
	// inflight cancels, per node, the calls in flight to it: a node whose
	// lease ran out does not answer, and a call to it would otherwise
	// hold its worker (and the workload's reschedule) until the dial or
	// the apply timed out.
	inflight map[string]map[*context.CancelCauseFunc]struct{}
}

// errNodeLost ends the calls in flight to a node that was lost.
var errNodeLost = errors.New("node lost: its lease ran out")

type agentConn struct {
	addr   string
	client persysv1grpc.AgentServiceClient
	close  func() error
}

func (s *Scheduler) agents() *agentPool {
	s.poolOnce.Do(func() {
		s.pool = &agentPool{dialer: s.cfg.Agents, perNode: s.cfg.AgentCallsPerNode,
			conns: map[string]agentConn{}, slots: map[string]chan struct{}{}, inflight: map[string]map[*context.CancelCauseFunc]struct{}{}}
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

func (p *agentPool) client(nodeID, addr string) (persysv1grpc.AgentServiceClient, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if c, ok := p.conns[nodeID]; ok && c.addr == addr {
		return c.client, nil
	}
	if c, ok := p.conns[nodeID]; ok {
		_ = c.close()
		delete(p.conns, nodeID)
	}
	cli, closeFn, err := p.dialer.Dial(nodeID, addr)
	if err != nil {
		return nil, err
	}
	p.conns[nodeID] = agentConn{addr: addr, client: cli, close: closeFn}
	return cli, nil
}

// call runs fn with nodeID's client within one of the node's call slots;
// fn's context ends when ctx does or the node is lost (nodeLost).
func (p *agentPool) call(ctx context.Context, nodeID, addr string, fn func(context.Context, persysv1grpc.AgentServiceClient) error) error {
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
	cli, err := p.client(nodeID, addr)
	if err != nil {
		return err
	}
	if err := fn(ctx, cli); err != nil {
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

func (s *Scheduler) agentsClose() {
	p := s.agents()
	p.mu.Lock()
	defer p.mu.Unlock()
	for id, c := range p.conns {
		_ = c.close()
		delete(p.conns, id)
	}
}

// HolderDialer dials agents with the identity in Holder, read at every
// handshake (renewed certificates and a rotated CA bundle apply to new
// connections). Each agent's certificate must name the host of its
// advertised address.
type HolderDialer struct {
	Holder *pki.Holder
}

// Dial implements AgentDialer.
func (d HolderDialer) Dial(nodeID, addr string) (persysv1grpc.AgentServiceClient, func() error, error) {
	if addr == "" {
		return nil, nil, fmt.Errorf("node %s has no agent address", nodeID)
	}
	creds := grpcauth.HolderCredentials(d.Holder, "", tls.RequireAndVerifyClientCert)
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(creds))
	if err != nil {
		return nil, nil, fmt.Errorf("dial agent %s at %s: %w", nodeID, addr, err)
	}
	return persysv1grpc.NewAgentServiceClient(conn), conn.Close, nil
}
