package agent

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"

	"google.golang.org/grpc"
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

// MaxServiceName bounds the compose service a log follow names.
const MaxServiceName = 253

// GetWorkloadLogs returns the tail of a workload's log from the runtime
// that runs it (container output, VM serial console).
func (s *service) GetWorkloadLogs(ctx context.Context, req *persysv1.GetWorkloadLogsRequest) (*persysv1.GetWorkloadLogsResponse, error) {
	a := s.a
	if err := validateName(req.GetName()); err != nil {
		return nil, invalidSpec(err)
	}
	tail, err := tailBytes(req.GetTailBytes(), false)
	if err != nil {
		return nil, err
	}
	rt, err := a.runtimeRunning(ctx, req.GetName())
	if err != nil {
		return nil, err
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

// tailBytes checks a requested tail and applies the default (none with
// since: everything since then) and the cap.
func tailBytes(n int64, since bool) (int64, error) {
	switch {
	case n < 0:
		return 0, status.Errorf(codes.InvalidArgument, "tail_bytes %d is negative", n)
	case n == 0 && since:
		return 0, nil
	case n == 0:
		return DefaultLogTail, nil
	}
	return min(n, MaxLogTail), nil
}

// runtimeRunning finds the runtime that runs the workload on this node.
func (a *Agent) runtimeRunning(ctx context.Context, name string) (runtime.Runtime, error) {
	for _, rt := range a.order {
		st, err := rt.Status(ctx, name)
		if err != nil || st.GetState() == persysv1.ActualState_ACTUAL_STATE_MISSING || st.GetState() == persysv1.ActualState_ACTUAL_STATE_UNSPECIFIED {
			continue
		}
		return rt, nil
	}
	return nil, status.Errorf(codes.NotFound, "workload %q does not run on node %s", name, a.cfg.NodeID)
}

// StreamWorkloadLogs sends the workload's log, then its new output, until
// the caller goes away or the output ends. The first message carries no
// data: it tells the caller the stream started (node_id set).
func (s *service) StreamWorkloadLogs(req *persysv1.StreamWorkloadLogsRequest, stream grpc.ServerStreamingServer[persysv1.StreamWorkloadLogsResponse]) error {
	a := s.a
	ctx, cancel := context.WithCancel(stream.Context())
	defer cancel()
	f, err := logFollow(req)
	if err != nil {
		return err
	}
	rt, err := a.runtimeRunning(ctx, req.GetName())
	if err != nil {
		return err
	}
	fl, ok := rt.(runtime.Follower)
	if !ok {
		return status.Errorf(codes.Unimplemented, "the %s runtime cannot follow logs", runtimeName(rt.Type()))
	}
	var sendErr error
	send := func(p []byte) error {
		return stream.Send(&persysv1.StreamWorkloadLogsResponse{Data: p, NodeId: a.cfg.NodeID})
	}
	f.Started = func() { sendErr = send(nil) }
	stopping := a.onStreamsDone(ctx, cancel)
	err = fl.FollowLogs(ctx, req.GetName(), f, func(p []byte) error {
		if sendErr != nil {
			return sendErr
		}
		return send(p)
	})
	if stopping.Load() {
		return status.Error(codes.Unavailable, "the agent is shutting down")
	}
	return followError(ctx, req.GetName(), err)
}

// onStreamsDone cancels when the server stops before ctx ends, and then
// reports true.
func (a *Agent) onStreamsDone(ctx context.Context, cancel context.CancelFunc) *atomic.Bool {
	var stopping atomic.Bool
	go func() {
		select {
		case <-a.streamsDone:
			stopping.Store(true)
			cancel()
		case <-ctx.Done():
		}
	}()
	return &stopping
}

// logFollow checks a follow request and turns it into the runtime's terms.
func logFollow(req *persysv1.StreamWorkloadLogsRequest) (runtime.LogFollow, error) {
	var f runtime.LogFollow
	if err := validateName(req.GetName()); err != nil {
		return f, invalidSpec(err)
	}
	if ts := req.GetSince(); ts != nil {
		if err := ts.CheckValid(); err != nil {
			return f, status.Errorf(codes.InvalidArgument, "since: %v", err)
		}
		f.Since = ts.AsTime()
	}
	tail, err := tailBytes(req.GetTailBytes(), !f.Since.IsZero())
	if err != nil {
		return f, err
	}
	f.TailBytes = tail
	if len(req.GetService()) > MaxServiceName {
		return f, status.Errorf(codes.InvalidArgument, "service: longer than %d bytes", MaxServiceName)
	}
	f.Service = req.GetService()
	return f, nil
}

// followError translates the end of a follow at the gRPC boundary: the
// caller's mistakes are InvalidArgument naming the field.
func followError(ctx context.Context, name string, err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, runtime.ErrLogSince):
		return status.Errorf(codes.InvalidArgument, "since: %v", err)
	case errors.Is(err, runtime.ErrLogService):
		return status.Errorf(codes.InvalidArgument, "service: %v", err)
	}
	if _, ok := status.FromError(err); ok {
		return err
	}
	return runtimeError(ctx, fmt.Sprintf("follow logs %s", name), err)
}
