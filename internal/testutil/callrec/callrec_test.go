package callrec_test

import (
	"context"
	"net"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"

	"github.com/persys-dev/compute/internal/testutil/callrec"
	"github.com/persys-dev/compute/internal/testutil/eventually"
)

// TestRecorder records the calls a real gRPC server (the health service)
// answers: request, answer, error, deadline and the server's address.
func TestRecorder(t *testing.T) {
	rec := &callrec.Recorder{}
	srv := grpc.NewServer(rec.ServerOptions()...)
	hs := health.NewServer()
	hs.SetServingStatus("up", healthpb.HealthCheckResponse_SERVING)
	healthpb.RegisterHealthServer(srv, hs)
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
	cl := healthpb.NewHealthClient(conn)

	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if _, err := cl.Check(ctx, &healthpb.HealthCheckRequest{Service: "up"}); err != nil {
		t.Fatal(err)
	}
	if _, err := cl.Check(ctx, &healthpb.HealthCheckRequest{Service: "nothing"}); status.Code(err) != codes.NotFound {
		t.Fatalf("check of an unknown service: %v", err)
	}
	checks := rec.Calls("Check")
	if len(checks) != 2 {
		t.Fatalf("%d Check calls recorded, want 2", len(checks))
	}
	first, second := checks[0], checks[1]
	if first.Request.(*healthpb.HealthCheckRequest).GetService() != "up" || first.Err != nil ||
		first.Response.(*healthpb.HealthCheckResponse).GetStatus() != healthpb.HealthCheckResponse_SERVING {
		t.Errorf("first call %+v", first)
	}
	if first.Server != ln.Addr().String() || first.Left <= 0 || first.Left > time.Minute {
		t.Errorf("first call at %q with %s left, want %s and under a minute", first.Server, first.Left, ln.Addr())
	}
	if status.Code(second.Err) != codes.NotFound || second.Response != nil {
		t.Errorf("second call %+v, want NotFound without an answer", second)
	}

	// A stream is recorded with its request once it arrives.
	stream, err := cl.Watch(ctx, &healthpb.HealthCheckRequest{Service: "up"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := stream.Recv(); err != nil {
		t.Fatal(err)
	}
	eventually.Eventually(t, "the watch recorded", 10*time.Second, eventually.True(func() bool { return len(rec.Calls("Watch")) == 1 }))
	if n := len(rec.Calls("")); n != 3 {
		t.Errorf("%d calls recorded in all, want 3", n)
	}
}
