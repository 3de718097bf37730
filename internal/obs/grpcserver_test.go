package obs_test

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"

	"github.com/persys-dev/compute/internal/obs"
)

// syncBuffer is a log sink the server's goroutines may write to while
// the test reads it.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

// lines returns the JSON log lines written so far.
func (b *syncBuffer) lines(t *testing.T) []map[string]any {
	t.Helper()
	b.mu.Lock()
	defer b.mu.Unlock()
	var out []map[string]any
	for _, l := range bytes.Split(bytes.TrimSpace(b.buf.Bytes()), []byte("\n")) {
		if len(l) == 0 {
			continue
		}
		var m map[string]any
		if err := json.Unmarshal(l, &m); err != nil {
			t.Fatalf("log line %q: %v", l, err)
		}
		out = append(out, m)
	}
	return out
}

// handled is persys_<component>_grpc_server_handled_total for one method
// and code, and whether the series exists.
func handled(t *testing.T, reg *prometheus.Registry, name, method, code string) (float64, bool) {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			labels := map[string]string{}
			for _, lp := range m.GetLabel() {
				labels[lp.GetName()] = lp.GetValue()
			}
			if labels["grpc_method"] == method && labels["grpc_code"] == code {
				return m.GetCounter().GetValue(), true
			}
		}
	}
	return 0, false
}

// panics is the panic counter of one full method name.
func panics(t *testing.T, reg *prometheus.Registry, name, method string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			for _, lp := range m.GetLabel() {
				if mf.GetName() == name && lp.GetName() == "method" && lp.GetValue() == method {
					return m.GetCounter().GetValue()
				}
			}
		}
	}
	return 0
}

// TestGRPCServerMeasuresAndLogsEachCall: every call is counted by method
// and code and logged once when it ends, a success at debug and a
// failure at warn; the methods of registered services exist at zero
// before their first call; a handler's panic is Internal, counted as
// such and as a panic.
func TestGRPCServerMeasuresAndLogsEachCall(t *testing.T) {
	testGRPCServerCalls(t, slog.LevelDebug, []string{"DEBUG OK", "WARN NotFound", "WARN Internal"})
}

// TestGRPCServerLogsOnlyFailuresAtInfo: without debug lines a success
// writes nothing (its line is never built) and a failure's line has the
// same fields as under debug.
func TestGRPCServerLogsOnlyFailuresAtInfo(t *testing.T) {
	testGRPCServerCalls(t, slog.LevelInfo, []string{"WARN NotFound", "WARN Internal"})
}

func testGRPCServerCalls(t *testing.T, level slog.Level, want []string) {
	reg := prometheus.NewRegistry()
	g := obs.NewGRPCServer("test")
	reg.MustRegister(g.Collectors()...)
	var logs syncBuffer
	log := slog.New(slog.NewJSONHandler(&logs, &slog.HandlerOptions{Level: level}))

	boom := grpc.ChainUnaryInterceptor(func(ctx context.Context, req any, info *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
		if req.(*healthpb.HealthCheckRequest).GetService() == "boom" {
			panic("boom")
		}
		return h(ctx, req)
	})
	srv := grpc.NewServer(append(g.Options(log), boom)...)
	hs := health.NewServer()
	healthpb.RegisterHealthServer(srv, hs)
	g.Initialize(srv)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(srv.Stop)
	conn, err := grpc.NewClient(ln.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	c := healthpb.NewHealthClient(conn)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()

	const name = "persys_test_grpc_server_handled_total"
	if v, ok := handled(t, reg, name, "Check", "OK"); !ok || v != 0 {
		t.Fatalf("before any call: Check/OK = %v (present %v), want 0 present", v, ok)
	}
	if _, err := c.Check(ctx, &healthpb.HealthCheckRequest{}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Check(ctx, &healthpb.HealthCheckRequest{Service: "nope"}); status.Code(err) != codes.NotFound {
		t.Fatalf("unknown service: %v, want NotFound", err)
	}
	if _, err := c.Check(ctx, &healthpb.HealthCheckRequest{Service: "boom"}); status.Code(err) != codes.Internal {
		t.Fatalf("panicking call: %v, want Internal", err)
	}
	// The server reports a call before the client sees its answer.
	for code, want := range map[string]float64{"OK": 1, "NotFound": 1, "Internal": 1} {
		if v, _ := handled(t, reg, name, "Check", code); v != want {
			t.Errorf("handled{Check,%s} = %v, want %v", code, v, want)
		}
	}
	if v := panics(t, reg, "persys_test_grpc_panics_total", "/grpc.health.v1.Health/Check"); v != 1 {
		t.Errorf("panics{Check} = %v, want 1", v)
	}

	var got []string
	for _, l := range logs.lines(t) {
		if l["grpc.method"] != "Check" {
			continue
		}
		got = append(got, l["level"].(string)+" "+l["grpc.code"].(string))
		for _, field := range []string{"grpc.time_ms", "grpc.service", "grpc.component", "peer.address"} {
			if _, ok := l[field]; !ok {
				t.Errorf("call log line without %s: %v", field, l)
			}
		}
		if l["grpc.code"] != "OK" && l["grpc.error"] == nil {
			t.Errorf("failed call's line without grpc.error: %v", l)
		}
	}
	if len(got) != len(want) {
		t.Fatalf("call log lines %v, want %v", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("call log lines %v, want %v", got, want)
		}
	}
}
