package scheduler

import (
	"context"
	"crypto/tls"
	"errors"
	"net"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/persys-dev/compute/api/persys/v1/persysv1grpc"
	"github.com/persys-dev/compute/internal/nodechannel"
	"github.com/persys-dev/compute/internal/scheduler/controlapi"
)

// gracefulStopTimeout bounds how long Serve waits for running calls when
// its context ends before it cuts them off.
const gracefulStopTimeout = 10 * time.Second

// Serve serves ControlService, NodeChannelService and the gRPC health protocol on ln with mTLS
// until ctx ends. The health status turns SERVING once the cache is loaded.
// It returns once the server has stopped: open WatchWorkload streams end
// with Unavailable and other calls get gracefulStopTimeout to finish.
func Serve(ctx context.Context, ln net.Listener, s *Scheduler, tlsCfg *tls.Config) error {
	if tlsCfg == nil {
		return errors.New("scheduler: serve: a TLS configuration is required")
	}
	return ServeWith(ctx, ln, s, grpc.Creds(credentials.NewTLS(tlsCfg)))
}

// streamWorkers is the scheduler's pool of goroutines serving calls.
const streamWorkers = 256

// Per-connection buffers of the scheduler's server. Every agent holds one
// connection open for its control stream, mostly idle: over TLS gRPC
// keeps a read buffer per connection for its whole life (only plaintext
// reads use a pooled one), while write buffers are taken from a shared
// pool for each flush. Measured with 2,000 idle TLS connections, each with
// one stream: 59 KB of heap per connection with the default 32 KiB
// buffers, 33 KB with these; 16 KiB writes still carry a full HTTP/2
// frame, and reads bigger than the buffer go straight to the connection.
const (
	readBufferBytes  = 8 << 10
	writeBufferBytes = 16 << 10
)

// connOptions size the per-connection buffers (see readBufferBytes) and
// flow-control windows (see nodechannel.StreamWindowBytes).
func connOptions() []grpc.ServerOption {
	return []grpc.ServerOption{
		grpc.SharedWriteBuffer(true),
		grpc.ReadBufferSize(readBufferBytes),
		grpc.WriteBufferSize(writeBufferBytes),
		grpc.InitialWindowSize(nodechannel.StreamWindowBytes),
		grpc.InitialConnWindowSize(nodechannel.ConnWindowBytes),
	}
}

// ServeWith is Serve with the transport given as server options: opts must
// set the credentials, and may add interceptors that run before the
// scheduler's own (after the metrics, the call log and panic
// recovery). The daemons use Serve; the hollow-node simulator passes
// plaintext credentials and an interceptor that asserts each simulated
// node's identity (grpcauth.AssertIdentity).
func ServeWith(ctx context.Context, ln net.Listener, s *Scheduler, opts ...grpc.ServerOption) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	// Metrics, the call log and recovery come first: a panic in any
	// interceptor after them (the caller's, authentication) or in a
	// handler fails only its call, which is counted and logged.
	all := append(append(s.metrics.grpc.Options(s.log), connOptions()...), opts...)
	srv := grpc.NewServer(append(all,
		// Calls are served by reused goroutines whose stacks have grown
		// already, not one new goroutine per call that grows its stack
		// again (3% of the CPU at 5,000 placements/s); a call that finds
		// every worker busy still gets a goroutine of its own.
		grpc.NumStreamWorkers(streamWorkers),
		grpc.ChainUnaryInterceptor(controlapi.UnaryAuth, s.RevocationUnary),
		grpc.ChainStreamInterceptor(controlapi.StreamAuth, s.RevocationStream),
	)...)
	persysv1grpc.RegisterControlServiceServer(srv, controlapi.New(s, s.identity, s.secrets, ctx.Done()))
	persysv1grpc.RegisterNodeChannelServiceServer(srv, controlapi.NewNodeChannel(s, s.nodes))
	hs := health.NewServer()
	hs.SetServingStatus("", healthpb.HealthCheckResponse_NOT_SERVING)
	healthpb.RegisterHealthServer(srv, hs)
	s.metrics.grpc.Initialize(srv)
	stopped := make(chan struct{})
	go func() {
		defer close(stopped)
		select {
		case <-s.loadedCh:
			hs.SetServingStatus("", healthpb.HealthCheckResponse_SERVING)
		case <-ctx.Done():
		}
		<-ctx.Done()
		hs.Shutdown()
		// Control streams never end alone; their agents reconnect
		// elsewhere.
		s.nodes.CloseAll(nodechannel.ReasonServerStopped)
		graceful := make(chan struct{})
		go func() { srv.GracefulStop(); close(graceful) }()
		t := time.NewTimer(gracefulStopTimeout)
		defer t.Stop()
		select {
		case <-graceful:
		case <-t.C:
			srv.Stop()
			<-graceful
		}
	}()
	err := srv.Serve(ln)
	done := ctx.Err() != nil
	cancel()
	<-stopped
	if done {
		return nil
	}
	return err
}
