package scheduler_test

import (
	"context"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/status"

	persysv1 "github.com/persys-dev/compute/api/persys/v1"
	"github.com/persys-dev/compute/api/persys/v1/persysv1grpc"
	"github.com/persys-dev/compute/internal/pki"
	"github.com/persys-dev/compute/internal/scheduler"
	"github.com/persys-dev/compute/internal/store/storetest"
)

// serveLight runs a scheduler over embedded etcd without agents, serving
// with mTLS and extra server options, waits until it is ready and returns
// an admin client and its registry.
func serveLight(t *testing.T, extra ...grpc.ServerOption) (persysv1grpc.ControlServiceClient, *prometheus.Registry) {
	t.Helper()
	b, err := pki.Bootstrap(t.TempDir(), nil, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	st, _ := storetest.New(t)
	reg := prometheus.NewRegistry()
	serverTLS, err := pki.ServerTLS(b.Scheduler)
	if err != nil {
		t.Fatal(err)
	}
	s, err := scheduler.New(scheduler.Config{Store: st, Logger: testLogger(),
		Registry: reg, ResyncInterval: 10 * time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); _ = s.Run(ctx) }()
	go func() {
		defer wg.Done()
		opts := append([]grpc.ServerOption{grpc.Creds(credentials.NewTLS(serverTLS))}, extra...)
		if err := scheduler.ServeWith(ctx, ln, s, opts...); err != nil {
			t.Errorf("serve: %v", err)
		}
	}()
	t.Cleanup(func() { cancel(); wg.Wait() })
	clientTLS, err := pki.ClientTLS(b.Admin, "")
	if err != nil {
		t.Fatal(err)
	}
	conn, err := grpc.NewClient(ln.Addr().String(), grpc.WithTransportCredentials(credentials.NewTLS(clientTLS)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	waitFor(t, "scheduler ready", waitLong, func() (bool, string) {
		if err := s.Ready(); err != nil {
			return false, err.Error()
		}
		return true, ""
	})
	return persysv1grpc.NewControlServiceClient(conn), reg
}

// A panic in an interceptor that runs before authentication (the first
// thing a call meets after recovery) or in a handler fails that call with
// Internal, is counted by method, and the scheduler serves on.
func TestServePanicIsInternalAndCounted(t *testing.T) {
	const leader = "/persys.v1.ControlService/GetLeader"
	const watch = "/persys.v1.ControlService/WatchWorkload"
	boom := grpc.ChainUnaryInterceptor(func(ctx context.Context, req any, info *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
		if info.FullMethod == leader {
			panic("boom")
		}
		return h(ctx, req)
	})
	boomStream := grpc.ChainStreamInterceptor(func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, h grpc.StreamHandler) error {
		if info.FullMethod == watch {
			var m map[string]int
			m["x"]++ // a nil map write: a runtime panic, not a panic call
		}
		return h(srv, ss)
	})
	c, reg := serveLight(t, boom, boomStream)
	cctx, ccancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer ccancel()

	panics := func(method string) float64 {
		t.Helper()
		vec := findCounterVec(t, reg, "persys_scheduler_grpc_panics_total")
		if vec == nil {
			return 0
		}
		return vec[method]
	}
	for i := 1; i <= 2; i++ {
		_, err := c.GetLeader(cctx, &persysv1.GetLeaderRequest{})
		if status.Code(err) != codes.Internal {
			t.Fatalf("GetLeader call %d: %v, want Internal", i, err)
		}
		if got := panics(leader); got != float64(i) {
			t.Fatalf("panics{method=%s} = %v after %d calls, want %d", leader, got, i, i)
		}
	}
	stream, err := c.WatchWorkload(cctx, &persysv1.GetWorkloadRequest{Name: "w"})
	if err == nil {
		_, err = stream.Recv()
	}
	if status.Code(err) != codes.Internal {
		t.Fatalf("WatchWorkload: %v, want Internal", err)
	}
	if got := panics(watch); got != 1 {
		t.Fatalf("panics{method=%s} = %v, want 1", watch, got)
	}
	// The process lives and serves other calls.
	if _, err := c.ListNodes(cctx, &persysv1.ListNodesRequest{}); err != nil {
		t.Fatalf("ListNodes after the panics: %v", err)
	}
	// Each call is in the server metrics with the code it returned.
	for _, tc := range []struct {
		method, code string
		want         float64
	}{{"GetLeader", "Internal", 2}, {"WatchWorkload", "Internal", 1}, {"ListNodes", "OK", 1}} {
		if got := handledCalls(t, reg, tc.method, tc.code); got != tc.want {
			t.Errorf("persys_scheduler_grpc_server_handled_total{%s,%s} = %v, want %v", tc.method, tc.code, got, tc.want)
		}
	}
}

// handledCalls is persys_scheduler_grpc_server_handled_total for one
// ControlService method and code.
func handledCalls(t *testing.T, reg *prometheus.Registry, method, code string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != "persys_scheduler_grpc_server_handled_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			labels := map[string]string{}
			for _, lp := range m.GetLabel() {
				labels[lp.GetName()] = lp.GetValue()
			}
			if labels["grpc_service"] == "persys.v1.ControlService" && labels["grpc_method"] == method && labels["grpc_code"] == code {
				return m.GetCounter().GetValue()
			}
		}
	}
	return 0
}

// Store errors reach clients as gRPC codes that name the object, never a
// store key: a name the store cannot hold is InvalidArgument (not
// Internal), a missing object NotFound as the client named it.
func TestStoreErrorsAtTheBoundary(t *testing.T) {
	c, _ := serveLight(t)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	_, err := c.DeleteWorkload(ctx, &persysv1.DeleteRequest{Name: "a/b"})
	if status.Code(err) != codes.InvalidArgument || !strings.Contains(status.Convert(err).Message(), "workload name") {
		t.Errorf("DeleteWorkload(a/b) = %v, want InvalidArgument naming the workload name", err)
	}
	_, err = c.DeleteWorkload(ctx, &persysv1.DeleteRequest{Name: "nosuch"})
	if status.Code(err) != codes.NotFound || status.Convert(err).Message() != `workload "nosuch" not found` {
		t.Errorf("DeleteWorkload(nosuch) = %v, want NotFound: workload \"nosuch\" not found", err)
	}
}

// findCounterVec returns the values of counter name by its method label.
func findCounterVec(t *testing.T, reg *prometheus.Registry, name string) map[string]float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		out := map[string]float64{}
		for _, m := range mf.GetMetric() {
			for _, lp := range m.GetLabel() {
				if lp.GetName() == "method" {
					out[lp.GetValue()] = m.GetCounter().GetValue()
				}
			}
		}
		return out
	}
	return nil
}
