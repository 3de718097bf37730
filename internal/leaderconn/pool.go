// Package leaderconn is the one client of the scheduler replicas that
// follows their leader; the gateway and the agent both use it. A follower
// refuses a call with FailedPrecondition (or Unavailable) and names the
// leader's address in the contract.MetadataLeader trailer; a Pool retries there and
// sends the calls that follow to that leader. Callers dial a Pool with
// Dial, wrap it with persysv1grpc.NewControlServiceClient and Close it when
// done.
package leaderconn

import (
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"slices"
	"strconv"
	"strings"
	"sync"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/connectivity"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/status"
)

// MaxConns bounds the connections a Pool keeps: the configured addresses
// plus leader addresses learned from refusals.
const MaxConns = 16

// ErrLeaderMoved marks a call made with NoFollow that a follower refused
// naming another leader; the Pool now points at that leader.
var ErrLeaderMoved = errors.New("scheduler leader moved")

// Config configures Dial.
type Config struct {
	// Addrs are the scheduler replicas (host:port each), tried in order.
	Addrs []string
	// Creds are the transport credentials for every address, such as
	// grpcauth.HolderCredentials, which read a renewed certificate at each
	// handshake. When nil, TLS is used.
	Creds credentials.TransportCredentials
	// TLS is the client configuration when Creds is nil; each address's
	// certificate is verified against that address's own host.
	TLS *tls.Config
	// DialOptions are added to every connection (backoff, interceptors).
	DialOptions []grpc.DialOption
	// Log receives one line per redirect, failover and leader change;
	// nil discards.
	Log *slog.Logger
}

// Pool is a grpc.ClientConnInterface over one or more scheduler replicas
// that follows the leader. It keeps one connection per address, dialled
// lazily, and sends every call to the current address (at first the first
// configured one). For each call:
//
//   - Leader redirect: when the call fails with FailedPrecondition or
//     Unavailable and the answer's metadata names a valid address other
//     than the one just called, the call is sent once more to that
//     address. At most one redirect per call: a second refusal is returned
//     as it is, and the next call starts at the leader it named. A
//     FailedPrecondition without the key is an ordinary answer.
//   - With the NoFollow call option the call is not re-sent: the Pool
//     points at the named leader and the error wraps ErrLeaderMoved (an
//     agent registers with a new leader before it heartbeats there).
//   - Failover: when the call fails with Unavailable before it was sent
//     (the scheduler cannot have seen it), it is sent to the next
//     configured address not yet tried in this call. A call that reached a
//     scheduler is never re-sent without that scheduler's redirect.
//   - The address that answered becomes the current address, unless
//     another call moved the current address meanwhile. A scheduler that
//     was reached but answered Unavailable without naming a leader (cut
//     off from etcd, or still loading) is not asked again: the next call
//     starts at the next configured address, round robin.
//
// Server-streaming calls follow a redirect too: when the stream ends with a
// redirect before its first message, it is opened again on the leader with
// the same request. Client-streaming calls only fail over. A Pool is safe
// for concurrent use.
type Pool struct {
	cfg   Config
	log   *slog.Logger
	addrs []string

	mu      sync.Mutex
	conns   map[string]*grpc.ClientConn
	current string
	closed  bool
}

var _ grpc.ClientConnInterface = (*Pool)(nil)

// Dial returns a Pool over cfg.Addrs. Connections are lazy: errors of
// reaching a scheduler show up on the first call.
func Dial(cfg Config) (*Pool, error) {
	if len(cfg.Addrs) == 0 {
		return nil, errors.New("leaderconn: no scheduler address")
	}
	if cfg.Creds == nil && cfg.TLS == nil {
		return nil, errors.New("leaderconn: TLS config or transport credentials are required")
	}
	if len(cfg.Addrs) > MaxConns {
		return nil, fmt.Errorf("leaderconn: %d scheduler addresses, at most %d", len(cfg.Addrs), MaxConns)
	}
	for i, a := range cfg.Addrs {
		if err := ValidAddress(a); err != nil {
			return nil, fmt.Errorf("leaderconn: scheduler address %d %q: %w", i+1, a, err)
		}
		if slices.Index(cfg.Addrs, a) != i {
			return nil, fmt.Errorf("leaderconn: scheduler address %q is given twice", a)
		}
	}
	p := &Pool{
		cfg:     cfg,
		log:     cfg.Log,
		addrs:   slices.Clone(cfg.Addrs),
		conns:   map[string]*grpc.ClientConn{},
		current: cfg.Addrs[0],
	}
	if p.log == nil {
		p.log = slog.New(slog.DiscardHandler)
	}
	if cfg.TLS != nil {
		p.cfg.TLS = cfg.TLS.Clone()
	}
	for _, a := range p.addrs {
		if _, err := p.conn(a); err != nil {
			_ = p.Close()
			return nil, err
		}
	}
	return p, nil
}

