package nodechannel

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	persysv1 "github.com/persys-dev/compute/api/persys/v1"
	"github.com/persys-dev/compute/api/persys/v1/persysv1grpc"
)

// SchedulerStream is the agent's end of one Connect stream
// (grpc.BidiStreamingClient[AgentFrame, SchedulerFrame] satisfies it).
type SchedulerStream interface {
	Context() context.Context
	Send(*persysv1.AgentFrame) error
	Recv() (*persysv1.SchedulerFrame, error)
}

// Agent is what Serve answers for.
type Agent struct {
	// NodeID is sent in the hello; it must be the node of the agent's
	// certificate.
	NodeID string
	// Server answers the scheduler's requests.
	Server persysv1grpc.AgentServiceServer
	// Register, when set, goes in the hello: the scheduler registers the
	// node before it accepts the stream, and a refusal ends the stream
	// with its status (from Serve).
	Register *persysv1.RegisterNodeRequest
	// Registered, when set with Register, is given the scheduler's answer
	// to it once the stream is accepted, before Accepted; an error ends
	// the stream, and Serve returns it.
	Registered func(*persysv1.RegisterNodeResponse) error
	// Accepted, when set, is called once the scheduler accepted the
	// stream (a reconnect loop resets its backoff there).
	Accepted func()
	// Linked, when set, is given the stream's Link once the scheduler
	// accepted it, before any request is read: the agent's own calls
	// (heartbeats) go on it until the stream ends.
	Linked func(*Link)
	// Log gets a line per handler that panicked; nil discards.
	Log *slog.Logger
	// Unary and Stream, when set, wrap every call as a gRPC server's
	// interceptors would (metrics, call log, recovery); the context
	// carries the method (grpc.Method).
	Unary  grpc.UnaryServerInterceptor
	Stream grpc.StreamServerInterceptor
}

// ErrNotAccepted marks a stream whose first answer was not accepted.
var ErrNotAccepted = errors.New("nodechannel: the scheduler did not accept the stream")

// ErrNotRegistered marks a stream accepted without an answer to the
// hello's registration: the scheduler predates registration on the
// stream.
var ErrNotRegistered = errors.New("nodechannel: the scheduler accepted the stream without registering the node (it predates registration on the control stream; upgrade it)")

// Serve runs one stream: it sends the hello, waits for accepted, then runs
// each request in its own goroutine under a context that carries the
// frame's deadline and ends with a cancel frame or the stream, and sends
// the answer. It returns when the stream fails or ctx ends (then nil),
// after every handler has returned.
func Serve(ctx context.Context, stream SchedulerStream, a Agent) error {
	if a.Server == nil || a.NodeID == "" {
		return errors.New("nodechannel: Serve needs a node id and a server")
	}
	if a.Log == nil {
		a.Log = slog.New(slog.DiscardHandler)
	}
	parent := ctx
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	r := &runner{a: a, stream: stream, parent: parent, ctx: ctx, cancel: cancel, running: map[uint64]context.CancelFunc{}, follows: map[uint64]*logSender{},
		own: map[uint64]chan *persysv1.SchedulerFrame{}}
	// io.EOF means the scheduler already ended the stream (a refusal, a
	// follower's leader hint): Recv below returns why.
	hello := &persysv1.ChannelHello{NodeId: a.NodeID, Register: a.Register}
	if err := r.send(&persysv1.AgentFrame{Body: &persysv1.AgentFrame_Hello{Hello: hello}}); err != nil && !errors.Is(err, io.EOF) {
		return r.end(fmt.Errorf("sending hello: %w", err))
	}
	first, err := stream.Recv()
	if err != nil {
		return r.end(err)
	}
	if first.GetAccepted() == nil {
		return r.end(fmt.Errorf("%w: first frame is %s", ErrNotAccepted, bodyName(first)))
	}
	if a.Register != nil {
		resp := first.GetAccepted().GetRegistered()
		if resp == nil {
			return r.end(ErrNotRegistered)
		}
		if a.Registered != nil {
			if err := a.Registered(resp); err != nil {
				return r.end(err)
			}
		}
	}
	if a.Accepted != nil {
		a.Accepted()
	}
	if a.Linked != nil {
		a.Linked(&Link{r: r})
	}
	for {
		f, err := stream.Recv()
		if err != nil {
			return r.end(err)
		}
		r.dispatch(f)
	}
}

