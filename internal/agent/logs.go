package agent

import (
	"context"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	persysv1 "github.com/persys-dev/compute/api/persys/v1"
	"github.com/persys-dev/compute/internal/runtime"
)

// Log tail bounds: what GetWorkloadLogs returns by default and at most.
const (
	DefaultLogTail = 64 << 10
	MaxLogTail     = 4 << 20
)

// GetWorkloadLogs returns the tail of a workload's log from the runtime
// that runs it (container output, VM serial console).
func (s *service) GetWorkloadLogs(ctx context.Context, req *persysv1.GetWorkloadLogsRequest) (*persysv1.GetWorkloadLogsResponse, error) {
	a := s.a
	if err := validateName(req.GetName()); err != nil {
		return nil, invalidSpec(err)
	}
	tail := req.GetTailBytes()
	switch {
	case tail < 0:
		return nil, status.Errorf(codes.InvalidArgument, "tail_bytes %d is negative", tail)
	case tail == 0:
		tail = DefaultLogTail
	case tail > MaxLogTail:
		tail = MaxLogTail
	}
	for _, rt := range a.order {
		st, err := rt.Status(ctx, req.GetName())
		if err != nil || st.GetState() == persysv1.ActualState_ACTUAL_STATE_MISSING || st.GetState() == persysv1.ActualState_ACTUAL_STATE_UNSPECIFIED {
			continue
		}
		lg, ok := rt.(runtime.Logger)
		if !ok {
			return nil, status.Errorf(codes.Unimplemented, "the %s runtime keeps no logs", runtimeName(rt.Type()))
		}
		data, truncated, err := lg.Logs(ctx, req.GetName(), tail)
		if err != nil {
			return nil, runtimeError(ctx, "logs "+req.GetName(), err)
		}
		return &persysv1.GetWorkloadLogsResponse{Data: data, Truncated: truncated, NodeId: a.cfg.NodeID}, nil
	}
	return nil, status.Errorf(codes.NotFound, "workload %q does not run on node %s", req.GetName(), a.cfg.NodeID)
}
