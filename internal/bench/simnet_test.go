package bench

import (
	"context"
	"net"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	persysv1 "github.com/persys-dev/compute/api/persys/v1"
	"github.com/persys-dev/compute/api/persys/v1/persysv1grpc"
	"github.com/persys-dev/compute/internal/grpcauth"
	"github.com/persys-dev/compute/internal/pki"
)

// fakeAgent answers HealthCheck with the identity the call arrived as.
type fakeAgent struct {
	persysv1grpc.UnimplementedAgentServiceServer
	id string
}

func (f *fakeAgent) HealthCheck(ctx context.Context, _ *persysv1.HealthCheckRequest) (*persysv1.HealthCheckResponse, error) {
	caller, err := grpcauth.PeerIdentity(ctx)
	if err != nil {
		return nil, err
	}
	return &persysv1.HealthCheckResponse{NodeId: f.id + " called by " + string(caller.Role) + ":" + caller.CommonName}, nil
}

// The shared listener routes each call to the node it names, asserts the
// caller's simulated identity, refuses calls without one or with a role
// it does not admit, and answers Unavailable for a node taken off.
func TestHollowMuxRoutesAndAuthenticates(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	mux := newHollowMux()
	srv := grpc.NewServer(sharedServerOptions(pki.RoleScheduler)...)
	persysv1grpc.RegisterAgentServiceServer(srv, mux)
	go func() { _ = srv.Serve(ln) }()
	defer srv.Stop()
	for _, id := range []string{"n1", "n2"} {
		mux.add(id, &fakeAgent{id: id})
	}
	conns, err := dialShared(ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer conns.Close()
	d := sharedDialer{conns: conns}
	ctx := context.Background()
	for _, id := range []string{"n1", "n2"} {
		cli, closeFn, err := d.Dial(id, "ignored")
		if err != nil {
			t.Fatal(err)
		}
		resp, err := cli.HealthCheck(ctx, &persysv1.HealthCheckRequest{})
		if err != nil {
			t.Fatalf("%s: %v", id, err)
		}
		if want := id + " called by scheduler:scheduler"; resp.GetNodeId() != want {
			t.Fatalf("answer %q, want %q", resp.GetNodeId(), want)
		}
		_ = closeFn()
	}

	mux.remove("n2")
	cli, _, _ := d.Dial("n2", "")
	if _, err := cli.HealthCheck(ctx, &persysv1.HealthCheckRequest{}); status.Code(err) != codes.Unavailable {
		t.Fatalf("node taken off: %v, want Unavailable", err)
	}

	raw := persysv1grpc.NewAgentServiceClient(conns.conns[0])
	noID := metadata.AppendToOutgoingContext(ctx, simNodeKey, "n1")
	if _, err := raw.HealthCheck(noID, &persysv1.HealthCheckRequest{}); status.Code(err) != codes.Unauthenticated {
		t.Fatalf("no identity: %v, want Unauthenticated", err)
	}
	asAgent := conns.as(pki.RoleAgent, "n1")
	asAgent.md = append(asAgent.md, simNodeKey, "n1")
	if _, err := persysv1grpc.NewAgentServiceClient(asAgent).HealthCheck(ctx, &persysv1.HealthCheckRequest{}); status.Code(err) != codes.PermissionDenied {
		t.Fatalf("agent role calling an agent: %v, want PermissionDenied", err)
	}
}
