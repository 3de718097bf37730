package obs

import (
	"context"
	"log/slog"
	"runtime/debug"

	"github.com/grpc-ecosystem/go-grpc-middleware/v2/interceptors/recovery"
	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// NewGRPCPanics returns the counter of recovered handler panics of one
// component's gRPC server (persys_<component>_grpc_panics_total, by
// method), for GRPCRecovery.
func NewGRPCPanics(component string) *prometheus.CounterVec {
	return prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: "persys", Subsystem: component, Name: "grpc_panics_total",
		Help: "gRPC calls whose handler or interceptor panicked; the call got Internal and the process went on.",
	}, []string{"method"})
}

// GRPCRecovery returns server options that turn a panic in a call's
// handler or in any interceptor installed after them into codes.Internal,
// count it in panics and log its stack. They must come before every other
// interceptor option, so that a panic in authentication is caught too
// (grpc chains interceptors in the order the options are given).
func GRPCRecovery(panics *prometheus.CounterVec, log *slog.Logger) []grpc.ServerOption {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	handle := recovery.WithRecoveryHandlerContext(func(ctx context.Context, p any) error {
		method, _ := grpc.Method(ctx)
		panics.WithLabelValues(method).Inc()
		// Still inside the deferred recover: the stack is the panic's.
		log.Error("gRPC call panicked", "method", method, "panic", p, "stack", string(debug.Stack()))
		// The panic value stays in the log: it may hold internal detail.
		return status.Error(codes.Internal, "internal error")
	})
	return []grpc.ServerOption{
		grpc.ChainUnaryInterceptor(recovery.UnaryServerInterceptor(handle)),
		grpc.ChainStreamInterceptor(recovery.StreamServerInterceptor(handle)),
	}
}
