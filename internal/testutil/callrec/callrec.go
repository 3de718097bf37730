// Package callrec records the calls a real gRPC server receives, for
// tests that check what reached it: which methods, with which requests,
// and how long each caller's deadline had left on arrival. A heartbeat
// that came on a node's control stream is recorded as a Heartbeat call, and a
// registration in its hello as a RegisterNode call. It only
// observes: every call is answered by the server's own handler. Install
// a Recorder with its ServerOptions (realsched.Options.ServerOptions
// takes them); production code must not import it.
package callrec

import (
	"context"
	"path"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	persysv1 "github.com/persys-dev/compute/api/persys/v1"
)

// Call is one call as the server received it.
type Call struct {
	// Method is the method's short name, as "ApplyWorkload".
	Method string
	// Request is a copy of the request (a stream's first message).
	Request proto.Message
	// Left is how long the caller's deadline had left when the call
	// arrived; zero without a deadline.
	Left time.Duration
	// Server is the address the call arrived at (one replica's).
	Server string
	// Response and Err are a unary call's answer (nil for streams, but
	// for a stream refused before its first message: its Err).
	Response proto.Message
	Err      error
}

// Recorder keeps every call in arrival order; the zero value is ready
// and it is safe for concurrent use.
type Recorder struct {
	mu    sync.Mutex
	calls []Call
}

// ServerOptions are the interceptors that record every unary call and
// the first message of every stream.
func (r *Recorder) ServerOptions() []grpc.ServerOption {
	return []grpc.ServerOption{grpc.ChainUnaryInterceptor(r.unary), grpc.ChainStreamInterceptor(r.stream)}
}

func newCall(ctx context.Context, fullMethod string, req any) Call {
	c := Call{Method: path.Base(fullMethod)}
	if m, ok := req.(proto.Message); ok {
		c.Request = proto.Clone(m)
	}
	if dl, ok := ctx.Deadline(); ok {
		c.Left = time.Until(dl)
	}
	if p, ok := peer.FromContext(ctx); ok && p.LocalAddr != nil {
		c.Server = p.LocalAddr.String()
	}
	return c
}

func (r *Recorder) add(c Call) {
	r.mu.Lock()
	r.calls = append(r.calls, c)
	r.mu.Unlock()
}

// unary records a call once answered (before the answer is sent), so
// that a caller that got its answer finds the call recorded.
func (r *Recorder) unary(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
	c := newCall(ctx, info.FullMethod, req)
	resp, err := handler(ctx, req)
	if m, ok := resp.(proto.Message); ok && err == nil {
		c.Response = proto.Clone(m)
	}
	c.Err = err
	r.add(c)
	return resp, err
}

func (r *Recorder) stream(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
	rs := &recordingStream{ServerStream: ss, r: r, method: info.FullMethod}
	err := handler(srv, rs)
	received := true
	rs.once.Do(func() { received = false })
	if !received && err != nil {
		// Refused before its first message (a follower's refusal).
		c := newCall(ss.Context(), info.FullMethod, nil)
		c.Err = err
		r.add(c)
	}
	// A registration the stream ended without accepting was refused.
	rs.mu.Lock()
	reg := rs.register
	rs.register = nil
	rs.mu.Unlock()
	if reg != nil {
		reg.Err = err
		r.add(*reg)
	}
	return err
}

// recordingStream records the first message the handler receives: a
// server-streaming call's request.
type recordingStream struct {
	grpc.ServerStream
	r      *Recorder
	method string
	once   sync.Once

	mu sync.Mutex
	// heartbeats are those that came on a control stream, by call id,
	// until answered.
	heartbeats map[uint64]Call
	// register is the registration a control stream's hello carried,
	// until answered.
	register *Call
}

func (s *recordingStream) RecvMsg(m any) error {
	err := s.ServerStream.RecvMsg(m)
	if err == nil {
		s.once.Do(func() { s.r.add(newCall(s.Context(), s.method, m)) })
		if f, ok := m.(*persysv1.AgentFrame); ok && f.GetHeartbeat() != nil {
			s.mu.Lock()
			if s.heartbeats == nil {
				s.heartbeats = map[uint64]Call{}
			}
			s.heartbeats[f.GetCallId()] = newCall(s.Context(), "Heartbeat", f.GetHeartbeat())
			s.mu.Unlock()
		}
		if f, ok := m.(*persysv1.AgentFrame); ok && f.GetHello().GetRegister() != nil {
			c := newCall(s.Context(), "RegisterNode", f.GetHello().GetRegister())
			s.mu.Lock()
			s.register = &c
			s.mu.Unlock()
		}
	}
	return err
}

// SendMsg records the answer to a heartbeat that came on a control
// stream as a Heartbeat call, before the agent can see the answer.
func (s *recordingStream) SendMsg(m any) error {
	if f, ok := m.(*persysv1.SchedulerFrame); ok && f.GetAccepted() != nil {
		s.mu.Lock()
		reg := s.register
		s.register = nil
		s.mu.Unlock()
		if reg != nil {
			reg.Response = proto.Clone(f.GetAccepted().GetRegistered())
			s.r.add(*reg)
		}
	}
	if f, ok := m.(*persysv1.SchedulerFrame); ok && (f.GetHeartbeatAck() != nil || f.GetError() != nil) {
		s.mu.Lock()
		c, pending := s.heartbeats[f.GetCallId()]
		delete(s.heartbeats, f.GetCallId())
		s.mu.Unlock()
		if pending {
			if ack := f.GetHeartbeatAck(); ack != nil {
				c.Response = proto.Clone(ack)
			} else {
				c.Err = status.FromProto(f.GetError()).Err()
			}
			s.r.add(c)
		}
	}
	return s.ServerStream.SendMsg(m)
}

// Calls returns the calls of method so far, unary ones in the order they
// were answered; every method's with "".
func (r *Recorder) Calls(method string) []Call {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []Call
	for _, c := range r.calls {
		if method == "" || c.Method == method {
			out = append(out, c)
		}
	}
	return out
}

// Named counts the calls of method whose request names name (its name
// field, or its id field for node requests).
func (r *Recorder) Named(method, name string) int {
	n := 0
	for _, c := range r.Calls(method) {
		if NameOf(c.Request) == name {
			n++
		}
	}
	return n
}

// NameOf is a request's name field, else its id field, else "".
func NameOf(m proto.Message) string {
	switch v := m.(type) {
	case interface{ GetName() string }:
		return v.GetName()
	case interface{ GetId() string }:
		return v.GetId()
	}
	return ""
}
