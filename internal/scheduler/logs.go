package scheduler

import (
	"context"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	persysv1 "github.com/persys-dev/compute/api/persys/v1"
)

// GetWorkloadLogs asks the agent of the node that runs the workload for
// the tail of its log.
func (s *Scheduler) WorkloadLogs(ctx context.Context, req *persysv1.GetWorkloadLogsRequest) (*persysv1.GetWorkloadLogsResponse, error) {
	name := req.GetName()
	nodeID, addr, found := s.cache.Location(name)
	switch {
	case !found:
		return nil, status.Errorf(codes.NotFound, "workload %q not found", name)
	case nodeID == "":
		return nil, status.Errorf(codes.FailedPrecondition, "workload %q is not placed on a node yet", name)
	case addr == "":
		return nil, status.Errorf(codes.Unavailable, "node %s of workload %q is unknown", nodeID, name)
	}
	cli, err := s.agents().client(nodeID, addr)
	if err != nil {
		return nil, status.Errorf(codes.Unavailable, "node %s: %v", nodeID, err)
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