// runner is one stream on the agent.
type runner struct {
	a      Agent
	stream SchedulerStream
	parent context.Context
	// ctx ends when the stream does; every handler's context derives
	// from it.
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	sendMu sync.Mutex

	mu      sync.Mutex
	running map[uint64]context.CancelFunc
	follows map[uint64]*logSender
	// own holds the agent's calls awaiting their answer, by the call id
	// the agent chose (lastOwn is the last one).
	own     map[uint64]chan *persysv1.SchedulerFrame
	lastOwn uint64
}

// end stops every handler, waits for them and returns err, or nil when
// ctx ended.
func (r *runner) end(err error) error {
	r.cancel()
	r.wg.Wait()
	if r.parent.Err() != nil {
		return nil
	}
	return err
}

func (r *runner) send(f *persysv1.AgentFrame) error {
	r.sendMu.Lock()
	defer r.sendMu.Unlock()
	return r.stream.Send(f)
}

func (r *runner) fail(id uint64, err error) {
	_ = r.send(&persysv1.AgentFrame{CallId: id, Body: &persysv1.AgentFrame_Error{Error: status.Convert(err).Proto()}})
}

// failAsync answers id with err off the receive loop.
func (r *runner) failAsync(id uint64, err error) {
	r.wg.Add(1)
	go func() {
		defer r.wg.Done()
		r.fail(id, err)
	}()
}

// dispatch starts a request's handler or cancels one.
func (r *runner) dispatch(f *persysv1.SchedulerFrame) {
	id := f.GetCallId()
	switch f.GetBody().(type) {
	case *persysv1.SchedulerFrame_Cancel:
		r.mu.Lock()
		if c := r.running[id]; c != nil {
			c()
		}
		r.mu.Unlock()
		return
	case *persysv1.SchedulerFrame_Credit:
		r.mu.Lock()
		if l := r.follows[id]; l != nil {
			l.credit(f.GetCredit().GetChunks())
		}
		r.mu.Unlock()
		return
	case *persysv1.SchedulerFrame_Accepted:
		return
	case *persysv1.SchedulerFrame_HeartbeatAck, *persysv1.SchedulerFrame_Error:
		r.mu.Lock()
		ch := r.own[id]
		delete(r.own, id)
		r.mu.Unlock()
		if ch != nil {
			ch <- f // buffer of one; the call is forgotten above
		}
		return
	case *persysv1.SchedulerFrame_Apply, *persysv1.SchedulerFrame_Delete, *persysv1.SchedulerFrame_GetStatus,
		*persysv1.SchedulerFrame_List, *persysv1.SchedulerFrame_Health, *persysv1.SchedulerFrame_Logs,
		*persysv1.SchedulerFrame_FollowLogs:
	default:
		// A newer scheduler may send what this agent does not know.
		r.failAsync(id, status.Errorf(codes.Unimplemented, "call %d: frame body: empty or unknown to this agent", id))
		return
	}
	if id == 0 {
		r.failAsync(id, status.Error(codes.InvalidArgument, "call_id: required"))
		return
	}
	var cctx context.Context
	var cancel context.CancelFunc
	if d, ok := frameDeadline(f, time.Now()); ok {
		cctx, cancel = context.WithDeadline(r.ctx, d)
	} else {
		cctx, cancel = context.WithCancel(r.ctx)
	}
	r.mu.Lock()
	if _, dup := r.running[id]; dup {
		r.mu.Unlock()
		cancel()
		r.failAsync(id, status.Errorf(codes.InvalidArgument, "call_id: %d is already running", id))
		return
	}
	r.running[id] = cancel
	r.mu.Unlock()
	r.wg.Add(1)
	go func() {
		defer r.wg.Done()
		defer func() {
			r.mu.Lock()
			delete(r.running, id)
			r.mu.Unlock()
			cancel()
		}()
		r.handle(cctx, f)
	}()
}

