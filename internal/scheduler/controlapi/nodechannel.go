package controlapi

import (
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	persysv1 "github.com/persys-dev/compute/api/persys/v1"
	"github.com/persys-dev/compute/api/persys/v1/persysv1grpc"
	"github.com/persys-dev/compute/internal/grpcauth"
	"github.com/persys-dev/compute/internal/nodechannel"
)

// NewNodeChannel returns the NodeChannelService over hub: each agent's
// Connect stream becomes its node's session. Only the leader accepts
// (a follower refuses naming the leader, as for every leader-only call),
// and only for the node of the caller's certificate (StreamAuth requires
// role agent).
func NewNodeChannel(loop Loop, hub *nodechannel.Hub) persysv1grpc.NodeChannelServiceServer {
	return &nodeChannel{s: loop, hub: hub}
}

type nodeChannel struct {
	persysv1grpc.UnimplementedNodeChannelServiceServer
	s   Loop
	hub *nodechannel.Hub
}

func (n *nodeChannel) Connect(stream grpc.BidiStreamingServer[persysv1.AgentFrame, persysv1.SchedulerFrame]) error {
	ctx := stream.Context()
	if err := n.s.Serving(ctx); err != nil {
		return err
	}
	id, err := grpcauth.PeerIdentity(ctx)
	if err != nil {
		return status.Error(codes.Unauthenticated, err.Error())
	}
	return n.hub.Accept(ctx, id.CommonName, stream)
}
