package scheduler

import (
	"context"
	"crypto/tls"
	"net"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	persysv1 "github.com/persys-dev/compute/api/persys/v1"
)

// Serve serves ControlService and the gRPC health protocol on ln with mTLS
// until ctx ends. The health status turns SERVING once the cache is loaded.
func Serve(ctx context.Context, ln net.Listener, s *Scheduler, tlsCfg *tls.Config) error {
	srv := grpc.NewServer(
		grpc.Creds(credentials.NewTLS(tlsCfg)),
		grpc.ChainUnaryInterceptor(UnaryAuth),
		grpc.ChainStreamInterceptor(StreamAuth),
	)
	persysv1.RegisterControlServiceServer(srv, s.Service())
	hs := health.NewServer()
	hs.SetServingStatus("", healthpb.HealthCheckResponse_NOT_SERVING)
	healthpb.RegisterHealthServer(srv, hs)
	go func() {
		select {
		case <-s.loadedCh:
			hs.SetServingStatus("", healthpb.HealthCheckResponse_SERVING)
		case <-ctx.Done():
		}
		<-ctx.Done()
		hs.Shutdown()
		srv.GracefulStop()
	}()
	err := srv.Serve(ln)
	if ctx.Err() != nil {
		return nil
	}
	return err
}
