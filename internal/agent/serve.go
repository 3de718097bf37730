package agent

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"strings"
	"time"

	"google.golang.org/grpc"
	grpcbackoff "google.golang.org/grpc/backoff"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/resolver"
	"google.golang.org/grpc/resolver/manual"

	"github.com/persys-dev/compute/api/persys/v1/persysv1grpc"
	"github.com/persys-dev/compute/internal/grpcauth"
	"github.com/persys-dev/compute/internal/pki"
)

const gracefulStopTimeout = 10 * time.Second

// NewServer returns a gRPC server with the agent's AgentService and the
// gRPC health service over mTLS; only callers with a scheduler
// certificate that Config.Revocations does not report revoked may call
// AgentService.
func NewServer(a *Agent, tlsCfg *tls.Config) (*grpc.Server, *health.Server, error) {
	if a == nil {
		return nil, nil, errors.New("agent: serve: agent is nil")
	}
	if tlsCfg == nil {
		return nil, nil, errors.New("agent: serve: a TLS configuration is required")
	}
	revokedUnary, revokedStream := grpcauth.RefuseRevoked(a.cfg.Revocations)
	// Metrics, call log and recovery first, so that a panic in
	// authentication is caught, counted and logged too.
	opts := append(a.metrics.grpc.Options(a.log),
		grpc.Creds(credentials.NewTLS(tlsCfg)),
		grpc.ChainUnaryInterceptor(revokedUnary, grpcauth.RequireRole(pki.RoleScheduler)),
		grpc.ChainStreamInterceptor(revokedStream, grpcauth.RequireRoleStream(pki.RoleScheduler)),
	)
	srv := grpc.NewServer(opts...)
	persysv1grpc.RegisterAgentServiceServer(srv, a.Service())
	hs := health.NewServer()
	hs.SetServingStatus("", healthpb.HealthCheckResponse_SERVING)
	hs.SetServingStatus(persysv1grpc.AgentService_ServiceDesc.ServiceName, healthpb.HealthCheckResponse_SERVING)
	healthpb.RegisterHealthServer(srv, hs)
	a.metrics.grpc.Initialize(srv)
	return srv, hs, nil
}

// Serve serves AgentService and grpc.health.v1 on ln until ctx ends, then
// stops gracefully (bounded) and returns nil. The workloads keep running.
func Serve(ctx context.Context, ln net.Listener, a *Agent, tlsCfg *tls.Config) error {
	srv, hs, err := NewServer(a, tlsCfg)
	if err != nil {
		return err
	}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	a.log.Info("serving AgentService", "listen", ln.Addr().String())
	select {
	case err := <-errc:
		return fmt.Errorf("agent: serve: %w", err)
	case <-ctx.Done():
	}
	hs.Shutdown()
	a.endStreams()
	stopped := make(chan struct{})
	go func() {
		srv.GracefulStop()
		close(stopped)
	}()
	t := time.NewTimer(gracefulStopTimeout)
	defer t.Stop()
	select {
	case <-stopped:
	case <-t.C:
		srv.Stop()
		<-stopped
	}
	<-errc
	return nil
}

// DialScheduler opens one client connection to the scheduler replicas at
// addrs (host:port each), tried in order, for Config.Control. It does not
// follow the leader; with several replicas use DialSchedulers. Each
// address's certificate is verified against its own host (a DNS name or
// an IP address).
func DialScheduler(addrs []string, tlsCfg *tls.Config, opts ...grpc.DialOption) (*grpc.ClientConn, error) {
	if len(addrs) == 0 {
		return nil, errors.New("agent: scheduler address is required")
	}
	if tlsCfg == nil {
		return nil, errors.New("agent: dial scheduler: a TLS configuration is required")
	}
	state := resolver.State{}
	for i, addr := range addrs {
		addr = strings.TrimSpace(addr)
		host, port, err := net.SplitHostPort(addr)
		if err != nil || host == "" || port == "" {
			return nil, fmt.Errorf("agent: scheduler address %d %q is not host:port", i+1, addr)
		}
		state.Addresses = append(state.Addresses, resolver.Address{Addr: addr, ServerName: host})
	}
	r := manual.NewBuilderWithScheme("persys-scheduler")
	r.InitialState(state)
	all := []grpc.DialOption{
		grpc.WithResolvers(r),
		grpc.WithTransportCredentials(credentials.NewTLS(tlsCfg)),
		grpc.WithConnectParams(grpc.ConnectParams{
			Backoff:           grpcbackoff.Config{BaseDelay: 500 * time.Millisecond, Multiplier: 1.6, Jitter: 0.2, MaxDelay: 5 * time.Second},
			MinConnectTimeout: 5 * time.Second,
		}),
	}
	conn, err := grpc.NewClient(r.Scheme()+":///scheduler", append(all, opts...)...)
	if err != nil {
		return nil, fmt.Errorf("agent: dial scheduler: %w", err)
	}
	return conn, nil
}
