package gateway

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"strings"
	"sync"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/connectivity"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
)

// MetadataLeader is the metadata key (trailer, or header) in which a
// scheduler that is not the leader names the leader's ControlService
// address when it refuses a call.
const MetadataLeader = "x-persys-leader"

// MaxSchedulerConns bounds the connections a SchedulerPool keeps: the
// configured addresses plus leader addresses learned from trailers.
const MaxSchedulerConns = 16

// SchedulerPool is a grpc.ClientConnInterface over one or more scheduler
// replicas that follows the leader. Wrap it with
// persysv1.NewControlServiceClient to get a ControlService client. It keeps
// one grpc.ClientConn per address, dialled lazily with the same TLS
// configuration, and sends every call to the current address (at first the
// first configured one). For each call:
//
//   - Leader redirect: when the call fails with FailedPrecondition or
//     Unavailable and the answer's metadata (trailer or header)
//     "x-persys-leader" names an address other than the one just called,
//     the call is sent once more to that address, dialled if new. At most
//     one redirect per call: a second refusal is returned as it is. A
//     FailedPrecondition without the key (for example retrying a workload
//     that did not fail) is an ordinary answer and is never retried.
//   - Failover: when the call fails with Unavailable before it was sent
//     (no connection to the address could be made, so the scheduler cannot
//     have seen it), it is sent to the next configured address not yet
//     tried in this call. A call that reached a scheduler is never re-sent
//     without that scheduler's redirect.
//   - The address that answered a redirected or failed-over call (with
//     anything but another redirect or a connection failure) becomes the
//     current address for the calls that follow.
//
// Server-streaming calls (WatchWorkload) follow a redirect too: when the
// stream ends with a redirect before its first message, it is opened again
// on the leader with the same request. Client-streaming calls only fail
// over. A SchedulerPool is safe for concurrent use.
type SchedulerPool struct {
	creds credentials.TransportCredentials
	log   *slog.Logger
	addrs []string // configured, in order

	mu      sync.Mutex
	conns   map[string]*grpc.ClientConn
	current string
	closed  bool
}

var _ grpc.ClientConnInterface = (*SchedulerPool)(nil)

// DialSchedulers returns a SchedulerPool over the scheduler replicas at
// addrs (host:port each, tried in this order) over mutual TLS. Connections
// are lazy: errors of reaching a scheduler show up on the first call. log
// receives one line per redirect, failover and leader change; nil discards.
func DialSchedulers(addrs []string, tlsCfg *tls.Config, log *slog.Logger) (*SchedulerPool, error) {
	if tlsCfg == nil {
		return nil, errors.New("gateway: scheduler TLS config is required")
	}
	return DialSchedulersCreds(addrs, credentials.NewTLS(tlsCfg.Clone()), log)
}

// DialSchedulersCreds is DialSchedulers with the transport credentials
// given, such as grpcauth.HolderCredentials, which read a renewed
// certificate and a rotated CA bundle at every handshake (a fixed
// tls.Config keeps trusting the bundle it was built with).
func DialSchedulersCreds(addrs []string, creds credentials.TransportCredentials, log *slog.Logger) (*SchedulerPool, error) {
	if len(addrs) == 0 {
		return nil, errors.New("gateway: no scheduler address")
	}
	if creds == nil {
		return nil, errors.New("gateway: scheduler transport credentials are required")
	}
	for i, a := range addrs {
		if strings.TrimSpace(a) == "" {
			return nil, fmt.Errorf("gateway: scheduler address %d is empty", i+1)
		}
		if slices.Index(addrs, a) != i {
			return nil, fmt.Errorf("gateway: scheduler address %q is given twice", a)
		}
	}
	if len(addrs) > MaxSchedulerConns {
		return nil, fmt.Errorf("gateway: %d scheduler addresses, at most %d", len(addrs), MaxSchedulerConns)
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	p := &SchedulerPool{
		creds:   creds,
		log:     log,
		addrs:   slices.Clone(addrs),
		conns:   map[string]*grpc.ClientConn{},
		current: addrs[0],
	}
	for _, a := range addrs {
		if _, err := p.conn(a); err != nil {
			_ = p.Close()
			return nil, err
		}
	}
	return p, nil
}

// DialScheduler returns a client connection to the scheduler's gRPC
// endpoint at addr over mutual TLS, without leader following (a single
// scheduler). The connection is lazy: errors of reaching the scheduler show
// up on the first call.
func DialScheduler(addr string, tlsCfg *tls.Config) (*grpc.ClientConn, error) {
	if addr == "" {
		return nil, errors.New("gateway: scheduler address is empty")
	}
	if tlsCfg == nil {
		return nil, errors.New("gateway: scheduler TLS config is required")
	}
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(credentials.NewTLS(tlsCfg)))
	if err != nil {
		return nil, fmt.Errorf("gateway: dialing scheduler %s: %w", addr, err)
	}
	return conn, nil
}

