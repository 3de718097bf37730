package leaderconn

import (
	"context"
	"errors"
	"io"
	"slices"
	"sync"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
)

// mdSink collects an attempt's header and trailer through call options.
type mdSink struct{ hdr, trl metadata.MD }

func (m *mdSink) opts(opts []grpc.CallOption) []grpc.CallOption {
	return append(slices.Clip(opts), grpc.Header(&m.hdr), grpc.Trailer(&m.trl))
}

// md is valid once the attempt has ended.
func (m *mdSink) md() metadata.MD { return metadata.Join(m.hdr, m.trl) }

// NewStream opens a stream, following the leader (see Pool).
func (p *Pool) NewStream(ctx context.Context, desc *grpc.StreamDesc, method string, opts ...grpc.CallOption) (grpc.ClientStream, error) {
	opts, follow, answered := callOpts(opts)
	var (
		cs   grpc.ClientStream
		sink *mdSink
	)
	addr, err := p.run(ctx, method, follow, func(cc *grpc.ClientConn) (metadata.MD, bool, error) {
		k := &mdSink{}
		s, err := cc.NewStream(ctx, desc, method, k.opts(opts)...)
		if err != nil {
			return nil, false, err
		}
		cs, sink = s, k
		return nil, true, nil
	})
	if answered != nil {
		*answered = addr
	}
	if err != nil {
		return nil, err
	}
	if desc.ClientStreams || !follow {
		return cs, nil
	}
	return &followStream{pool: p, ctx: ctx, desc: desc, method: method, opts: opts, addr: addr, inner: cs, sink: sink}, nil
}

// followStream is a server-streaming ClientStream that reopens itself on
// the leader once when it ends with a redirect before its first message.
// The generated code sends the request and closes the send side before
// receiving, so the request can be replayed.
type followStream struct {
	pool   *Pool
	ctx    context.Context
	desc   *grpc.StreamDesc
	method string
	opts   []grpc.CallOption
	addr   string

	mu         sync.Mutex
	inner      grpc.ClientStream
	sink       *mdSink
	sent       []any
	closeSent  bool
	received   bool
	redirected bool
}

func (s *followStream) cur() grpc.ClientStream {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.inner
}

func (s *followStream) Header() (metadata.MD, error) { return s.cur().Header() }
func (s *followStream) Trailer() metadata.MD         { return s.cur().Trailer() }
func (s *followStream) Context() context.Context     { return s.cur().Context() }

func (s *followStream) CloseSend() error {
	s.mu.Lock()
	s.closeSent = true
	s.mu.Unlock()
	return s.cur().CloseSend()
}

func (s *followStream) SendMsg(m any) error {
	s.mu.Lock()
	s.sent = append(s.sent, m)
	s.mu.Unlock()
	return s.cur().SendMsg(m)
}

func (s *followStream) RecvMsg(m any) error {
	err := s.cur().RecvMsg(m)
	s.mu.Lock()
	if err == nil {
		s.received = true
		s.mu.Unlock()
		return nil
	}
	if s.received || s.redirected || errors.Is(err, io.EOF) {
		s.mu.Unlock()
		return err
	}
	s.redirected = true
	hint := usableHint(err, s.sink.md(), s.addr)
	sent, closeSent := slices.Clone(s.sent), s.closeSent
	s.mu.Unlock()
	if hint == "" || s.ctx.Err() != nil {
		return err
	}
	return s.reopen(m, hint, sent, closeSent, err)
}

// reopen opens the stream again on hint, replays what was sent, and
// receives the first message from there.
func (s *followStream) reopen(m any, hint string, sent []any, closeSent bool, refusal error) error {
	cc, derr := s.pool.conn(hint)
	if derr != nil {
		s.pool.log.Warn("cannot follow scheduler leader", "from", s.addr, "leader", hint, "method", s.method, "err", derr)
		return refusal
	}
	s.pool.log.Info("following scheduler leader", "from", s.addr, "leader", hint, "method", s.method, "code", status.Code(refusal).String())
	sink := &mdSink{}
	next, err := cc.NewStream(s.ctx, s.desc, s.method, sink.opts(s.opts)...)
	if err != nil {
		return err
	}
	for _, msg := range sent {
		if serr := next.SendMsg(msg); serr != nil {
			break // RecvMsg reports the stream's status.
		}
	}
	if closeSent {
		_ = next.CloseSend()
	}
	s.mu.Lock()
	s.inner, s.sink = next, sink
	s.mu.Unlock()
	rerr := next.RecvMsg(m)
	switch {
	case rerr == nil:
		s.mu.Lock()
		s.received = true
		s.mu.Unlock()
		s.pool.move(s.addr, hint, s.method)
	case usableHint(rerr, sink.md(), hint) != "":
		// Pointed elsewhere again: one redirect per call.
	case status.Code(rerr) != codes.Unavailable:
		s.pool.move(s.addr, hint, s.method)
	}
	return rerr
}

// Follow is for a long-lived stream that must run on the leader (a node's
// control stream), opened on addr (see AnsweredBy), that failed with err
// and trailer md before the scheduler took it: when they name another
// leader the Pool points there; a scheduler that refused with Unavailable
// naming none (loading, or cut off from etcd) is left for the next
// configured address. The caller opens the stream again.
func (p *Pool) Follow(addr string, err error, md metadata.MD) {
	if hint := usableHint(err, md, addr); hint != "" {
		if _, derr := p.conn(hint); derr != nil {
			p.log.Warn("cannot follow scheduler leader", "from", addr, "leader", hint, "err", derr)
			return
		}
		p.move(addr, hint, "stream")
		return
	}
	if status.Code(err) == codes.Unavailable && len(p.addrs) > 1 {
		p.move(addr, p.after(addr), "stream")
	}
}
