package nodechannel

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	persysv1 "github.com/persys-dev/compute/api/persys/v1"
	"github.com/persys-dev/compute/api/persys/v1/persysv1grpc"
)

// AgentStream is the scheduler's end of one Connect stream
// (grpc.BidiStreamingServer[AgentFrame, SchedulerFrame] satisfies it).
type AgentStream interface {
	Context() context.Context
	Send(*persysv1.SchedulerFrame) error
	Recv() (*persysv1.AgentFrame, error)
}

// MaxConcurrentCalls bounds RegisterNodeRequest.max_concurrent_calls, the
// applies and deletes a node declares it takes at once.
const MaxConcurrentCalls = 4096

// Why a session ended, as the metrics and the log name it.
const (
	ReasonReplaced       = "replaced"
	ReasonStreamEnded    = "stream_ended"
	ReasonLeadershipLost = "leadership_lost"
	ReasonServerStopped  = "server_stopped"
	ReasonNodeLost       = "node_lost"
)

// HubConfig configures NewHub.
type HubConfig struct {
	// Log gets one line per session opened and closed; nil discards.
	Log *slog.Logger
	// Metrics counts sessions and calls; nil counts nothing.
	Metrics *Metrics
	// OnChange, when set, is told each time a node's stream connects
	// (connected true) or its session ends (false, with the reason). It is
	// called outside the Hub's lock and must not block for long.
	OnChange func(nodeID string, connected bool, reason string)
	// Observe, when set, is told every unary call's method, duration and
	// outcome (the bench's exact samples).
	Observe func(method string, took time.Duration, err error)
	// Heartbeat, when set, answers the heartbeats a node sends on its
	// stream, as ControlService.Heartbeat would (ctx is the session's,
	// which carries the caller's identity); the answer goes back as
	// heartbeat_ack, or error. Without it a heartbeat is answered
	// Unimplemented.
	Heartbeat func(ctx context.Context, nodeID string, req *persysv1.HeartbeatRequest) (*persysv1.HeartbeatResponse, error)
	// Register, when set, registers the node whose hello carries a
	// RegisterNodeRequest, as ControlService.RegisterNode would (ctx is
	// the stream's, which carries the caller's identity), before the
	// session starts; its answer goes back in accepted, and its error
	// ends the stream. Without it such a hello is refused Unimplemented.
	// A bare hello (an agent that registers with the unary call) skips it.
	Register func(ctx context.Context, nodeID string, req *persysv1.RegisterNodeRequest) (*persysv1.RegisterNodeResponse, error)
}

// Hub holds the control session of each node that dialled in. It is safe
// for concurrent use.
type Hub struct {
	cfg HubConfig
	log *slog.Logger

	mu       sync.Mutex
	sessions map[string]*session
	// connected is closed, and replaced, each time a session starts
	// (Await).
	connected chan struct{}
}

// NewHub returns an empty Hub.
func NewHub(cfg HubConfig) *Hub {
	log := cfg.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Hub{cfg: cfg, log: log, sessions: map[string]*session{}, connected: make(chan struct{})}
}

// errClosedBy is the cause a session's context ends with.
type errClosedBy struct{ reason string }

func (e errClosedBy) Error() string { return "control stream closed: " + e.reason }

