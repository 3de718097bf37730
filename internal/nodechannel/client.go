package nodechannel

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	persysv1 "github.com/persys-dev/compute/api/persys/v1"
	"github.com/persys-dev/compute/api/persys/v1/persysv1grpc"
)

// followWindow is how many log chunks of one follow the agent may send
// before the scheduler's reader took some (FollowCredit); the scheduler
// buffers that many, so a reader that is slow holds back only its follow.
const followWindow = 32

// timeoutNanos is a frame's timeout_nanos for a deadline left away: at
// least 1 (0 means none), so that a deadline already passed still ends
// the call on the agent at once.
func timeoutNanos(left time.Duration) int64 { return max(1, int64(left)) }

// client is the AgentService of one node over its current session.
type client struct {
	hub  *Hub
	node string
}

var _ persysv1grpc.AgentServiceClient = (*client)(nil)

// ctxErr is the status gRPC returns for a call whose context ended.
func ctxErr(ctx context.Context) error { return status.FromContextError(ctx.Err()).Err() }

// open starts a call on the node's session and sends its request.
func (c *client) open(ctx context.Context, method string, follow bool, body func(*persysv1.SchedulerFrame)) (*session, *call, error) {
	s := c.hub.session(c.node)
	if s == nil {
		return nil, nil, errNoStream(c.node)
	}
	if ctx.Err() != nil {
		return nil, nil, ctxErr(ctx)
	}
	cl, err := s.start(method, follow)
	if err != nil {
		return nil, nil, err
	}
	f := &persysv1.SchedulerFrame{CallId: cl.id}
	if d, ok := ctx.Deadline(); ok {
		f.TimeoutNanos = timeoutNanos(time.Until(d))
		// Agents of the previous release read only the absolute time.
		f.DeadlineUnixNano = d.UnixNano()
	}
	body(f)
	if err := s.send(f); err != nil {
		s.forget(cl.id)
		return nil, nil, status.Errorf(codes.Unavailable, "node %s: control stream closed: sending %s: %v", c.node, method, err)
	}
	return s, cl, nil
}

// unary sends one request and waits for its answer.
func (c *client) unary(ctx context.Context, method string, body func(*persysv1.SchedulerFrame)) (f *persysv1.AgentFrame, err error) {
	start := time.Now()
	defer func() {
		c.hub.cfg.Metrics.call(method, err)
		if c.hub.cfg.Observe != nil {
			c.hub.cfg.Observe(method, time.Since(start), err)
		}
	}()
	s, cl, err := c.open(ctx, method, false, body)
	if err != nil {
		return nil, err
	}
	select {
	case <-cl.done:
		if cl.err != nil {
			return nil, cl.err
		}
		return <-cl.answers, nil
	case <-ctx.Done():
		if s.forget(cl.id) {
			s.cancelCall(cl.id)
		}
		return nil, ctxErr(ctx)
	}
}

func (c *client) wrongAnswer(method string, f *persysv1.AgentFrame) error {
	return status.Errorf(codes.Internal, "node %s: %s answered with %s", c.node, method, bodyName(f))
}

func (c *client) ApplyWorkload(ctx context.Context, in *persysv1.ApplyWorkloadRequest, _ ...grpc.CallOption) (*persysv1.ApplyWorkloadResponse, error) {
	f, err := c.unary(ctx, "ApplyWorkload", func(f *persysv1.SchedulerFrame) { f.Body = &persysv1.SchedulerFrame_Apply{Apply: in} })
	if err != nil {
		return nil, err
	}
	if r := f.GetApply(); r != nil {
		return r, nil
	}
	return nil, c.wrongAnswer("ApplyWorkload", f)
}

func (c *client) DeleteWorkload(ctx context.Context, in *persysv1.DeleteWorkloadRequest, _ ...grpc.CallOption) (*persysv1.DeleteWorkloadResponse, error) {
	f, err := c.unary(ctx, "DeleteWorkload", func(f *persysv1.SchedulerFrame) { f.Body = &persysv1.SchedulerFrame_Delete{Delete: in} })
	if err != nil {
		return nil, err
	}
	if r := f.GetDelete(); r != nil {
		return r, nil
	}
	return nil, c.wrongAnswer("DeleteWorkload", f)
}

func (c *client) GetWorkloadStatus(ctx context.Context, in *persysv1.GetWorkloadStatusRequest, _ ...grpc.CallOption) (*persysv1.WorkloadStatus, error) {
	f, err := c.unary(ctx, "GetWorkloadStatus", func(f *persysv1.SchedulerFrame) { f.Body = &persysv1.SchedulerFrame_GetStatus{GetStatus: in} })
	if err != nil {
		return nil, err
	}
	if r := f.GetStatus(); r != nil {
		return r, nil
	}
	return nil, c.wrongAnswer("GetWorkloadStatus", f)
}

func (c *client) ListWorkloads(ctx context.Context, in *persysv1.ListAgentWorkloadsRequest, _ ...grpc.CallOption) (*persysv1.ListAgentWorkloadsResponse, error) {
	f, err := c.unary(ctx, "ListWorkloads", func(f *persysv1.SchedulerFrame) { f.Body = &persysv1.SchedulerFrame_List{List: in} })
	if err != nil {
		return nil, err
	}
	if r := f.GetList(); r != nil {
		return r, nil
	}
	return nil, c.wrongAnswer("ListWorkloads", f)
}