// ValidAddress checks a host:port with a non-empty host and a numeric
// port; leader hints are checked with it before they are dialled.
func ValidAddress(addr string) error {
	if len(addr) > 300 {
		return errors.New("longer than 300 characters")
	}
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("not host:port: %w", err)
	}
	if strings.TrimSpace(host) == "" {
		return errors.New("host is empty")
	}
	if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
		return fmt.Errorf("port %q is not a number in 1-65535", port)
	}
	return nil
}

var errClosed = status.Error(codes.Unavailable, "leaderconn: scheduler connections are closed")

func (p *Pool) creds(addr string) credentials.TransportCredentials {
	if p.cfg.Creds != nil {
		return p.cfg.Creds
	}
	host, _, _ := net.SplitHostPort(addr)
	c := p.cfg.TLS.Clone()
	c.ServerName = host
	return credentials.NewTLS(c)
}

// conn returns the connection to addr, dialling it when new.
func (p *Pool) conn(addr string) (*grpc.ClientConn, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return nil, errClosed
	}
	if cc, ok := p.conns[addr]; ok {
		return cc, nil
	}
	if len(p.conns) >= MaxConns {
		return nil, fmt.Errorf("leaderconn: already %d scheduler connections, not dialling %s", len(p.conns), addr)
	}
	// passthrough: the address is dialled as the leader named it.
	opts := append([]grpc.DialOption{grpc.WithTransportCredentials(p.creds(addr))}, p.cfg.DialOptions...)
	cc, err := grpc.NewClient("passthrough:///"+addr, opts...)
	if err != nil {
		return nil, fmt.Errorf("leaderconn: dialing scheduler %s: %w", addr, err)
	}
	p.conns[addr] = cc
	return cc, nil
}

// Current returns the address calls go to first: the last one that
// answered, or the leader a follower named.
func (p *Pool) Current() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.current
}

// Addresses returns the configured addresses.
func (p *Pool) Addresses() []string { return slices.Clone(p.addrs) }

// move points the pool at to, unless another call already moved it away
// from from.
func (p *Pool) move(from, to, method string) {
	p.mu.Lock()
	moved := p.current == from && from != to
	if moved {
		p.current = to
	}
	p.mu.Unlock()
	if moved {
		p.log.Info("scheduler changed", "from", from, "to", to, "method", method)
	}
}

// Connect starts connecting to every configured address.
func (p *Pool) Connect() {
	for _, a := range p.addrs {
		if cc, err := p.conn(a); err == nil {
			cc.Connect()
		}
	}
}

// Ready returns nil when a connection to some scheduler is ready (calls
// fail over to it), else an error naming the current address's state. It
// starts connecting idle connections.
func (p *Pool) Ready() error {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return errClosed
	}
	conns := make([]*grpc.ClientConn, 0, len(p.conns))
	for _, cc := range p.conns {
		conns = append(conns, cc)
	}
	cur, current := p.conns[p.current], p.current
	p.mu.Unlock()
	for _, cc := range conns {
		switch cc.GetState() {
		case connectivity.Ready:
			return nil
		case connectivity.Idle:
			cc.Connect()
		}
	}
	if cur == nil {
		return fmt.Errorf("no connection to scheduler %s", current)
	}
	return fmt.Errorf("no scheduler connection is ready (current %s is %s)", current, cur.GetState())
}

// Close closes every connection; calls after it fail with Unavailable.
func (p *Pool) Close() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return nil
	}
	p.closed = true
	var errs []error
	for a, cc := range p.conns {
		if err := cc.Close(); err != nil {
			errs = append(errs, fmt.Errorf("closing %s: %w", a, err))
		}
	}
	return errors.Join(errs...)
}
