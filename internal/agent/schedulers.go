package agent

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"google.golang.org/grpc"
	grpcbackoff "google.golang.org/grpc/backoff"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	persysv1 "github.com/persys-dev/compute/api/persys/v1"
)

// LeaderMetadataKey is the gRPC trailer (or header) key in which a
// scheduler follower names the leader's address when it refuses a write.
const LeaderMetadataKey = "x-persys-leader"

// maxHintedConns bounds the connections kept to addresses that only a
// leader hint named (not in the configured list).
const maxHintedConns = 8

// errLeaderMoved marks a call refused by a follower that named another
// leader; the Schedulers now point at that leader.
var errLeaderMoved = errors.New("scheduler leader moved")

// controlPlane is how the agent reaches the scheduler: each call reports
// the address that answered (or refused) it, and target is where the next
// call goes. A leader change shows as a change of target.
type controlPlane interface {
	target() string
	registerNode(ctx context.Context, req *persysv1.RegisterNodeRequest) (*persysv1.RegisterNodeResponse, string, error)
	heartbeat(ctx context.Context, req *persysv1.HeartbeatRequest) (*persysv1.HeartbeatResponse, string, error)
}

// fixedControl is one ControlService client used as is (Config.Control).
type fixedControl struct {
	c persysv1.ControlServiceClient
}

func (f fixedControl) target() string { return "" }

func (f fixedControl) registerNode(ctx context.Context, req *persysv1.RegisterNodeRequest) (*persysv1.RegisterNodeResponse, string, error) {
	resp, err := f.c.RegisterNode(ctx, req)
	return resp, "", err
}

func (f fixedControl) heartbeat(ctx context.Context, req *persysv1.HeartbeatRequest) (*persysv1.HeartbeatResponse, string, error) {
	resp, err := f.c.Heartbeat(ctx, req)
	return resp, "", err
}

// Schedulers reaches the leader among scheduler replicas. It keeps one
// client connection per address and sends every call to one target: the
// last address that answered. A call refused with FailedPrecondition or
// Unavailable that names the leader (trailer "x-persys-leader") moves the
// target to that address, listed or not; a refusal without a usable hint
// moves it to the next listed address, round robin. It is safe for
// concurrent use; Close it when done.
type Schedulers struct {
	addrs  []string
	tlsCfg *tls.Config
	opts   []grpc.DialOption

	mu      sync.Mutex
	conns   map[string]*grpc.ClientConn
	current string
	rr      int // index in addrs of the last listed target
	closed  bool
}

// DialSchedulers prepares connections to the scheduler replicas at addrs
// (host:port each; the first is tried first). Each address's certificate
// is verified against its own host (a DNS name or an IP address).
// Connections are made lazily.
func DialSchedulers(addrs []string, tlsCfg *tls.Config, opts ...grpc.DialOption) (*Schedulers, error) {
	if len(addrs) == 0 {
		return nil, errors.New("agent: scheduler address is required")
	}
	if tlsCfg == nil {
		return nil, errors.New("agent: dial scheduler: a TLS configuration is required")
	}
	s := &Schedulers{tlsCfg: tlsCfg, opts: opts, conns: map[string]*grpc.ClientConn{}}
	for i, addr := range addrs {
		addr = strings.TrimSpace(addr)
		if err := validAddress(addr); err != nil {
			return nil, fmt.Errorf("agent: scheduler address %d %q: %w", i+1, addr, err)
		}
		if !slices.Contains(s.addrs, addr) {
			s.addrs = append(s.addrs, addr)
		}
	}
	s.current = s.addrs[0]
	return s, nil
}

// validAddress checks a host:port with a non-empty host and a numeric port.
func validAddress(addr string) error {
	if len(addr) > 300 {
		return errors.New("longer than 300 characters")
	}
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("not host:port: %w", err)
	}
	if host == "" {
		return errors.New("host is empty")
	}
	if p, err := strconv.Atoi(port); err != nil || p < 1 || p > 65535 {
		return fmt.Errorf("port %q is not a number in 1-65535", port)
	}
	return nil
}

// Leader returns the address calls go to now: the last one that answered,
// or the one a follower named.
func (s *Schedulers) Leader() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.current
}

// Addresses returns the configured addresses.
func (s *Schedulers) Addresses() []string { return slices.Clone(s.addrs) }

// Close closes every connection.
func (s *Schedulers) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.closed = true
	var errs []error
	for addr, c := range s.conns {
		if err := c.Close(); err != nil {
			errs = append(errs, fmt.Errorf("close %s: %w", addr, err))
		}
		delete(s.conns, addr)
	}
	return errors.Join(errs...)
}

func (s *Schedulers) target() string { return s.Leader() }