// Accept runs the session of nodeID (the node identity of the caller's
// certificate) over stream until the stream ends, ctx ends, a newer
// session of the node replaces it, or CloseAll. The stream's first frame
// must be a hello naming nodeID; a hello naming another node is refused
// with PermissionDenied. A hello that carries a registration is
// registered first (HubConfig.Register), and its refusal ends the stream.
// Accept answers the hello with accepted once the session is registered.
// It returns a status error saying why the session ended.
func (h *Hub) Accept(ctx context.Context, nodeID string, stream AgentStream) error {
	if nodeID == "" {
		return status.Error(codes.Unauthenticated, "node_id: the caller's certificate names no node")
	}
	first, err := stream.Recv()
	if err != nil {
		return status.Errorf(codes.Canceled, "node %s: stream ended before its hello: %v", nodeID, err)
	}
	hello := first.GetHello()
	if hello == nil {
		return status.Errorf(codes.InvalidArgument, "hello: required as the first frame (got %s)", bodyName(first))
	}
	if hello.GetNodeId() != nodeID {
		return status.Errorf(codes.PermissionDenied, "hello.node_id: %q is not the node of the caller's certificate (%q)",
			hello.GetNodeId(), nodeID)
	}
	registered, err := h.register(ctx, nodeID, hello.GetRegister())
	if err != nil {
		return err
	}

	sctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	s := &session{hub: h, node: nodeID, stream: stream, ctx: sctx, cancel: cancel, calls: map[uint64]*call{}}

	// The answer goes before the session is published: a call made on it
	// at once (Await) must not reach the agent ahead of accepted, which
	// the agent takes as a refusal.
	if err := s.send(&persysv1.SchedulerFrame{Body: &persysv1.SchedulerFrame_Accepted{Accepted: &persysv1.ChannelAccepted{Registered: registered}}}); err != nil {
		return status.Errorf(codes.Unavailable, "node %s: answering the hello: %v", nodeID, err)
	}
	h.mu.Lock()
	old := h.sessions[nodeID]
	h.sessions[nodeID] = s
	close(h.connected)
	h.connected = make(chan struct{})
	h.mu.Unlock()
	if old != nil {
		old.close(ReasonReplaced)
	}
	h.cfg.Metrics.opened()
	h.log.Info("node control stream connected", "node", nodeID, "replaced", old != nil)
	if h.cfg.OnChange != nil {
		h.cfg.OnChange(nodeID, true, "")
	}

	recvErr := make(chan error, 1)
	go func() { recvErr <- s.receive() }()
	select {
	case err = <-recvErr:
		s.close(ReasonStreamEnded)
	case <-sctx.Done():
		// Replaced, CloseAll or ctx: the handler returns, which ends the
		// stream and with it the receive loop.
		s.close(ReasonStreamEnded)
	}
	reason := s.reason()
	if reason == "" {
		reason = ReasonStreamEnded
	}
	if err == nil {
		err = context.Cause(sctx)
	}
	return status.Errorf(codes.Unavailable, "node %s: control stream closed (%s): %v", nodeID, reason, err)
}

// register runs the registration a hello carries (nil: none, as from an
// agent that registered with the unary call).
func (h *Hub) register(ctx context.Context, nodeID string, req *persysv1.RegisterNodeRequest) (resp *persysv1.RegisterNodeResponse, err error) {
	if req == nil {
		return nil, nil
	}
	defer func() { h.cfg.Metrics.agentCall("RegisterNode", err) }()
	if req.GetNodeId() != nodeID {
		return nil, status.Errorf(codes.PermissionDenied, "hello.register.node_id: %q is not the node of the caller's certificate (%q)",
			req.GetNodeId(), nodeID)
	}
	if h.cfg.Register == nil {
		return nil, status.Error(codes.Unimplemented, "hello.register: this scheduler takes registrations only as ControlService calls")
	}
	resp, err = h.cfg.Register(ctx, nodeID, req)
	if err != nil {
		return nil, status.Convert(err).Err()
	}
	return resp, nil
}

// Client returns an AgentService client for nodeID whose calls ride the
// node's current session (a newer session takes over the calls that
// follow). It fails with codes.Unavailable when the node has no session.
func (h *Hub) Client(nodeID string) (persysv1grpc.AgentServiceClient, error) {
	if h.session(nodeID) == nil {
		return nil, errNoStream(nodeID)
	}
	return &client{hub: h, node: nodeID}, nil
}

// Await is Client, waiting within ctx for nodeID's session when it has
// none yet; it fails with codes.Unavailable when ctx ends first.
func (h *Hub) Await(ctx context.Context, nodeID string) (persysv1grpc.AgentServiceClient, error) {
	for {
		h.mu.Lock()
		s, next := h.sessions[nodeID], h.connected
		h.mu.Unlock()
		if s != nil {
			return &client{hub: h, node: nodeID}, nil
		}
		select {
		case <-next:
		case <-ctx.Done():
			return nil, errNoStream(nodeID)
		}
	}
}

// Connected reports whether nodeID has a session.
func (h *Hub) Connected(nodeID string) bool { return h.session(nodeID) != nil }

// Len is the number of sessions.
func (h *Hub) Len() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return len(h.sessions)
}

// Close ends nodeID's session, if any, with reason.
func (h *Hub) Close(nodeID, reason string) {
	if s := h.session(nodeID); s != nil {
		s.close(reason)
	}
}

