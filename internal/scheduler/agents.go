package scheduler

import (
	"crypto/tls"
	"fmt"
	"net"
	"sync"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"

	persysv1 "github.com/persys-dev/compute/api/persys/v1"
)

// AgentDialer gives the scheduler a client for a node's AgentService.
type AgentDialer interface {
	Dial(nodeID, addr string) (persysv1.AgentServiceClient, func() error, error)
}

// TLSDialer dials agents over gRPC with mTLS, verifying the agent's
// certificate against the host part of its advertised address.
type TLSDialer struct {
	TLS *tls.Config
}

// Dial implements AgentDialer.
func (d TLSDialer) Dial(nodeID, addr string) (persysv1.AgentServiceClient, func() error, error) {
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
	return persysv1.NewAgentServiceClient(conn), conn.Close, nil
}

// agentPool keeps one connection per node and address.
type agentPool struct {
	dialer AgentDialer
	mu     sync.Mutex
	conns  map[string]agentConn
}

type agentConn struct {
	addr   string
	client persysv1.AgentServiceClient
	close  func() error
}

func (s *Scheduler) agents() *agentPool {
	s.poolOnce.Do(func() { s.pool = &agentPool{dialer: s.cfg.Agents, conns: map[string]agentConn{}} })
	return s.pool
}

func (p *agentPool) client(nodeID, addr string) (persysv1.AgentServiceClient, error) {
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

// forget drops a node's connection, for example when it registers again.
func (p *agentPool) forget(nodeID string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if c, ok := p.conns[nodeID]; ok {
		_ = c.close()
		delete(p.conns, nodeID)
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