// frameDeadline is when the answer to f stops being awaited, by the
// agent's clock, f arriving at now: now plus the time f says is left, so
// that a scheduler whose clock is off does not move it; from a scheduler
// that predates timeout_nanos, its absolute deadline_unix_nano.
func frameDeadline(f *persysv1.SchedulerFrame, now time.Time) (time.Time, bool) {
	if t := f.GetTimeoutNanos(); t != 0 {
		return now.Add(time.Duration(t)), true
	}
	if d := f.GetDeadlineUnixNano(); d != 0 {
		return time.Unix(0, d), true
	}
	return time.Time{}, false
}

// handle runs one request and sends its answer.
func (r *runner) handle(ctx context.Context, f *persysv1.SchedulerFrame) {
	id := f.GetCallId()
	defer func() {
		if p := recover(); p != nil {
			r.a.Log.Error("AgentService handler panicked", "call", id, "body", bodyName(f), "panic", fmt.Sprint(p))
			r.fail(id, status.Errorf(codes.Internal, "agent: %s panicked", bodyName(f)))
		}
	}()
	srv := r.a.Server
	var (
		body persysv1.AgentFrame
		err  error
	)
	switch b := f.GetBody().(type) {
	case *persysv1.SchedulerFrame_Apply:
		var out any
		out, err = r.unary(ctx, persysv1grpc.AgentService_ApplyWorkload_FullMethodName, b.Apply, func(ctx context.Context, req any) (any, error) {
			return srv.ApplyWorkload(ctx, req.(*persysv1.ApplyWorkloadRequest))
		})
		if resp, _ := out.(*persysv1.ApplyWorkloadResponse); resp != nil {
			body.Body = &persysv1.AgentFrame_Apply{Apply: resp}
		}
	case *persysv1.SchedulerFrame_Delete:
		var out any
		out, err = r.unary(ctx, persysv1grpc.AgentService_DeleteWorkload_FullMethodName, b.Delete, func(ctx context.Context, req any) (any, error) {
			return srv.DeleteWorkload(ctx, req.(*persysv1.DeleteWorkloadRequest))
		})
		if resp, _ := out.(*persysv1.DeleteWorkloadResponse); resp != nil {
			body.Body = &persysv1.AgentFrame_Delete{Delete: resp}
		}
	case *persysv1.SchedulerFrame_GetStatus:
		var out any
		out, err = r.unary(ctx, persysv1grpc.AgentService_GetWorkloadStatus_FullMethodName, b.GetStatus, func(ctx context.Context, req any) (any, error) {
			return srv.GetWorkloadStatus(ctx, req.(*persysv1.GetWorkloadStatusRequest))
		})
		if resp, _ := out.(*persysv1.WorkloadStatus); resp != nil {
			body.Body = &persysv1.AgentFrame_Status{Status: resp}
		}
	case *persysv1.SchedulerFrame_List:
		var out any
		out, err = r.unary(ctx, persysv1grpc.AgentService_ListWorkloads_FullMethodName, b.List, func(ctx context.Context, req any) (any, error) {
			return srv.ListWorkloads(ctx, req.(*persysv1.ListAgentWorkloadsRequest))
		})
		if resp, _ := out.(*persysv1.ListAgentWorkloadsResponse); resp != nil {
			body.Body = &persysv1.AgentFrame_List{List: resp}
		}
	case *persysv1.SchedulerFrame_Health:
		var out any
		out, err = r.unary(ctx, persysv1grpc.AgentService_HealthCheck_FullMethodName, b.Health, func(ctx context.Context, req any) (any, error) {
			return srv.HealthCheck(ctx, req.(*persysv1.HealthCheckRequest))
		})
		if resp, _ := out.(*persysv1.HealthCheckResponse); resp != nil {
			body.Body = &persysv1.AgentFrame_Health{Health: resp}
		}
	case *persysv1.SchedulerFrame_Logs:
		var out any
		out, err = r.unary(ctx, persysv1grpc.AgentService_GetWorkloadLogs_FullMethodName, b.Logs, func(ctx context.Context, req any) (any, error) {
			return srv.GetWorkloadLogs(ctx, req.(*persysv1.GetWorkloadLogsRequest))
		})
		if resp, _ := out.(*persysv1.GetWorkloadLogsResponse); resp != nil {
			body.Body = &persysv1.AgentFrame_Logs{Logs: resp}
		}
	case *persysv1.SchedulerFrame_FollowLogs:
		l := &logSender{ctx: ctx, r: r, id: id, avail: followWindow, more: make(chan struct{}, 1)}
		r.mu.Lock()
		r.follows[id] = l
		r.mu.Unlock()
		defer func() {
			r.mu.Lock()
			delete(r.follows, id)
			r.mu.Unlock()
		}()
		err = r.follow(b.FollowLogs, l)
		body.Body = &persysv1.AgentFrame_End{End: &persysv1.CallEnd{}}
	}
	if r.ctx.Err() != nil {
		// The stream is ending: the scheduler fails the call as
		// Unavailable, which an answer of Canceled would only blur.
		return
	}
	switch {
	case err != nil:
		if ctx.Err() != nil && status.Code(err) == codes.Unknown {
			err = status.FromContextError(ctx.Err()).Err()
		}
		r.fail(id, err)
	case body.Body == nil:
		r.fail(id, status.Errorf(codes.Internal, "agent: %s returned no answer", bodyName(f)))
	default:
		body.CallId = id
		_ = r.send(&body)
	}
}

