package scheduler

import (
	"context"
	"errors"
	"io"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	persysv1 "github.com/persys-dev/compute/api/persys/v1"
	"github.com/persys-dev/compute/api/persys/v1/persysv1grpc"
)

// GetWorkloadLogs asks the agent of the node that runs the workload for
// the tail of its log.
func (s *Scheduler) WorkloadLogs(ctx context.Context, req *persysv1.GetWorkloadLogsRequest) (*persysv1.GetWorkloadLogsResponse, error) {
	name := req.GetName()
	nodeID, cli, err := s.agentOf(name)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, s.cfg.ApplyTimeout)
	defer cancel()
	resp, err := cli.GetWorkloadLogs(ctx, &persysv1.GetWorkloadLogsRequest{Name: name, TailBytes: req.GetTailBytes()})
	if err != nil {
		return nil, err
	}
	resp.NodeId = nodeID
	return resp, nil
}

// agentOf returns the node that runs the workload and a client of its agent.
func (s *Scheduler) agentOf(name string) (string, persysv1grpc.AgentServiceClient, error) {
	nodeID, addr, found := s.cache.Location(name)
	switch {
	case !found:
		return "", nil, status.Errorf(codes.NotFound, "workload %q not found", name)
	case nodeID == "":
		return "", nil, status.Errorf(codes.FailedPrecondition, "workload %q is not placed on a node yet", name)
	case addr == "":
		return "", nil, status.Errorf(codes.Unavailable, "node %s of workload %q is unknown", nodeID, name)
	}
	cli, err := s.nodes.Client(nodeID)
	if err != nil {
		return "", nil, err
	}
	return nodeID, cli, nil
}

// StreamWorkloadLogs relays the agent's follow of the workload's log to
// send, chunk by chunk (the agent's stream is flow-controlled, so a slow
// send slows the agent rather than filling memory), until ctx ends or the
// agent's stream does.
func (s *Scheduler) StreamWorkloadLogs(ctx context.Context, req *persysv1.StreamWorkloadLogsRequest, send func(*persysv1.StreamWorkloadLogsResponse) error) error {
	nodeID, cli, err := s.agentOf(req.GetName())
	if err != nil {
		return err
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stream, err := cli.StreamWorkloadLogs(ctx, req)
	if err != nil {
		return err
	}
	for {
		m, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
		m.NodeId = nodeID
		if err := send(m); err != nil {
			return err
		}
	}
}