func (c *client) HealthCheck(ctx context.Context, in *persysv1.HealthCheckRequest, _ ...grpc.CallOption) (*persysv1.HealthCheckResponse, error) {
	f, err := c.unary(ctx, "HealthCheck", func(f *persysv1.SchedulerFrame) { f.Body = &persysv1.SchedulerFrame_Health{Health: in} })
	if err != nil {
		return nil, err
	}
	if r := f.GetHealth(); r != nil {
		return r, nil
	}
	return nil, c.wrongAnswer("HealthCheck", f)
}

func (c *client) GetWorkloadLogs(ctx context.Context, in *persysv1.GetWorkloadLogsRequest, _ ...grpc.CallOption) (*persysv1.GetWorkloadLogsResponse, error) {
	f, err := c.unary(ctx, "GetWorkloadLogs", func(f *persysv1.SchedulerFrame) { f.Body = &persysv1.SchedulerFrame_Logs{Logs: in} })
	if err != nil {
		return nil, err
	}
	if r := f.GetLogs(); r != nil {
		return r, nil
	}
	return nil, c.wrongAnswer("GetWorkloadLogs", f)
}

// StreamWorkloadLogs starts a log follow; its chunks arrive through Recv
// until the agent ends it (io.EOF), it fails, or ctx ends (which tells the
// agent to stop).
func (c *client) StreamWorkloadLogs(ctx context.Context, in *persysv1.StreamWorkloadLogsRequest, _ ...grpc.CallOption) (grpc.ServerStreamingClient[persysv1.StreamWorkloadLogsResponse], error) {
	const method = "StreamWorkloadLogs"
	s, cl, err := c.open(ctx, method, true, func(f *persysv1.SchedulerFrame) {
		f.Body = &persysv1.SchedulerFrame_FollowLogs{FollowLogs: in}
	})
	if err != nil {
		c.hub.cfg.Metrics.call(method, err)
		return nil, err
	}
	fl := &follow{ctx: ctx, c: c, s: s, cl: cl}
	// The reader may stop calling Recv once ctx ends: the agent is told
	// now, not when the buffer fills.
	fl.stop = context.AfterFunc(ctx, func() {
		if s.forget(cl.id) {
			s.cancelCall(cl.id)
			cl.finish(ctxErr(ctx))
		}
	})
	return fl, nil
}

// follow is the scheduler's end of one log follow.
type follow struct {
	ctx context.Context
	c   *client
	s   *session
	cl  *call
	// taken counts the chunks read since the last credit sent.
	taken uint32
	stop  func() bool
	once  sync.Once
}

var _ grpc.ServerStreamingClient[persysv1.StreamWorkloadLogsResponse] = (*follow)(nil)

func (f *follow) Recv() (*persysv1.StreamWorkloadLogsResponse, error) {
	select {
	case a := <-f.cl.answers:
		return f.take(a), nil
	default:
	}
	select {
	case a := <-f.cl.answers:
		return f.take(a), nil
	case <-f.cl.done:
		// Chunks sent before the end were queued before it.
		select {
		case a := <-f.cl.answers:
			return f.take(a), nil
		default:
		}
		return nil, f.end(f.cl.err)
	}
}

// take counts a chunk read and gives the agent credit for half a window
// at a time.
func (f *follow) take(a *persysv1.AgentFrame) *persysv1.StreamWorkloadLogsResponse {
	f.taken++
	if f.taken >= followWindow/2 {
		n := f.taken
		f.taken = 0
		select {
		case <-f.cl.done:
		default:
			// A failed send ends the session, which ends the follow.
			_ = f.s.send(&persysv1.SchedulerFrame{CallId: f.cl.id, Body: &persysv1.SchedulerFrame_Credit{Credit: &persysv1.FollowCredit{Chunks: n}}})
		}
	}
	return a.GetLogChunk()
}

// end reports the follow's outcome once and turns the end mark into EOF.
func (f *follow) end(err error) error {
	f.once.Do(func() {
		f.stop()
		if errors.Is(err, errEnd) {
			f.c.hub.cfg.Metrics.call("StreamWorkloadLogs", nil)
		} else {
			f.c.hub.cfg.Metrics.call("StreamWorkloadLogs", err)
		}
	})
	if errors.Is(err, errEnd) {
		return io.EOF
	}
	return err
}

func (f *follow) Header() (metadata.MD, error) { return nil, nil }
func (f *follow) Trailer() metadata.MD         { return nil }
func (f *follow) CloseSend() error             { return nil }
func (f *follow) Context() context.Context     { return f.ctx }
func (f *follow) SendMsg(any) error {
	return errors.New("nodechannel: a log follow takes no more messages")
}

func (f *follow) RecvMsg(m any) error {
	r, err := f.Recv()
	if err != nil {
		return err
	}
	pm, ok := m.(proto.Message)
	if !ok {
		return fmt.Errorf("nodechannel: RecvMsg into %T", m)
	}
	proto.Reset(pm)
	proto.Merge(pm, r)
	return nil
}