// methodStream names the method of a call served over the stream, for
// grpc.Method and the interceptors that read it.
type methodStream string

func (m methodStream) Method() string             { return string(m) }
func (methodStream) SetHeader(metadata.MD) error  { return nil }
func (methodStream) SendHeader(metadata.MD) error { return nil }
func (methodStream) SetTrailer(metadata.MD) error { return nil }

// unary runs one unary method through the Unary interceptor.
func (r *runner) unary(ctx context.Context, method string, req any, h grpc.UnaryHandler) (any, error) {
	ctx = grpc.NewContextWithServerTransportStream(ctx, methodStream(method))
	if r.a.Unary == nil {
		return h(ctx, req)
	}
	return r.a.Unary(ctx, req, &grpc.UnaryServerInfo{Server: r.a.Server, FullMethod: method}, h)
}

// follow runs StreamWorkloadLogs through the Stream interceptor.
func (r *runner) follow(req *persysv1.StreamWorkloadLogsRequest, l *logSender) error {
	const method = persysv1grpc.AgentService_StreamWorkloadLogs_FullMethodName
	l.ctx = grpc.NewContextWithServerTransportStream(l.ctx, methodStream(method))
	h := func(_ any, ss grpc.ServerStream) error {
		return r.a.Server.StreamWorkloadLogs(req, followStream{ss})
	}
	if r.a.Stream == nil {
		return h(r.a.Server, l)
	}
	return r.a.Stream(r.a.Server, l, &grpc.StreamServerInfo{FullMethod: method, IsServerStream: true}, h)
}

// followStream is the typed view of a (perhaps wrapped) log follow.
type followStream struct{ grpc.ServerStream }

func (f followStream) Send(m *persysv1.StreamWorkloadLogsResponse) error { return f.SendMsg(m) }

// logSender turns a log follow's Send into log_chunk frames, at most as
// many as the scheduler gave credit for: Send waits for more.
type logSender struct {
	ctx context.Context
	r   *runner
	id  uint64

	mu    sync.Mutex
	avail uint32
	more  chan struct{} // a credit came
}

