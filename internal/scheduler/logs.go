package scheduler

import (
	"context"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	persysv1 "github.com/persys-dev/compute/api/persys/v1"
)

// GetWorkloadLogs asks the agent of the node that runs the workload for
// the tail of its log.
func (c *controlService) GetWorkloadLogs(ctx context.Context, req *persysv1.GetWorkloadLogsRequest) (*persysv1.GetWorkloadLogsResponse, error) {
	if err := c.s.serving(ctx); err != nil {
		return nil, err
	}
	name := req.GetName()
	s := c.s
	s.mu.Lock()
	e := s.workloads[name]
	var nodeID, addr string
	if e != nil {
		nodeID = e.assignment.GetNodeId()
		if ne := s.nodes[nodeID]; ne != nil {
			addr = ne.node.GetAddress()
		}
	}
	s.mu.Unlock()
	switch {
	case e == nil:
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