// client returns the connection to addr, dialing it on first use.
func (s *Schedulers) client(addr string) (persysv1.ControlServiceClient, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil, errors.New("agent: schedulers closed")
	}
	if c, ok := s.conns[addr]; ok {
		return persysv1.NewControlServiceClient(c), nil
	}
	if !slices.Contains(s.addrs, addr) {
		hinted := 0
		for a := range s.conns {
			if !slices.Contains(s.addrs, a) {
				hinted++
			}
		}
		if hinted >= maxHintedConns {
			return nil, fmt.Errorf("agent: scheduler %s: already %d connections to unlisted leaders", addr, hinted)
		}
	}
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, fmt.Errorf("agent: scheduler %s: %w", addr, err)
	}
	cfg := s.tlsCfg.Clone()
	cfg.ServerName = host
	all := []grpc.DialOption{
		grpc.WithTransportCredentials(credentials.NewTLS(cfg)),
		grpc.WithConnectParams(grpc.ConnectParams{
			Backoff:           grpcbackoff.Config{BaseDelay: 500 * time.Millisecond, Multiplier: 1.6, Jitter: 0.2, MaxDelay: 5 * time.Second},
			MinConnectTimeout: 5 * time.Second,
		}),
	}
	c, err := grpc.NewClient("passthrough:///"+addr, append(all, s.opts...)...)
	if err != nil {
		return nil, fmt.Errorf("agent: dial scheduler %s: %w", addr, err)
	}
	s.conns[addr] = c
	return persysv1.NewControlServiceClient(c), nil
}

// moveTo points the target at to, unless another call already moved it
// away from from.
func (s *Schedulers) moveTo(from, to string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.current != from {
		return
	}
	s.setCurrentLocked(to)
}

func (s *Schedulers) setCurrentLocked(addr string) {
	s.current = addr
	if i := slices.Index(s.addrs, addr); i >= 0 {
		s.rr = i
	}
}

// rotate points the target at the listed address after the last listed
// one used, unless another call already moved it away from from.
func (s *Schedulers) rotate(from string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.current != from {
		return
	}
	s.setCurrentLocked(s.addrs[(s.rr+1)%len(s.addrs)])
}

// answered records that addr answered: it stays the target.
func (s *Schedulers) answered(addr string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.setCurrentLocked(addr)
}

// leaderHint returns the leader address named in md, if any.
func leaderHint(mds ...metadata.MD) string {
	for _, md := range mds {
		for _, v := range md.Get(LeaderMetadataKey) {
			if v = strings.TrimSpace(v); v != "" {
				return v
			}
		}
	}
	return ""
}

// refused reports whether err is a refusal after which another scheduler
// may answer: FailedPrecondition (a follower) or Unavailable.
func refused(err error) bool {
	switch status.Code(err) {
	case codes.FailedPrecondition, codes.Unavailable:
		return true
	}
	return false
}

// invoke calls fn on the target. When a refusal names another leader it
// moves the target there and, with follow, calls that leader at once (a
// bounded number of hops); without follow it returns an error wrapping
// errLeaderMoved. A refusal without a usable hint rotates the target for
// the next call. It returns the address of the last attempt.
func (s *Schedulers) invoke(ctx context.Context, follow bool,
	fn func(ctx context.Context, c persysv1.ControlServiceClient, opts ...grpc.CallOption) error) (string, error) {
	addr := s.Leader()
	visited := map[string]bool{}
	for {
		visited[addr] = true
		c, err := s.client(addr)
		if err != nil {
			s.rotate(addr)
			return addr, err
		}
		var header, trailer metadata.MD
		err = fn(ctx, c, grpc.Header(&header), grpc.Trailer(&trailer))
		if err == nil {
			s.answered(addr)
			return addr, nil
		}
		if !refused(err) || ctx.Err() != nil {
			return addr, err
		}
		hint := leaderHint(trailer, header)
		if hint == "" || hint == addr || validAddress(hint) != nil {
			s.rotate(addr)
			return addr, err
		}
		s.moveTo(addr, hint)
		if !follow || visited[hint] {
			return addr, fmt.Errorf("%w from %s to %s: %w", errLeaderMoved, addr, hint, err)
		}
		addr = hint
	}
}

func (s *Schedulers) registerNode(ctx context.Context, req *persysv1.RegisterNodeRequest) (*persysv1.RegisterNodeResponse, string, error) {
	var resp *persysv1.RegisterNodeResponse
	addr, err := s.invoke(ctx, true, func(ctx context.Context, c persysv1.ControlServiceClient, opts ...grpc.CallOption) error {
		var err error
		resp, err = c.RegisterNode(ctx, req, opts...)
		return err
	})
	return resp, addr, err
}

func (s *Schedulers) heartbeat(ctx context.Context, req *persysv1.HeartbeatRequest) (*persysv1.HeartbeatResponse, string, error) {
	var resp *persysv1.HeartbeatResponse
	addr, err := s.invoke(ctx, false, func(ctx context.Context, c persysv1.ControlServiceClient, opts ...grpc.CallOption) error {
		var err error
		resp, err = c.Heartbeat(ctx, req, opts...)
		return err
	})
	return resp, addr, err
}

var (
	_ controlPlane = (*Schedulers)(nil)
	_ controlPlane = fixedControl{}
)

// ListRevocations asks the leader for the revoked certificates, so that
// Schedulers serves grpcauth.PollRevocations.
func (s *Schedulers) ListRevocations(ctx context.Context, in *persysv1.ListRevocationsRequest, _ ...grpc.CallOption) (*persysv1.ListRevocationsResponse, error) {
	var resp *persysv1.ListRevocationsResponse
	_, err := s.invoke(ctx, true, func(ctx context.Context, c persysv1.ControlServiceClient, opts ...grpc.CallOption) error {
		var err error
		resp, err = c.ListRevocations(ctx, in, opts...)
		return err
	})
	return resp, err
}