func (l *logSender) credit(n uint32) {
	l.mu.Lock()
	l.avail += n
	l.mu.Unlock()
	select {
	case l.more <- struct{}{}:
	default:
	}
}

// take waits until a chunk may be sent.
func (l *logSender) take() error {
	for {
		l.mu.Lock()
		if l.avail > 0 {
			l.avail--
			l.mu.Unlock()
			return nil
		}
		l.mu.Unlock()
		select {
		case <-l.more:
		case <-l.ctx.Done():
			return status.FromContextError(l.ctx.Err()).Err()
		}
	}
}

var _ persysv1grpc.AgentService_StreamWorkloadLogsServer = (*logSender)(nil)

func (l *logSender) Send(m *persysv1.StreamWorkloadLogsResponse) error {
	if l.ctx.Err() != nil {
		return status.FromContextError(l.ctx.Err()).Err()
	}
	if err := l.take(); err != nil {
		return err
	}
	return l.r.send(&persysv1.AgentFrame{CallId: l.id, Body: &persysv1.AgentFrame_LogChunk{LogChunk: m}})
}

func (l *logSender) Context() context.Context     { return l.ctx }
func (l *logSender) SetHeader(metadata.MD) error  { return nil }
func (l *logSender) SendHeader(metadata.MD) error { return nil }
func (l *logSender) SetTrailer(metadata.MD)       {}
func (l *logSender) RecvMsg(any) error {
	return errors.New("nodechannel: a log follow receives nothing")
}
func (l *logSender) SendMsg(m any) error {
	r, ok := m.(*persysv1.StreamWorkloadLogsResponse)
	if !ok {
		return fmt.Errorf("nodechannel: SendMsg of %T", m)
	}
	return l.Send(r)
}

// ErrLinkClosed marks an agent call that could not be answered because
// its stream ended.
var ErrLinkClosed = status.Error(codes.Unavailable, "nodechannel: the control stream ended")

// Link is the agent's way to call the scheduler on one stream; it is safe
// for concurrent use and fails with ErrLinkClosed once the stream ended.
type Link struct{ r *runner }

// Done is closed when the stream ends.
func (l *Link) Done() <-chan struct{} { return l.r.ctx.Done() }

// Heartbeat sends req as a heartbeat frame and waits for its answer, as
// ControlService.Heartbeat would return it, within ctx. The scheduler
// takes one heartbeat at a time per stream: one sent while another is
// unanswered (from another goroutine, or after ctx gave up on it) is
// answered ResourceExhausted.
func (l *Link) Heartbeat(ctx context.Context, req *persysv1.HeartbeatRequest) (*persysv1.HeartbeatResponse, error) {
	r := l.r
	ch := make(chan *persysv1.SchedulerFrame, 1)
	r.mu.Lock()
	if r.ctx.Err() != nil {
		r.mu.Unlock()
		return nil, ErrLinkClosed
	}
	r.lastOwn++
	id := r.lastOwn
	r.own[id] = ch
	r.mu.Unlock()
	forget := func() {
		r.mu.Lock()
		delete(r.own, id)
		r.mu.Unlock()
	}
	if err := r.send(&persysv1.AgentFrame{CallId: id, Body: &persysv1.AgentFrame_Heartbeat{Heartbeat: req}}); err != nil {
		forget()
		return nil, fmt.Errorf("%w: sending heartbeat: %v", ErrLinkClosed, err)
	}
	select {
	case f := <-ch:
		if e := f.GetError(); e != nil {
			return nil, status.FromProto(e).Err()
		}
		return f.GetHeartbeatAck(), nil
	case <-r.ctx.Done():
		forget()
		return nil, ErrLinkClosed
	case <-ctx.Done():
		forget()
		return nil, status.FromContextError(ctx.Err()).Err()
	}
}
