package obs

import (
	"context"
	"log/slog"
	"runtime/debug"
	"strconv"
	"strings"
	"time"

	grpcprom "github.com/grpc-ecosystem/go-grpc-middleware/providers/prometheus"
	"github.com/grpc-ecosystem/go-grpc-middleware/v2/interceptors/logging"
	"github.com/grpc-ecosystem/go-grpc-middleware/v2/interceptors/recovery"
	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"
)

// GRPCServer is what one component's gRPC server reports about its calls:
// Prometheus server metrics (persys_<component>_grpc_server_*: started,
// handled by code, messages, a handling-time histogram), recovered panics
// (persys_<component>_grpc_panics_total, by method) and one log line per
// call. Register Collectors on the component's registry, put Options
// before the server's other interceptor options, and call Initialize once
// the services are registered.
type GRPCServer struct {
	panics  *prometheus.CounterVec
	metrics *grpcprom.ServerMetrics
}

// NewGRPCServer returns the instruments of component's gRPC server.
func NewGRPCServer(component string) *GRPCServer {
	return &GRPCServer{
		panics: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "persys", Subsystem: component, Name: "grpc_panics_total",
			Help: "gRPC calls whose handler or interceptor panicked; the call got Internal and the process went on.",
		}, []string{"method"}),
		metrics: grpcprom.NewServerMetrics(
			grpcprom.WithServerCounterOptions(grpcprom.WithNamespace("persys"), grpcprom.WithSubsystem(component)),
			grpcprom.WithServerHandlingTimeHistogram(grpcprom.WithHistogramNamespace("persys"), grpcprom.WithHistogramSubsystem(component)),
		),
	}
}

// Collectors are the metrics to register on the component's registry.
func (g *GRPCServer) Collectors() []prometheus.Collector {
	return []prometheus.Collector{g.panics, g.metrics}
}

// Initialize sets every method of srv's registered services at zero in
// the metrics, so that rates exist before a method's first call.
func (g *GRPCServer) Initialize(srv *grpc.Server) { g.metrics.InitializeMetrics(srv) }

// Options returns the server options that measure, log and guard every
// call. The metrics and the log line come first, so that a call whose
// handler panicked is counted and logged as the Internal it returned;
// recovery follows, before any option the caller adds (grpc chains
// interceptors in the order the options are given), so that a panic in
// authentication fails only its call too.
func (g *GRPCServer) Options(log *slog.Logger) []grpc.ServerOption {
	unary, stream := g.Interceptors(log)
	return []grpc.ServerOption{grpc.ChainUnaryInterceptor(unary), grpc.ChainStreamInterceptor(stream)}
}

// Interceptors are Options' interceptors, each chain as one, for calls
// served without a grpc.Server of their own (an agent's calls over its
// control stream).
func (g *GRPCServer) Interceptors(log *slog.Logger) (grpc.UnaryServerInterceptor, grpc.StreamServerInterceptor) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	logger := logging.LoggerFunc(func(ctx context.Context, lvl logging.Level, msg string, fields ...any) {
		// logging.Level has slog's numbering.
		log.Log(ctx, slog.Level(lvl), msg, fields...)
	})
	logOpts := []logging.Option{
		logging.WithLogOnEvents(logging.FinishCall),
		logging.WithLevels(callLevel),
	}
	onPanic := recovery.WithRecoveryHandlerContext(func(ctx context.Context, p any) error {
		method, _ := grpc.Method(ctx)
		g.panics.WithLabelValues(method).Inc()
		// Still inside the deferred recover: the stack is the panic's.
		log.Error("gRPC call panicked", "method", method, "panic", p, "stack", string(debug.Stack()))
		// The panic value stays in the log: it may hold internal detail.
		return status.Error(codes.Internal, "internal error")
	})
	unary := []grpc.UnaryServerInterceptor{
		g.metrics.UnaryServerInterceptor(),
		unaryCallLog(log, logging.UnaryServerInterceptor(logger, logOpts...)),
		recovery.UnaryServerInterceptor(onPanic),
	}
	stream := []grpc.StreamServerInterceptor{
		g.metrics.StreamServerInterceptor(),
		logging.StreamServerInterceptor(logger, logOpts...),
		recovery.StreamServerInterceptor(onPanic),
	}
	return func(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
			for i := len(unary) - 1; i >= 0; i-- {
				next, ic := handler, unary[i]
				handler = func(ctx context.Context, req any) (any, error) { return ic(ctx, req, info, next) }
			}
			return handler(ctx, req)
		}, func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
			for i := len(stream) - 1; i >= 0; i-- {
				next, ic := handler, stream[i]
				handler = func(srv any, ss grpc.ServerStream) error { return ic(srv, ss, info, next) }
			}
			return handler(srv, ss)
		}
}

// unaryCallLog is full (the library's call log) while debug lines are
// written. Otherwise only failures are logged, and a success costs
// nothing: the library builds every field of a call's line before the
// level is checked, which was a tenth of the scheduler's CPU per
// placement (an apply costs a control call and an agent call).
func unaryCallLog(log *slog.Logger, full grpc.UnaryServerInterceptor) grpc.UnaryServerInterceptor {
	return func(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
		if log.Enabled(ctx, slog.LevelDebug) {
			return full(ctx, req, info, handler)
		}
		start := time.Now()
		resp, err := handler(ctx, req)
		if err == nil {
			return resp, nil
		}
		code := status.Code(err)
		lvl := slog.Level(callLevel(code))
		if !log.Enabled(ctx, lvl) {
			return resp, err
		}
		service, method := splitMethod(info.FullMethod)
		attrs := []slog.Attr{
			slog.String("protocol", "grpc"), slog.String("grpc.component", "server"),
			slog.String("grpc.service", service), slog.String("grpc.method", method),
			slog.String("grpc.method_type", "unary"),
		}
		if p, ok := peer.FromContext(ctx); ok && p.Addr != nil {
			attrs = append(attrs, slog.String("peer.address", p.Addr.String()))
		}
		attrs = append(attrs, slog.String("grpc.code", code.String()), slog.String("grpc.error", err.Error()),
			slog.String("grpc.time_ms", strconv.FormatFloat(float64(time.Since(start).Microseconds())/1000, 'f', -1, 64)))
		log.LogAttrs(ctx, lvl, "finished call", attrs...)
		return resp, err
	}
}

// splitMethod splits "/pkg.Service/Method" as the library's call log does.
func splitMethod(full string) (service, method string) {
	full = strings.TrimPrefix(full, "/")
	if i := strings.LastIndex(full, "/"); i >= 0 {
		return full[:i], full[i+1:]
	}
	return "unknown", full
}

// callLevel logs a call that succeeded at debug and one that failed at
// warn. A call its client cancelled (a watch the client closed) is no
// failure of the server's.
func callLevel(code codes.Code) logging.Level {
	switch code {
	case codes.OK, codes.Canceled:
		return logging.LevelDebug
	default:
		return logging.LevelWarn
	}
}