var errPoolClosed = status.Error(codes.Unavailable, "gateway: scheduler connections are closed")

// conn returns the connection to addr, dialling it when new.
func (p *SchedulerPool) conn(addr string) (*grpc.ClientConn, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return nil, errPoolClosed
	}
	if cc, ok := p.conns[addr]; ok {
		return cc, nil
	}
	if len(p.conns) >= MaxSchedulerConns {
		return nil, fmt.Errorf("gateway: already %d scheduler connections, not dialling %s", len(p.conns), addr)
	}
	cc, err := grpc.NewClient(addr, grpc.WithTransportCredentials(p.creds))
	if err != nil {
		return nil, fmt.Errorf("gateway: dialing scheduler %s: %w", addr, err)
	}
	p.conns[addr] = cc
	return cc, nil
}

// Current returns the address calls go to first.
func (p *SchedulerPool) Current() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.current
}

// Addresses returns the configured addresses.
func (p *SchedulerPool) Addresses() []string { return slices.Clone(p.addrs) }

func (p *SchedulerPool) setCurrent(addr, method string) {
	p.mu.Lock()
	old := p.current
	p.current = addr
	p.mu.Unlock()
	if old != addr {
		p.log.Info("scheduler changed", "from", old, "to", addr, "method", method)
	}
}

// Connect starts connecting to every configured address.
func (p *SchedulerPool) Connect() {
	for _, a := range p.addrs {
		if cc, err := p.conn(a); err == nil {
			cc.Connect()
		}
	}
}

// Ready returns nil when a connection to some scheduler is ready (calls
// fail over to it), else an error naming the current address's state. It
// starts connecting idle connections.
func (p *SchedulerPool) Ready() error {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return errPoolClosed
	}
	conns := make([]*grpc.ClientConn, 0, len(p.conns))
	for _, cc := range p.conns {
		conns = append(conns, cc)
	}
	cur := p.conns[p.current]
	current := p.current
	p.mu.Unlock()
	for _, cc := range conns {
		switch cc.GetState() {
		case connectivity.Ready:
			return nil
		case connectivity.Idle:
			cc.Connect()
		}
	}
	if cur == nil {
		return fmt.Errorf("no connection to scheduler %s", current)
	}
	return fmt.Errorf("no scheduler connection is ready (current %s is %s)", current, cur.GetState())
}

// Close closes every connection; calls after it fail with Unavailable.
func (p *SchedulerPool) Close() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return nil
	}
	p.closed = true
	var errs []error
	for a, cc := range p.conns {
		if err := cc.Close(); err != nil {
			errs = append(errs, fmt.Errorf("closing %s: %w", a, err))
		}
	}
	return errors.Join(errs...)
}

// attemptFunc makes one attempt of a call on cc. sent reports whether the
// request may have reached the scheduler; md is the answer's header and
// trailer metadata.
type attemptFunc func(cc *grpc.ClientConn) (md metadata.MD, sent bool, err error)

// leaderHint returns the leader address named in md, if any.
func leaderHint(md metadata.MD) string {
	for _, v := range md.Get(MetadataLeader) {
		if v = strings.TrimSpace(v); v != "" {
			return v
		}
	}
	return ""
}

// redirectCode reports whether a refusal with code may carry a leader hint.
func redirectCode(c codes.Code) bool {
	return c == codes.FailedPrecondition || c == codes.Unavailable
}

// nextConfigured returns the first configured address not in tried.
func (p *SchedulerPool) nextConfigured(tried []string) string {
	for _, a := range p.addrs {
		if !slices.Contains(tried, a) {
			return a
		}
	}
	return ""
}