// CloseAll ends every session with reason (ReasonLeadershipLost when the
// scheduler stops leading): their pending calls fail with Unavailable and
// their agents reconnect, to the new leader.
func (h *Hub) CloseAll(reason string) {
	h.mu.Lock()
	all := make([]*session, 0, len(h.sessions))
	for _, s := range h.sessions {
		all = append(all, s)
	}
	h.mu.Unlock()
	for _, s := range all {
		s.close(reason)
	}
}

func (h *Hub) session(nodeID string) *session {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.sessions[nodeID]
}

// drop forgets s unless a newer session took its place.
func (h *Hub) drop(s *session) {
	h.mu.Lock()
	if h.sessions[s.node] == s {
		delete(h.sessions, s.node)
	}
	h.mu.Unlock()
}

func errNoStream(nodeID string) error {
	return status.Errorf(codes.Unavailable, "node %s has no control stream", nodeID)
}

// session is one node's stream on the scheduler.
type session struct {
	hub    *Hub
	node   string
	stream AgentStream
	ctx    context.Context
	cancel context.CancelCauseFunc

	// sendMu serialises Send: a gRPC stream's sends are not safe for
	// concurrent use.
	sendMu sync.Mutex
	// heartbeating is set while the node's heartbeat is being handled:
	// one at a time per session, so an agent cannot make the Hub start a
	// goroutine per frame.
	heartbeating atomic.Bool

	mu     sync.Mutex
	next   uint64
	calls  map[uint64]*call
	closed string // the reason, once closed
}

// send sends one frame; it fails once the session is closed.
func (s *session) send(f *persysv1.SchedulerFrame) error {
	s.sendMu.Lock()
	defer s.sendMu.Unlock()
	if err := s.ctx.Err(); err != nil {
		return context.Cause(s.ctx)
	}
	return s.stream.Send(f)
}

// start registers a new call; it fails when the session is closed.
func (s *session) start(method string, follow bool) (*call, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed != "" {
		return nil, s.closedErr()
	}
	s.next++
	buffer := 1
	if follow {
		buffer = followWindow
	}
	c := &call{id: s.next, method: method, follow: follow, answers: make(chan *persysv1.AgentFrame, buffer), done: make(chan struct{})}
	s.calls[c.id] = c
	return c, nil
}

// forget removes call id, reporting whether it was still pending.
func (s *session) forget(id uint64) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	_, ok := s.calls[id]
	delete(s.calls, id)
	return ok
}

// cancelCall tells the agent that call id is no longer awaited. It runs
// on its own goroutine: a send may wait for flow control, and neither a
// caller giving up nor the receive loop should wait with it.
func (s *session) cancelCall(id uint64) {
	go func() {
		_ = s.send(&persysv1.SchedulerFrame{CallId: id, Body: &persysv1.SchedulerFrame_Cancel{Cancel: &persysv1.CancelCall{}}})
	}()
}

func (s *session) closedErr() error {
	return status.Errorf(codes.Unavailable, "node %s: control stream closed (%s)", s.node, s.closed)
}

func (s *session) reason() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.closed
}

// close ends the session once: its pending calls fail with Unavailable.
func (s *session) close(reason string) {
	s.mu.Lock()
	if s.closed != "" {
		s.mu.Unlock()
		return
	}
	s.closed = reason
	pending := s.calls
	s.calls = map[uint64]*call{}
	s.mu.Unlock()
	s.cancel(errClosedBy{reason})
	s.hub.drop(s)
	err := s.closedErr()
	for _, c := range pending {
		c.finish(err)
	}
	s.hub.cfg.Metrics.closed(reason)
	s.hub.log.Info("node control stream closed", "node", s.node, "reason", reason, "pending_calls", len(pending))
	if s.hub.cfg.OnChange != nil {
		s.hub.cfg.OnChange(s.node, false, reason)
	}
}

// receive hands each answer to its call until the stream fails.
func (s *session) receive() error {
	for {
		f, err := s.stream.Recv()
		if err != nil {
			return err
		}
		s.deliver(f)
	}
}

