package bench

import (
	"context"
	"net"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	persysv1 "github.com/persys-dev/compute/api/persys/v1"
	"github.com/persys-dev/compute/api/persys/v1/persysv1grpc"
	"github.com/persys-dev/compute/internal/grpcauth"
	"github.com/persys-dev/compute/internal/nodechannel"
	"github.com/persys-dev/compute/internal/pki"
)

// fakeAgent answers HealthCheck with its node id.
type fakeAgent struct {
	persysv1grpc.UnimplementedAgentServiceServer
	id string
}

func (f *fakeAgent) HealthCheck(context.Context, *persysv1.HealthCheckRequest) (*persysv1.HealthCheckResponse, error) {
	return &persysv1.HealthCheckResponse{NodeId: f.id}, nil
}

// hubServer accepts control streams as the caller's asserted identity.
type hubServer struct {
	persysv1grpc.UnimplementedNodeChannelServiceServer
	hub *nodechannel.Hub
}

func (h hubServer) Connect(s grpc.BidiStreamingServer[persysv1.AgentFrame, persysv1.SchedulerFrame]) error {
	id, err := grpcauth.PeerIdentity(s.Context())
	if err != nil {
		return status.Error(codes.Unauthenticated, err.Error())
	}
	return h.hub.Accept(s.Context(), id.CommonName, s)
}

// The shared transport carries each hollow node's control stream tagged
// with its identity: the scheduler's calls reach the node that opened the
// stream; a stream without an identity, or with a role not admitted, is
// refused.
func TestSharedTransportCarriesControlStreams(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	hub := nodechannel.NewHub(nodechannel.HubConfig{})
	srv := grpc.NewServer(sharedServerOptions(pki.RoleAgent)...)
	persysv1grpc.RegisterNodeChannelServiceServer(srv, hubServer{hub: hub})
	go func() { _ = srv.Serve(ln) }()
	defer srv.Stop()
	conns, err := dialShared(ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer conns.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	for _, id := range []string{"n1", "n2"} {
		stream, err := persysv1grpc.NewNodeChannelServiceClient(conns.as(pki.RoleAgent, id)).Connect(ctx)
		if err != nil {
			t.Fatal(err)
		}
		go func() { _ = nodechannel.Serve(ctx, stream, nodechannel.Agent{NodeID: id, Server: &fakeAgent{id: id}}) }()
	}
	for _, id := range []string{"n1", "n2"} {
		cli, err := hub.Await(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		resp, err := cli.HealthCheck(ctx, &persysv1.HealthCheckRequest{})
		if err != nil || resp.GetNodeId() != id {
			t.Fatalf("%s answered %v, %v", id, resp, err)
		}
	}

	refused := func(cc grpc.ClientConnInterface) codes.Code {
		s, err := persysv1grpc.NewNodeChannelServiceClient(cc).Connect(ctx)
		if err == nil {
			_ = s.Send(&persysv1.AgentFrame{Body: &persysv1.AgentFrame_Hello{Hello: &persysv1.ChannelHello{NodeId: "n3"}}})
			_, err = s.Recv()
		}
		return status.Code(err)
	}
	if c := refused(conns.conns[0]); c != codes.Unauthenticated {
		t.Fatalf("no identity: %v, want Unauthenticated", c)
	}
	if c := refused(conns.as(pki.RoleScheduler, "n3")); c != codes.PermissionDenied {
		t.Fatalf("scheduler role: %v, want PermissionDenied", c)
	}
}