// run makes a call under the redirect and failover rules of SchedulerPool
// and returns the address that answered.
func (p *SchedulerPool) run(ctx context.Context, method string, attempt attemptFunc) (string, error) {
	start := p.Current()
	addr := start
	var tried []string
	redirected := false
	for {
		cc, err := p.conn(addr)
		if err != nil {
			return addr, err
		}
		md, sent, err := attempt(cc)
		tried = append(tried, addr)
		if err == nil {
			if addr != start {
				p.setCurrent(addr, method)
			}
			return addr, nil
		}
		code := status.Code(err)
		hint := leaderHint(md)
		if hint != "" && hint != addr && redirectCode(code) && !redirected && !slices.Contains(tried, hint) && ctx.Err() == nil {
			if _, derr := p.conn(hint); derr != nil {
				p.log.Warn("cannot follow scheduler leader", "from", addr, "leader", hint, "method", method, "err", derr)
				return addr, err
			}
			p.log.Info("following scheduler leader", "from", addr, "leader", hint, "method", method, "code", code.String())
			redirected = true
			addr = hint
			continue
		}
		if !sent && code == codes.Unavailable && ctx.Err() == nil {
			if next := p.nextConfigured(tried); next != "" {
				p.log.Warn("scheduler unreachable, trying the next", "from", addr, "to", next, "method", method, "err", err)
				addr = next
				continue
			}
		}
		// The scheduler answered: it becomes current, unless it only
		// pointed elsewhere.
		if sent && addr != start && !(hint != "" && redirectCode(code)) {
			p.setCurrent(addr, method)
		}
		return addr, err
	}
}

var unaryDesc = &grpc.StreamDesc{}

// Invoke makes a unary call, following the leader (see SchedulerPool).
func (p *SchedulerPool) Invoke(ctx context.Context, method string, args, reply any, opts ...grpc.CallOption) error {
	_, err := p.run(ctx, method, func(cc *grpc.ClientConn) (metadata.MD, bool, error) {
		var hdr, trl metadata.MD
		o := append(slices.Clip(opts), grpc.Header(&hdr), grpc.Trailer(&trl))
		// As grpc.ClientConn.Invoke does, through a stream, so that a
		// failure to open it tells that nothing was sent.
		cs, err := cc.NewStream(ctx, unaryDesc, method, o...)
		if err != nil {
			return nil, false, err
		}
		if err := cs.SendMsg(args); err != nil {
			return metadata.Join(hdr, trl), true, err
		}
		err = cs.RecvMsg(reply)
		return metadata.Join(hdr, trl), true, err
	})
	return err
}

// mdSink collects an attempt's header and trailer through call options.
type mdSink struct{ hdr, trl metadata.MD }

func (m *mdSink) opts(opts []grpc.CallOption) []grpc.CallOption {
	return append(slices.Clip(opts), grpc.Header(&m.hdr), grpc.Trailer(&m.trl))
}

// md is valid once the attempt has ended.
func (m *mdSink) md() metadata.MD { return metadata.Join(m.hdr, m.trl) }

// NewStream opens a stream, following the leader (see SchedulerPool).
func (p *SchedulerPool) NewStream(ctx context.Context, desc *grpc.StreamDesc, method string, opts ...grpc.CallOption) (grpc.ClientStream, error) {
	var (
		cs   grpc.ClientStream
		sink *mdSink
	)
	addr, err := p.run(ctx, method, func(cc *grpc.ClientConn) (metadata.MD, bool, error) {
		k := &mdSink{}
		s, err := cc.NewStream(ctx, desc, method, k.opts(opts)...)
		if err != nil {
			return nil, false, err
		}
		cs, sink = s, k
		return nil, true, nil
	})
	if err != nil {
		return nil, err
	}
	if desc.ClientStreams {
		return cs, nil
	}
	return &followStream{pool: p, ctx: ctx, desc: desc, method: method, opts: opts, addr: addr, inner: cs, sink: sink}, nil
}

// followStream is a server-streaming ClientStream that reopens itself on
// the leader once when it ends with a redirect before its first message.
// The generated code sends the request and closes the send side before
// receiving, so the request can be replayed.
type followStream struct {
	pool   *SchedulerPool
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
	inner := s.cur()
	err := inner.RecvMsg(m)
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
	hint := leaderHint(s.sink.md())
	sent, closeSent := slices.Clone(s.sent), s.closeSent
	s.mu.Unlock()

	code := status.Code(err)
	if hint == "" || hint == s.addr || !redirectCode(code) || s.ctx.Err() != nil {
		return err
	}
	cc, derr := s.pool.conn(hint)
	if derr != nil {
		s.pool.log.Warn("cannot follow scheduler leader", "from", s.addr, "leader", hint, "method", s.method, "err", derr)
		return err
	}
	s.pool.log.Info("following scheduler leader", "from", s.addr, "leader", hint, "method", s.method, "code", code.String())
	sink := &mdSink{}
	next, nerr := cc.NewStream(s.ctx, s.desc, s.method, sink.opts(s.opts)...)
	if nerr != nil {
		return nerr
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
		s.pool.setCurrent(hint, s.method)
	case redirectCode(status.Code(rerr)) && leaderHint(sink.md()) != "":
		// Pointed elsewhere again: one redirect per call.
	case status.Code(rerr) != codes.Unavailable:
		s.pool.setCurrent(hint, s.method)
	}
	return rerr
}