func (s *session) deliver(f *persysv1.AgentFrame) {
	if hb, ok := f.GetBody().(*persysv1.AgentFrame_Heartbeat); ok {
		s.heartbeat(f.GetCallId(), hb.Heartbeat)
		return
	}
	s.mu.Lock()
	c := s.calls[f.GetCallId()]
	s.mu.Unlock()
	if c == nil {
		// Answered after the caller gave up; nothing waits for it.
		return
	}
	switch f.GetBody().(type) {
	case *persysv1.AgentFrame_LogChunk:
		select {
		case c.answers <- f:
		default:
			// The agent sent beyond its window: waiting for the reader
			// would stall every call of the node, so this follow ends.
			if s.forget(c.id) {
				s.cancelCall(c.id)
				c.finish(status.Errorf(codes.ResourceExhausted,
					"node %s: log follow ended: the agent sent more than the %d chunks its reader had room for", s.node, cap(c.answers)))
			}
		}
		return
	case *persysv1.AgentFrame_Error:
		if s.forget(c.id) {
			c.finish(status.FromProto(f.GetError()).Err())
		}
		return
	}
	if !s.forget(c.id) {
		return
	}
	if c.follow {
		// A follow ends with end (or an error, above); anything else ends
		// it as a protocol error.
		if _, ok := f.GetBody().(*persysv1.AgentFrame_End); ok {
			c.finish(errEnd)
		} else {
			c.finish(status.Errorf(codes.Internal, "node %s: log follow answered with %s", s.node, bodyName(f)))
		}
		return
	}
	c.answers <- f // buffer of one, and only the first answer gets here
	c.finish(nil)
}

// heartbeat answers the agent's heartbeat call id off the receive loop, so
// that the answers to the scheduler's own calls keep flowing while the
// lease is renewed in etcd. The agent sends one at a time (it waits for
// each answer): one that comes while the last is being handled is
// answered ResourceExhausted at once, on the receive loop, so a session
// holds at most one heartbeat goroutine.
func (s *session) heartbeat(id uint64, req *persysv1.HeartbeatRequest) {
	if !s.heartbeating.CompareAndSwap(false, true) {
		err := status.Errorf(codes.ResourceExhausted,
			"heartbeat: call %d came while the node's previous heartbeat is still being handled; send one at a time, after its answer", id)
		s.hub.cfg.Metrics.agentCall("Heartbeat", err)
		// A failed send ends the session.
		_ = s.send(&persysv1.SchedulerFrame{CallId: id, Body: &persysv1.SchedulerFrame_Error{Error: status.Convert(err).Proto()}})
		return
	}
	handle := s.hub.cfg.Heartbeat
	go func() {
		var (
			resp *persysv1.HeartbeatResponse
			err  error
		)
		switch {
		case handle == nil:
			err = status.Error(codes.Unimplemented, "heartbeat: this scheduler takes heartbeats only as ControlService calls")
		case req.GetNodeId() != s.node:
			err = status.Errorf(codes.PermissionDenied, "node_id: %q is not the node of this stream (%q)", req.GetNodeId(), s.node)
		default:
			resp, err = handle(s.ctx, s.node, req)
		}
		s.hub.cfg.Metrics.agentCall("Heartbeat", err)
		f := &persysv1.SchedulerFrame{CallId: id}
		if err != nil {
			f.Body = &persysv1.SchedulerFrame_Error{Error: status.Convert(err).Proto()}
		} else {
			f.Body = &persysv1.SchedulerFrame_HeartbeatAck{HeartbeatAck: resp}
		}
		// Cleared before the answer goes: the agent's next heartbeat may
		// follow it at once.
		s.heartbeating.Store(false)
		// A failed send ends the session; the agent then heartbeats on
		// its next stream.
		_ = s.send(f)
	}()
}

// errEnd marks a follow that ended without error.
var errEnd = errors.New("log follow ended")

// call is one request awaiting its answer.
type call struct {
	id     uint64
	method string
	follow bool
	// answers buffers the answer (one for a unary call, a few log chunks
	// for a follow).
	answers chan *persysv1.AgentFrame
	once    sync.Once
	done    chan struct{}
	err     error // set before done closes
}

func (c *call) finish(err error) {
	c.once.Do(func() {
		c.err = err
		close(c.done)
	})
}

// bodyName names the oneof field set in a frame's body.
func bodyName(m proto.Message) string {
	r := m.ProtoReflect()
	if fd := r.WhichOneof(r.Descriptor().Oneofs().ByName("body")); fd != nil {
		return string(fd.Name())
	}
	return "an empty body"
}
