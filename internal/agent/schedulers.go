package agent

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"google.golang.org/grpc"
	grpcbackoff "google.golang.org/grpc/backoff"
	"google.golang.org/grpc/metadata"

	persysv1 "github.com/persys-dev/compute/api/persys/v1"
	"github.com/persys-dev/compute/api/persys/v1/persysv1grpc"
	"github.com/persys-dev/compute/internal/leaderconn"
	"github.com/persys-dev/compute/internal/nodechannel"
)

// controlPlane is how the agent reaches the scheduler: each call reports
// the address that answered (or refused) it, and target is where the next
// call goes. A leader change shows as a change of target.
type controlPlane interface {
	target() string
	// connect opens the node's control stream and says on which address.
	connect(ctx context.Context) (controlStream, string, error)
	// streamFailed is told why a control stream opened on addr ended
	// before the scheduler took it, with the stream's trailer.
	streamFailed(addr string, err error, trailer metadata.MD)
}

// fixedControl is one scheduler's NodeChannelService used as is
// (Config.Channel).
type fixedControl struct {
	ch persysv1grpc.NodeChannelServiceClient
}

func (f fixedControl) connect(ctx context.Context) (controlStream, string, error) {
	s, err := f.ch.Connect(ctx)
	return s, "", err
}

func (f fixedControl) streamFailed(addr string, err error, md metadata.MD) {
	streamFailedNoop(addr, err, md)
}

func (f fixedControl) target() string { return "" }

// Schedulers reaches the leader among scheduler replicas through a
// leaderconn.Pool (see its rules). Registration and heartbeats ride the
// control stream, which only a leader accepts: a follower's refusal names
// the leader, and the next stream goes there (and registers there: a new
// leader keeps its own lease for the node). It is safe for concurrent
// use; Close it when done.
type Schedulers struct {
	pool *leaderconn.Pool
	c    persysv1grpc.ControlServiceClient
	// chPool carries the control stream on connections of its own: its
	// reconnects while a scheduler is down would otherwise put the
	// connection revocation polls use into backoff.
	chPool *leaderconn.Pool
	ch     persysv1grpc.NodeChannelServiceClient
}

// TransportOptions are the transport settings of an agent's connections
// to the scheduler: fixed flow-control windows, as the scheduler's (see
// nodechannel.StreamWindowBytes), so that a connection of a few small
// messages a second sends no bandwidth-delay pings, and write buffers
// taken from a pool for each flush.
func TransportOptions() []grpc.DialOption {
	return []grpc.DialOption{
		grpc.WithInitialWindowSize(nodechannel.StreamWindowBytes),
		grpc.WithInitialConnWindowSize(nodechannel.ConnWindowBytes),
		grpc.WithSharedWriteBuffer(true),
	}
}

// DialSchedulers prepares connections to the scheduler replicas at addrs
// (host:port each; the first is tried first; blanks trimmed, repeats
// dropped). Each address's certificate is verified against its own host (a
// DNS name or an IP address). Connections are made lazily.
func DialSchedulers(addrs []string, tlsCfg *tls.Config, opts ...grpc.DialOption) (*Schedulers, error) {
	if len(addrs) == 0 {
		return nil, errors.New("agent: scheduler address is required")
	}
	if tlsCfg == nil {
		return nil, errors.New("agent: dial scheduler: a TLS configuration is required")
	}
	var list []string
	for i, addr := range addrs {
		addr = strings.TrimSpace(addr)
		if err := leaderconn.ValidAddress(addr); err != nil {
			return nil, fmt.Errorf("agent: scheduler address %d %q: %w", i+1, addr, err)
		}
		if !slices.Contains(list, addr) {
			list = append(list, addr)
		}
	}
	backoff := grpc.WithConnectParams(grpc.ConnectParams{
		Backoff:           grpcbackoff.Config{BaseDelay: 500 * time.Millisecond, Multiplier: 1.6, Jitter: 0.2, MaxDelay: 5 * time.Second},
		MinConnectTimeout: 5 * time.Second,
	})
	cfg := leaderconn.Config{Addrs: list, TLS: tlsCfg, DialOptions: append(append([]grpc.DialOption{backoff}, TransportOptions()...), opts...)}
	pool, err := leaderconn.Dial(cfg)
	if err != nil {
		return nil, fmt.Errorf("agent: %w", err)
	}
	chPool, err := leaderconn.Dial(cfg)
	if err != nil {
		_ = pool.Close()
		return nil, fmt.Errorf("agent: %w", err)
	}
	return &Schedulers{pool: pool, c: persysv1grpc.NewControlServiceClient(pool),
		chPool: chPool, ch: persysv1grpc.NewNodeChannelServiceClient(chPool)}, nil
}

// Leader returns the address the control stream goes to now: the last
// one that answered, or the one a follower named.
func (s *Schedulers) Leader() string { return s.chPool.Current() }

// Addresses returns the configured addresses.
func (s *Schedulers) Addresses() []string { return s.pool.Addresses() }

// Close closes every connection.
func (s *Schedulers) Close() error { return errors.Join(s.pool.Close(), s.chPool.Close()) }

func (s *Schedulers) target() string { return s.Leader() }

func (s *Schedulers) connect(ctx context.Context) (controlStream, string, error) {
	var on string
	stream, err := s.ch.Connect(ctx, leaderconn.AnsweredBy(&on))
	return stream, on, err
}

func (s *Schedulers) streamFailed(addr string, err error, md metadata.MD) {
	s.chPool.Follow(addr, err, md)
}

var (
	_ controlPlane = (*Schedulers)(nil)
	_ controlPlane = fixedControl{}
)

// ListRevocations asks the leader for the revoked certificates, so that
// Schedulers serves grpcauth.PollRevocations.
func (s *Schedulers) ListRevocations(ctx context.Context, in *persysv1.ListRevocationsRequest, opts ...grpc.CallOption) (*persysv1.ListRevocationsResponse, error) {
	return s.c.ListRevocations(ctx, in, opts...)
}
