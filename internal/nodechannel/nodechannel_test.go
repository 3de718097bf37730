package nodechannel_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/persys-dev/compute/api/persys/contract/rpcreason"
	persysv1 "github.com/persys-dev/compute/api/persys/v1"
	"github.com/persys-dev/compute/api/persys/v1/persysv1grpc"
	"github.com/persys-dev/compute/internal/grpcauth"
	"github.com/persys-dev/compute/internal/nodechannel"
	"github.com/persys-dev/compute/internal/pki"
	"github.com/persys-dev/compute/internal/testutil/eventually"
)

const wait = 20 * time.Second

// handler is the agent side's AgentService: it answers with its tag, and
// some names change what it does (see each method).
type handler struct {
	persysv1grpc.UnimplementedAgentServiceServer
	tag string

	// ended receives the context error of each call that blocked until
	// its context ended, and deadlines the deadline it saw.
	ended     chan error
	deadlines chan time.Time
	chunks    int // chunks a "many" follow sends
	// sent counts the chunks a follow sent.
	mu   sync.Mutex
	sent int
}

func newHandler(tag string) *handler {
	return &handler{tag: tag, ended: make(chan error, 16), deadlines: make(chan time.Time, 16), chunks: 500}
}

// block waits for ctx, reports how it ended, and returns its error.
func (h *handler) block(ctx context.Context) error {
	d, _ := ctx.Deadline()
	h.deadlines <- d
	<-ctx.Done()
	h.ended <- ctx.Err()
	return ctx.Err()
}

func (h *handler) ApplyWorkload(ctx context.Context, in *persysv1.ApplyWorkloadRequest) (*persysv1.ApplyWorkloadResponse, error) {
	switch in.GetName() {
	case "fail":
		return nil, rpcreason.Error(codes.FailedPrecondition, persysv1.FailureReason_FAILURE_REASON_IMAGE_NOT_FOUND, "image nope not found")
	case "block":
		return nil, h.block(ctx)
	case "panic":
		panic("handler bug")
	case "nil":
		return nil, nil
	}
	return &persysv1.ApplyWorkloadResponse{Status: &persysv1.WorkloadStatus{Name: in.GetName(), Message: h.tag}}, nil
}

func (h *handler) DeleteWorkload(_ context.Context, in *persysv1.DeleteWorkloadRequest) (*persysv1.DeleteWorkloadResponse, error) {
	return &persysv1.DeleteWorkloadResponse{}, nil
}

func (h *handler) GetWorkloadStatus(ctx context.Context, in *persysv1.GetWorkloadStatusRequest) (*persysv1.WorkloadStatus, error) {
	if in.GetName() == "block" {
		return nil, h.block(ctx)
	}
	return &persysv1.WorkloadStatus{Name: in.GetName(), Message: h.tag}, nil
}

func (h *handler) ListWorkloads(context.Context, *persysv1.ListAgentWorkloadsRequest) (*persysv1.ListAgentWorkloadsResponse, error) {
	return &persysv1.ListAgentWorkloadsResponse{Workloads: []*persysv1.WorkloadStatus{{Name: "a"}, {Name: "b"}}}, nil
}

func (h *handler) HealthCheck(context.Context, *persysv1.HealthCheckRequest) (*persysv1.HealthCheckResponse, error) {
	return &persysv1.HealthCheckResponse{Healthy: true}, nil
}

func (h *handler) GetWorkloadLogs(_ context.Context, in *persysv1.GetWorkloadLogsRequest) (*persysv1.GetWorkloadLogsResponse, error) {
	return &persysv1.GetWorkloadLogsResponse{Data: []byte("logs of " + in.GetName())}, nil
}

// StreamWorkloadLogs sends h.chunks chunks ("many"), or chunks until its
// context ends ("forever"), or fails ("missing").
func (h *handler) StreamWorkloadLogs(in *persysv1.StreamWorkloadLogsRequest, s grpc.ServerStreamingServer[persysv1.StreamWorkloadLogsResponse]) error {
	switch in.GetName() {
	case "missing":
		return status.Error(codes.NotFound, "workload missing: not on this node")
	case "many":
		for i := range h.chunks {
			if err := s.Send(&persysv1.StreamWorkloadLogsResponse{Data: fmt.Appendf(nil, "%d\n", i)}); err != nil {
				return err
			}
		}
		return nil
	}
	for i := 0; ; i++ {
		if err := s.Send(&persysv1.StreamWorkloadLogsResponse{Data: fmt.Appendf(nil, "%d\n", i)}); err != nil {
			h.ended <- s.Context().Err()
			return err
		}
		h.mu.Lock()
		h.sent++
		h.mu.Unlock()
	}
}

// bed is a scheduler serving Connect over mTLS into a Hub, and the
// certificates of nodes n1 and n2.
type bed struct {
	bundle *pki.Bundle
	hub    *nodechannel.Hub
	addr   string
	// accepts receives what each Accept returned.
	accepts chan error
}

type connectServer struct {
	persysv1grpc.UnimplementedNodeChannelServiceServer
	b *bed
	// raw, when set, runs instead of the Hub.
	raw func(grpc.BidiStreamingServer[persysv1.AgentFrame, persysv1.SchedulerFrame]) error
}

func (c *connectServer) Connect(stream grpc.BidiStreamingServer[persysv1.AgentFrame, persysv1.SchedulerFrame]) error {
	if c.raw != nil {
		return c.raw(stream)
	}
	id, err := grpcauth.PeerIdentity(stream.Context())
	if err != nil {
		return status.Error(codes.Unauthenticated, err.Error())
	}
	err = c.b.hub.Accept(stream.Context(), id.CommonName, stream)
	c.b.accepts <- err
	return err
}

func newBed(t *testing.T, raw func(grpc.BidiStreamingServer[persysv1.AgentFrame, persysv1.SchedulerFrame]) error) *bed {
	t.Helper()
	return newBedWith(t, raw, nil)
}

// newBedWith is newBed whose Hub answers heartbeats with hb.
func newBedWith(t *testing.T, raw func(grpc.BidiStreamingServer[persysv1.AgentFrame, persysv1.SchedulerFrame]) error,
	hb func(context.Context, string, *persysv1.HeartbeatRequest) (*persysv1.HeartbeatResponse, error)) *bed {
	t.Helper()
	return newBedConfig(t, raw, nodechannel.HubConfig{Heartbeat: hb})
}

// newBedConfig is newBed whose Hub is made with cfg.
func newBedConfig(t *testing.T, raw func(grpc.BidiStreamingServer[persysv1.AgentFrame, persysv1.SchedulerFrame]) error,
	cfg nodechannel.HubConfig) *bed {
	t.Helper()
	bundle, err := pki.Bootstrap(t.TempDir(), []string{"n1", "n2"}, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	serverTLS, err := pki.ServerTLS(bundle.Scheduler)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	cfg.Metrics = nodechannel.NewMetrics(nil)
	b := &bed{bundle: bundle, addr: ln.Addr().String(), accepts: make(chan error, 16), hub: nodechannel.NewHub(cfg)}
	srv := grpc.NewServer(grpc.Creds(credentials.NewTLS(serverTLS)))
	persysv1grpc.RegisterNodeChannelServiceServer(srv, &connectServer{b: b, raw: raw})
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(srv.Stop)
	return b
}

// agent is one node's stream: Serve's result is err once done closes.
type agent struct {
	cancel context.CancelFunc
	conn   *grpc.ClientConn
	done   chan struct{}
	err    error
	// link is the stream's, once accepted.
	link *nodechannel.Link
}

func (a *agent) result() error {
	<-a.done
	return a.err
}

// dial opens a connection to the bed's hub with node cert's identity,
// closed when the test ends.
func (b *bed) dial(t *testing.T, cert string) *grpc.ClientConn {
	t.Helper()
	tlsCfg, err := pki.ClientTLS(b.bundle.Agents[cert], "")
	if err != nil {
		t.Fatal(err)
	}
	conn, err := grpc.NewClient(b.addr, grpc.WithTransportCredentials(credentials.NewTLS(tlsCfg)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	return conn
}

// connect dials as node cert and serves srv on a stream whose hello names
// hello; it returns once Serve ended or the stream was accepted.
func (b *bed) connect(t *testing.T, cert, hello string, srv persysv1grpc.AgentServiceServer) *agent {
	t.Helper()
	return b.connectAs(t, cert, nodechannel.Agent{NodeID: hello, Server: srv})
}

// connectAs is connect serving ag (its Linked is the bed's).
func (b *bed) connectAs(t *testing.T, cert string, ag nodechannel.Agent) *agent {
	t.Helper()
	conn := b.dial(t, cert)
	ctx, cancel := context.WithCancel(context.Background())
	a := &agent{cancel: cancel, conn: conn, done: make(chan struct{})}
	t.Cleanup(func() {
		cancel()
		<-a.done
	})
	stream, err := persysv1grpc.NewNodeChannelServiceClient(conn).Connect(ctx)
	if err != nil {
		t.Fatal(err)
	}
	accepted := make(chan struct{})
	go func() {
		defer close(a.done)
		ag.Linked = func(l *nodechannel.Link) { a.link = l; close(accepted) }
		a.err = nodechannel.Serve(ctx, stream, ag)
	}()
	select {
	case <-accepted:
	case <-a.done:
	case <-time.After(wait):
		t.Fatal("stream neither accepted nor ended")
	}
	return a
}

func (b *bed) client(t *testing.T, node string) persysv1grpc.AgentServiceClient {
	t.Helper()
	c, err := b.hub.Client(node)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	t.Cleanup(cancel)
	return ctx
}

func TestUnaryRoundTrip(t *testing.T) {
	b := newBed(t, nil)
	b.connect(t, "n1", "n1", newHandler("first"))
	c := b.client(t, "n1")
	ctx := ctxT(t)
	tests := []struct {
		name string
		call func() (proto.Message, error)
		want proto.Message
	}{
		{"ApplyWorkload", func() (proto.Message, error) {
			return c.ApplyWorkload(ctx, &persysv1.ApplyWorkloadRequest{Name: "web"})
		}, &persysv1.ApplyWorkloadResponse{Status: &persysv1.WorkloadStatus{Name: "web", Message: "first"}}},
		{"DeleteWorkload", func() (proto.Message, error) {
			return c.DeleteWorkload(ctx, &persysv1.DeleteWorkloadRequest{Name: "web"})
		}, &persysv1.DeleteWorkloadResponse{}},
		{"GetWorkloadStatus", func() (proto.Message, error) {
			return c.GetWorkloadStatus(ctx, &persysv1.GetWorkloadStatusRequest{Name: "web"})
		}, &persysv1.WorkloadStatus{Name: "web", Message: "first"}},
		{"ListWorkloads", func() (proto.Message, error) {
			return c.ListWorkloads(ctx, &persysv1.ListAgentWorkloadsRequest{})
		}, &persysv1.ListAgentWorkloadsResponse{Workloads: []*persysv1.WorkloadStatus{{Name: "a"}, {Name: "b"}}}},
		{"HealthCheck", func() (proto.Message, error) {
			return c.HealthCheck(ctx, &persysv1.HealthCheckRequest{})
		}, &persysv1.HealthCheckResponse{Healthy: true}},
		{"GetWorkloadLogs", func() (proto.Message, error) {
			return c.GetWorkloadLogs(ctx, &persysv1.GetWorkloadLogsRequest{Name: "web"})
		}, &persysv1.GetWorkloadLogsResponse{Data: []byte("logs of web")}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := tt.call()
			if err != nil {
				t.Fatal(err)
			}
			if !proto.Equal(got, tt.want) {
				t.Fatalf("got %v, want %v", got, tt.want)
			}
		})
	}
}

func TestConcurrentCalls(t *testing.T) {
	b := newBed(t, nil)
	b.connect(t, "n1", "n1", newHandler("first"))
	c := b.client(t, "n1")
	ctx := ctxT(t)
	var wg sync.WaitGroup
	errs := make(chan error, 200)
	for i := range 200 {
		wg.Go(func() {
			name := fmt.Sprintf("w%d", i)
			st, err := c.GetWorkloadStatus(ctx, &persysv1.GetWorkloadStatusRequest{Name: name})
			if err == nil && st.GetName() != name {
				err = fmt.Errorf("asked %s, answered %s", name, st.GetName())
			}
			errs <- err
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
}

func TestErrorStatusKeepsDetails(t *testing.T) {
	b := newBed(t, nil)
	b.connect(t, "n1", "n1", newHandler("first"))
	c := b.client(t, "n1")
	_, err := c.ApplyWorkload(ctxT(t), &persysv1.ApplyWorkloadRequest{Name: "fail"})
	st := status.Convert(err)
	if st.Code() != codes.FailedPrecondition || st.Message() != "image nope not found" {
		t.Fatalf("got %v, want FailedPrecondition with the handler's message", err)
	}
	if r := rpcreason.Of(err); r != persysv1.FailureReason_FAILURE_REASON_IMAGE_NOT_FOUND {
		t.Fatalf("reason %v, want IMAGE_NOT_FOUND (details lost)", r)
	}
}

func TestHandlerPanicAndNilAnswer(t *testing.T) {
	b := newBed(t, nil)
	b.connect(t, "n1", "n1", newHandler("first"))
	c := b.client(t, "n1")
	for _, name := range []string{"panic", "nil"} {
		_, err := c.ApplyWorkload(ctxT(t), &persysv1.ApplyWorkloadRequest{Name: name})
		if status.Code(err) != codes.Internal {
			t.Fatalf("%s: got %v, want Internal", name, err)
		}
	}
	// The stream survives both.
	if _, err := c.HealthCheck(ctxT(t), &persysv1.HealthCheckRequest{}); err != nil {
		t.Fatal(err)
	}
}

func TestDeadlineReachesHandler(t *testing.T) {
	b := newBed(t, nil)
	h := newHandler("first")
	b.connect(t, "n1", "n1", h)
	c := b.client(t, "n1")
	deadline := time.Now().Add(300 * time.Millisecond)
	ctx, cancel := context.WithDeadline(context.Background(), deadline)
	defer cancel()
	_, err := c.GetWorkloadStatus(ctx, &persysv1.GetWorkloadStatusRequest{Name: "block"})
	if status.Code(err) != codes.DeadlineExceeded {
		t.Fatalf("got %v, want DeadlineExceeded", err)
	}
	// The frame carries the time left, which the agent counts from the
	// frame's arrival: never earlier than the caller's deadline, later by
	// the frame's transit only.
	if got := <-h.deadlines; got.Before(deadline) || got.After(deadline.Add(wait)) {
		t.Fatalf("handler's deadline %v, want %v plus the frame's transit", got, deadline)
	}
	// Its own deadline or the scheduler's cancel at that deadline, which
	// ever comes first.
	if got := <-h.ended; got == nil {
		t.Fatal("handler's context did not end")
	}
}

func TestCancelReachesHandler(t *testing.T) {
	b := newBed(t, nil)
	h := newHandler("first")
	b.connect(t, "n1", "n1", h)
	c := b.client(t, "n1")
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() {
		_, err := c.ApplyWorkload(ctx, &persysv1.ApplyWorkloadRequest{Name: "block"})
		errc <- err
	}()
	if d := <-h.deadlines; !d.IsZero() {
		t.Fatalf("handler has deadline %v, the call had none", d)
	}
	cancel()
	if err := <-errc; status.Code(err) != codes.Canceled {
		t.Fatalf("got %v, want Canceled", err)
	}
	if got := <-h.ended; !errors.Is(got, context.Canceled) {
		t.Fatalf("handler's context ended with %v, want canceled", got)
	}
}

func TestLogFollow(t *testing.T) {
	b := newBed(t, nil)
	h := newHandler("first")
	b.connect(t, "n1", "n1", h)
	c := b.client(t, "n1")

	t.Run("many chunks in order then EOF", func(t *testing.T) {
		s, err := c.StreamWorkloadLogs(ctxT(t), &persysv1.StreamWorkloadLogsRequest{Name: "many"})
		if err != nil {
			t.Fatal(err)
		}
		for i := range h.chunks {
			m, err := s.Recv()
			if err != nil {
				t.Fatalf("chunk %d: %v", i, err)
			}
			if want := fmt.Sprintf("%d\n", i); string(m.GetData()) != want {
				t.Fatalf("chunk %d is %q, want %q", i, m.GetData(), want)
			}
		}
		if _, err := s.Recv(); err != io.EOF {
			t.Fatalf("after the last chunk: %v, want io.EOF", err)
		}
	})

	t.Run("an error ends it with its status", func(t *testing.T) {
		s, err := c.StreamWorkloadLogs(ctxT(t), &persysv1.StreamWorkloadLogsRequest{Name: "missing"})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := s.Recv(); status.Code(err) != codes.NotFound {
			t.Fatalf("got %v, want NotFound", err)
		}
	})

	t.Run("cancel mid-way stops the agent's follow", func(t *testing.T) {
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		s, err := c.StreamWorkloadLogs(ctx, &persysv1.StreamWorkloadLogsRequest{Name: "forever"})
		if err != nil {
			t.Fatal(err)
		}
		for range 10 {
			if _, err := s.Recv(); err != nil {
				t.Fatal(err)
			}
		}
		cancel()
		if got := <-h.ended; !errors.Is(got, context.Canceled) {
			t.Fatalf("agent's follow ended with %v, want canceled", got)
		}
		for {
			if _, err := s.Recv(); err != nil {
				if status.Code(err) != codes.Canceled {
					t.Fatalf("got %v, want Canceled", err)
				}
				break
			}
		}
	})

	t.Run("a reader that stops reading holds back only its follow", func(t *testing.T) {
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		h.mu.Lock()
		h.sent = 0
		h.mu.Unlock()
		s, err := c.StreamWorkloadLogs(ctx, &persysv1.StreamWorkloadLogsRequest{Name: "forever"})
		if err != nil {
			t.Fatal(err)
		}
		// Not reading: the agent stops at its window, and other calls of
		// the stream go on meanwhile.
		eventually.Eventually(t, "the agent sends its window", wait, func() (bool, string) {
			h.mu.Lock()
			defer h.mu.Unlock()
			return h.sent == 32, fmt.Sprintf("sent %d", h.sent)
		})
		for range 50 {
			if _, err := c.HealthCheck(ctxT(t), &persysv1.HealthCheckRequest{}); err != nil {
				t.Fatalf("another call on the stream: %v", err)
			}
		}
		h.mu.Lock()
		sent := h.sent
		h.mu.Unlock()
		if sent != 32 {
			t.Fatalf("agent sent %d chunks to a reader that took none, want its window of 32", sent)
		}
		// Reading on resumes it.
		for i := range 200 {
			m, err := s.Recv()
			if err != nil {
				t.Fatalf("chunk %d: %v", i, err)
			}
			if want := fmt.Sprintf("%d\n", i); string(m.GetData()) != want {
				t.Fatalf("chunk %d is %q, want %q", i, m.GetData(), want)
			}
		}
		cancel()
		if got := <-h.ended; !errors.Is(got, context.Canceled) {
			t.Fatalf("agent's follow ended with %v, want canceled", got)
		}
	})
}

func TestNewerSessionReplacesOlder(t *testing.T) {
	b := newBed(t, nil)
	h1 := newHandler("first")
	first := b.connect(t, "n1", "n1", h1)
	c := b.client(t, "n1")
	errc := make(chan error, 1)
	go func() {
		_, err := c.GetWorkloadStatus(ctxT(t), &persysv1.GetWorkloadStatusRequest{Name: "block"})
		errc <- err
	}()
	<-h1.deadlines

	b.connect(t, "n1", "n1", newHandler("second"))
	if err := <-errc; status.Code(err) != codes.Unavailable || !strings.Contains(err.Error(), "control stream closed") {
		t.Fatalf("pending call on the replaced session: %v, want Unavailable, control stream closed", err)
	}
	if err := <-b.accepts; status.Code(err) != codes.Unavailable || !strings.Contains(err.Error(), nodechannel.ReasonReplaced) {
		t.Fatalf("older Accept returned %v, want Unavailable naming %s", err, nodechannel.ReasonReplaced)
	}
	if err := first.result(); err == nil {
		t.Fatal("older agent's Serve returned nil; its stream was closed by the scheduler")
	}
	// The client taken before the replacement uses the newer session.
	st, err := c.GetWorkloadStatus(ctxT(t), &persysv1.GetWorkloadStatusRequest{Name: "web"})
	if err != nil || st.GetMessage() != "second" {
		t.Fatalf("got %v, %v; want the answer of the newer session", st, err)
	}
	if n := b.hub.Len(); n != 1 {
		t.Fatalf("hub holds %d sessions, want 1", n)
	}
}

func TestSessionLossFailsPendingCalls(t *testing.T) {
	for _, how := range []string{"agent goes away", "CloseAll"} {
		t.Run(how, func(t *testing.T) {
			b := newBed(t, nil)
			h := newHandler("first")
			a := b.connect(t, "n1", "n1", h)
			c := b.client(t, "n1")
			errc := make(chan error, 1)
			go func() {
				_, err := c.ApplyWorkload(ctxT(t), &persysv1.ApplyWorkloadRequest{Name: "block"})
				errc <- err
			}()
			<-h.deadlines
			if how == "CloseAll" {
				b.hub.CloseAll(nodechannel.ReasonLeadershipLost)
			} else {
				a.cancel()
				_ = a.conn.Close()
			}
			if err := <-errc; status.Code(err) != codes.Unavailable || !strings.Contains(err.Error(), "node n1: control stream closed") {
				t.Fatalf("pending call: %v, want Unavailable, node n1: control stream closed", err)
			}
			// The agent's handler is stopped too.
			if got := <-h.ended; !errors.Is(got, context.Canceled) {
				t.Fatalf("handler's context ended with %v, want canceled", got)
			}
			eventually.Eventually(t, "the hub forgets the session", wait, eventually.True(func() bool { return !b.hub.Connected("n1") }))
			_, err := b.hub.Client("n1")
			if status.Code(err) != codes.Unavailable || !strings.Contains(err.Error(), "node n1 has no control stream") {
				t.Fatalf("Client after the loss: %v, want Unavailable, no control stream", err)
			}
		})
	}
}

func TestCallAfterSessionEndedIsUnavailable(t *testing.T) {
	b := newBed(t, nil)
	a := b.connect(t, "n1", "n1", newHandler("first"))
	c := b.client(t, "n1")
	a.cancel()
	eventually.Eventually(t, "the hub forgets the session", wait, eventually.True(func() bool { return !b.hub.Connected("n1") }))
	_, err := c.HealthCheck(ctxT(t), &persysv1.HealthCheckRequest{})
	if status.Code(err) != codes.Unavailable {
		t.Fatalf("got %v, want Unavailable", err)
	}
	if _, err := c.StreamWorkloadLogs(ctxT(t), &persysv1.StreamWorkloadLogsRequest{Name: "many"}); status.Code(err) != codes.Unavailable {
		t.Fatalf("follow: got %v, want Unavailable", err)
	}
}

func TestHelloNamingAnotherNodeRefused(t *testing.T) {
	b := newBed(t, nil)
	a := b.connect(t, "n1", "n2", newHandler("first"))
	if err := a.result(); status.Code(err) != codes.PermissionDenied || !strings.Contains(err.Error(), "hello.node_id") {
		t.Fatalf("Serve: %v, want PermissionDenied naming hello.node_id", err)
	}
	if b.hub.Connected("n1") || b.hub.Connected("n2") {
		t.Fatal("a refused hello left a session")
	}
}

// TestUnknownBodyAnswered sends the agent frames a scheduler would not:
// each is answered with an error under its call id, and the stream goes on.
func TestUnknownBodyAnswered(t *testing.T) {
	got := make(chan *persysv1.AgentFrame, 4)
	b := newBed(t, func(s grpc.BidiStreamingServer[persysv1.AgentFrame, persysv1.SchedulerFrame]) error {
		if _, err := s.Recv(); err != nil {
			return err
		}
		for _, f := range []*persysv1.SchedulerFrame{
			{Body: &persysv1.SchedulerFrame_Accepted{Accepted: &persysv1.ChannelAccepted{}}},
			{CallId: 7},
			{CallId: 0, Body: &persysv1.SchedulerFrame_Health{Health: &persysv1.HealthCheckRequest{}}},
			{CallId: 8, Body: &persysv1.SchedulerFrame_Health{Health: &persysv1.HealthCheckRequest{}}},
		} {
			if err := s.Send(f); err != nil {
				return err
			}
		}
		for range 3 {
			f, err := s.Recv()
			if err != nil {
				return err
			}
			got <- f
		}
		<-s.Context().Done()
		return nil
	})
	b.connect(t, "n1", "n1", newHandler("first"))
	answers := map[uint64]*persysv1.AgentFrame{}
	for range 3 {
		select {
		case f := <-got:
			answers[f.GetCallId()] = f
		case <-time.After(wait):
			t.Fatalf("answers so far %v", answers)
		}
	}
	if e := answers[7].GetError(); e == nil || codes.Code(e.GetCode()) != codes.Unimplemented || !strings.Contains(e.GetMessage(), "empty or unknown") {
		t.Fatalf("empty body: %v, want Unimplemented saying so", answers[7])
	}
	if e := answers[0].GetError(); e == nil || codes.Code(e.GetCode()) != codes.InvalidArgument || !strings.Contains(e.GetMessage(), "call_id") {
		t.Fatalf("call id 0: %v, want InvalidArgument naming call_id", answers[0])
	}
	if answers[8].GetHealth() == nil {
		t.Fatalf("call 8: %v, want its answer", answers[8])
	}
}

func TestFirstFrameMustBeHello(t *testing.T) {
	b := newBed(t, nil)
	conn := b.dial(t, "n1")
	s, err := persysv1grpc.NewNodeChannelServiceClient(conn).Connect(ctxT(t))
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Send(&persysv1.AgentFrame{CallId: 3, Body: &persysv1.AgentFrame_Health{Health: &persysv1.HealthCheckResponse{}}}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Recv(); status.Code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), "hello") {
		t.Fatalf("got %v, want InvalidArgument naming hello", err)
	}
}

// TestAgentBeyondItsWindow: an agent that ignores credits loses that follow
// with a clear error, and is told to stop it; the stream goes on.
func TestAgentBeyondItsWindow(t *testing.T) {
	b := newBed(t, nil)
	conn := b.dial(t, "n1")
	s, err := persysv1grpc.NewNodeChannelServiceClient(conn).Connect(ctxT(t))
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Send(&persysv1.AgentFrame{Body: &persysv1.AgentFrame_Hello{Hello: &persysv1.ChannelHello{NodeId: "n1"}}}); err != nil {
		t.Fatal(err)
	}
	if f, err := s.Recv(); err != nil || f.GetAccepted() == nil {
		t.Fatalf("got %v, %v; want accepted", f, err)
	}
	follow, err := b.client(t, "n1").StreamWorkloadLogs(ctxT(t), &persysv1.StreamWorkloadLogsRequest{Name: "x"})
	if err != nil {
		t.Fatal(err)
	}
	req, err := s.Recv()
	if err != nil || req.GetFollowLogs() == nil {
		t.Fatalf("got %v, %v; want the follow request", req, err)
	}
	for range 100 {
		if err := s.Send(&persysv1.AgentFrame{CallId: req.GetCallId(), Body: &persysv1.AgentFrame_LogChunk{LogChunk: &persysv1.StreamWorkloadLogsResponse{Data: []byte("x")}}}); err != nil {
			t.Fatal(err)
		}
	}
	for {
		f, err := s.Recv()
		if err != nil {
			t.Fatal(err)
		}
		if f.GetCallId() == req.GetCallId() && f.GetCancel() != nil {
			break
		}
	}
	var last error
	for last == nil {
		_, last = follow.Recv()
	}
	if status.Code(last) != codes.ResourceExhausted || !strings.Contains(last.Error(), "more than the 32 chunks") {
		t.Fatalf("follow ended with %v, want ResourceExhausted saying why", last)
	}
	if !b.hub.Connected("n1") {
		t.Fatal("the session ended with the follow")
	}
}

func TestAwaitWaitsForTheStream(t *testing.T) {
	b := newBed(t, nil)
	short, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if _, err := b.hub.Await(short, "n1"); status.Code(err) != codes.Unavailable {
		t.Fatalf("Await without a stream: %v, want Unavailable", err)
	}
	got := make(chan error, 1)
	go func() {
		c, err := b.hub.Await(ctxT(t), "n1")
		if err == nil {
			_, err = c.HealthCheck(ctxT(t), &persysv1.HealthCheckRequest{})
		}
		got <- err
	}()
	b.connect(t, "n1", "n1", newHandler("first"))
	if err := <-got; err != nil {
		t.Fatal(err)
	}
}

// BenchmarkUnaryOverStream: one HealthCheck round trip over a node's
// control stream (mTLS on loopback), callers in parallel.
func BenchmarkUnaryOverStream(b *testing.B) {
	bb := newBenchBed(b)
	c, err := bb.hub.Client("n1")
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := c.HealthCheck(ctx, &persysv1.HealthCheckRequest{}); err != nil {
				b.Error(err)
				return
			}
		}
	})
}

// newBenchBed is newBed and one connected node, for benchmarks.
func newBenchBed(b *testing.B) *bed {
	b.Helper()
	bundle, err := pki.Bootstrap(b.TempDir(), []string{"n1"}, nil, nil)
	if err != nil {
		b.Fatal(err)
	}
	serverTLS, err := pki.ServerTLS(bundle.Scheduler)
	if err != nil {
		b.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	bd := &bed{bundle: bundle, addr: ln.Addr().String(), accepts: make(chan error, 16), hub: nodechannel.NewHub(nodechannel.HubConfig{})}
	srv := grpc.NewServer(grpc.Creds(credentials.NewTLS(serverTLS)))
	persysv1grpc.RegisterNodeChannelServiceServer(srv, &connectServer{b: bd})
	go func() { _ = srv.Serve(ln) }()
	b.Cleanup(srv.Stop)
	tlsCfg, err := pki.ClientTLS(bundle.Agents["n1"], "")
	if err != nil {
		b.Fatal(err)
	}
	conn, err := grpc.NewClient(bd.addr, grpc.WithTransportCredentials(credentials.NewTLS(tlsCfg)))
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	b.Cleanup(func() { cancel(); _ = conn.Close(); <-done })
	stream, err := persysv1grpc.NewNodeChannelServiceClient(conn).Connect(ctx)
	if err != nil {
		b.Fatal(err)
	}
	accepted := make(chan struct{})
	go func() {
		defer close(done)
		_ = nodechannel.Serve(ctx, stream, nodechannel.Agent{NodeID: "n1", Server: newHandler("bench"), Accepted: func() { close(accepted) }})
	}()
	select {
	case <-accepted:
	case <-time.After(wait):
		b.Fatal("stream not accepted")
	}
	return bd
}

// TestHeartbeatOnStream: each heartbeat the agent sends on its stream reaches
// the Hub's handler with the stream's node and comes back under its call
// id, answer or error, while the scheduler's own calls go on; once the
// stream ends the link fails at once.
func TestHeartbeatOnStream(t *testing.T) {
	seen := make(chan string, 16)
	b := newBedWith(t, nil, func(ctx context.Context, node string, req *persysv1.HeartbeatRequest) (*persysv1.HeartbeatResponse, error) {
		seen <- node
		if req.GetReportDigest() == 13 {
			return nil, status.Error(codes.InvalidArgument, "report_digest: unlucky")
		}
		return &persysv1.HeartbeatResponse{DigestKept: true, HeartbeatIntervalMs: int64(req.GetReportDigest())}, nil
	})
	a := b.connect(t, "n1", "n1", newHandler("first"))
	if a.link == nil {
		t.Fatalf("stream not linked: %v", a.result())
	}
	ctx := ctxT(t)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		// One at a time, each after the last one's answer, as the agent
		// sends them.
		for i := 1; i <= 8; i++ {
			resp, err := a.link.Heartbeat(ctx, &persysv1.HeartbeatRequest{NodeId: "n1", ReportDigest: uint64(i)})
			if err != nil || resp.GetHeartbeatIntervalMs() != int64(i) || !resp.GetDigestKept() {
				t.Errorf("heartbeat %d: %v, %v; want its own answer", i, resp, err)
			}
		}
	}()
	// The scheduler's calls share the stream.
	if _, err := b.client(t, "n1").HealthCheck(ctx, &persysv1.HealthCheckRequest{}); err != nil {
		t.Fatal(err)
	}
	wg.Wait()
	for range 8 {
		if node := <-seen; node != "n1" {
			t.Fatalf("handler saw node %q, want n1", node)
		}
	}

	if _, err := a.link.Heartbeat(ctx, &persysv1.HeartbeatRequest{NodeId: "n1", ReportDigest: 13}); status.Code(err) != codes.InvalidArgument ||
		!strings.Contains(err.Error(), "report_digest") {
		t.Fatalf("failing heartbeat: %v; want the handler's InvalidArgument", err)
	}
	<-seen
	if _, err := a.link.Heartbeat(ctx, &persysv1.HeartbeatRequest{NodeId: "n2"}); status.Code(err) != codes.PermissionDenied {
		t.Fatalf("heartbeat naming another node: %v; want PermissionDenied", err)
	}

	b.hub.Close("n1", nodechannel.ReasonNodeLost)
	select {
	case <-a.link.Done():
	case <-time.After(wait):
		t.Fatal("link not done after the session closed")
	}
	if _, err := a.link.Heartbeat(ctx, &persysv1.HeartbeatRequest{NodeId: "n1", ReportDigest: 1}); !errors.Is(err, nodechannel.ErrLinkClosed) {
		t.Fatalf("heartbeat on an ended stream: %v; want ErrLinkClosed", err)
	}
}

// TestHeartbeatWithoutHandler: a Hub that takes no heartbeats answers them
// Unimplemented and keeps the stream.
func TestHeartbeatWithoutHandler(t *testing.T) {
	b := newBed(t, nil)
	a := b.connect(t, "n1", "n1", newHandler("first"))
	if _, err := a.link.Heartbeat(ctxT(t), &persysv1.HeartbeatRequest{NodeId: "n1"}); status.Code(err) != codes.Unimplemented {
		t.Fatalf("heartbeat: %v; want Unimplemented", err)
	}
	if _, err := b.client(t, "n1").HealthCheck(ctxT(t), &persysv1.HealthCheckRequest{}); err != nil {
		t.Fatalf("the stream did not survive: %v", err)
	}
}

// TestRegisterInHello: a hello that carries the node's registration is
// registered by the Hub's handler before the stream is accepted, and the
// answer comes back in accepted; a refusal, a registration naming another
// node, or an answer the agent refuses ends the stream with no session. A
// bare hello (an agent that registered with the unary call) is accepted
// without registering; an accepted without an answer (a scheduler that
// predates registration on the stream) ends the agent's stream.
func TestRegisterInHello(t *testing.T) {
	type seen struct {
		node string
		req  *persysv1.RegisterNodeRequest
	}
	calls := make(chan seen, 16)
	b := newBedConfig(t, nil, nodechannel.HubConfig{
		Register: func(_ context.Context, node string, req *persysv1.RegisterNodeRequest) (*persysv1.RegisterNodeResponse, error) {
			calls <- seen{node, req}
			if req.GetAddress() == "refused" {
				return nil, status.Error(codes.FailedPrecondition, "node_id \"n1\" is registered and alive under another agent instance")
			}
			return &persysv1.RegisterNodeResponse{ClusterId: "c-" + req.GetAddress(), HeartbeatIntervalMs: 7}, nil
		}})
	reg := func(node, address string) *persysv1.RegisterNodeRequest {
		return &persysv1.RegisterNodeRequest{NodeId: node, Address: address}
	}
	errAnswer := errors.New("cluster id told: not this data dir's")
	for _, tc := range []struct {
		name       string
		hello      string
		register   *persysv1.RegisterNodeRequest
		answerErr  error
		wantCode   codes.Code
		wantErr    error
		mention    string
		registered bool // the handler ran
	}{
		{name: "registered", hello: "n1", register: reg("n1", "10.0.0.1"), registered: true},
		{name: "refused by the registration", hello: "n1", register: reg("n1", "refused"), registered: true,
			wantCode: codes.FailedPrecondition, mention: "another agent instance"},
		{name: "registration naming another node", hello: "n1", register: reg("n2", "10.0.0.2"),
			wantCode: codes.PermissionDenied, mention: "hello.register.node_id"},
		{name: "answer the agent refuses", hello: "n1", register: reg("n1", "10.0.0.3"), registered: true, answerErr: errAnswer,
			wantErr: errAnswer},
		{name: "bare hello", hello: "n1"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var got *persysv1.RegisterNodeResponse
			a := b.connectAs(t, "n1", nodechannel.Agent{NodeID: tc.hello, Server: newHandler("r"), Register: tc.register,
				Registered: func(r *persysv1.RegisterNodeResponse) error { got = r; return tc.answerErr }})
			fail := tc.wantCode != codes.OK || tc.wantErr != nil
			if fail {
				err := a.result()
				switch {
				case tc.wantErr != nil && !errors.Is(err, tc.wantErr):
					t.Fatalf("Serve: %v, want %v", err, tc.wantErr)
				case tc.wantErr == nil && (status.Code(err) != tc.wantCode || !strings.Contains(err.Error(), tc.mention)):
					t.Fatalf("Serve: %v, want %s naming %q", err, tc.wantCode, tc.mention)
				}
				if tc.wantCode != codes.OK && b.hub.Connected("n1") {
					t.Fatal("a refused hello left a session")
				}
			} else {
				if a.link == nil {
					t.Fatalf("not accepted: %v", a.result())
				}
				if !b.hub.Connected("n1") {
					t.Fatal("accepted, but the Hub holds no session")
				}
			}
			if tc.register != nil && tc.wantCode == codes.OK && got.GetClusterId() != "c-"+tc.register.GetAddress() {
				t.Fatalf("registration answer %v, want the handler's", got)
			}
			select {
			case c := <-calls:
				if !tc.registered {
					t.Fatalf("the handler ran for %v", c.req)
				}
				if c.node != "n1" || c.req.GetAddress() != tc.register.GetAddress() {
					t.Fatalf("handler saw node %q request %v", c.node, c.req)
				}
			default:
				if tc.registered {
					t.Fatal("the handler did not run")
				}
			}
			// Serve's caller ends the stream.
			a.cancel()
			<-a.done
			eventually.Eventually(t, "session gone", wait, eventually.True(func() bool { return !b.hub.Connected("n1") }))
		})
	}

	t.Run("a scheduler that predates registration on the stream", func(t *testing.T) {
		old := newBed(t, func(s grpc.BidiStreamingServer[persysv1.AgentFrame, persysv1.SchedulerFrame]) error {
			if _, err := s.Recv(); err != nil {
				return err
			}
			if err := s.Send(&persysv1.SchedulerFrame{Body: &persysv1.SchedulerFrame_Accepted{Accepted: &persysv1.ChannelAccepted{}}}); err != nil {
				return err
			}
			<-s.Context().Done()
			return nil
		})
		a := old.connectAs(t, "n1", nodechannel.Agent{NodeID: "n1", Server: newHandler("r"), Register: reg("n1", "10.0.0.4")})
		if err := a.result(); !errors.Is(err, nodechannel.ErrNotRegistered) {
			t.Fatalf("Serve: %v, want ErrNotRegistered", err)
		}
	})
}

// TestHeartbeatOneAtATime: an agent that sends heartbeats without waiting
// for their answers gets ResourceExhausted, naming why, for each one that
// comes while one is being handled; the handler runs for one at a time
// (one goroutine per session, however many frames come), the one in
// flight is answered, and the next one sent after its answer is handled.
func TestHeartbeatOneAtATime(t *testing.T) {
	entered := make(chan uint64, 64)
	release := make(chan struct{})
	b := newBedWith(t, nil, func(_ context.Context, _ string, req *persysv1.HeartbeatRequest) (*persysv1.HeartbeatResponse, error) {
		entered <- req.GetReportDigest()
		<-release
		return &persysv1.HeartbeatResponse{HeartbeatIntervalMs: int64(req.GetReportDigest())}, nil
	})
	conn := b.dial(t, "n1")
	ctx := ctxT(t)
	stream, err := persysv1grpc.NewNodeChannelServiceClient(conn).Connect(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := stream.Send(&persysv1.AgentFrame{Body: &persysv1.AgentFrame_Hello{Hello: &persysv1.ChannelHello{NodeId: "n1"}}}); err != nil {
		t.Fatal(err)
	}
	if f, err := stream.Recv(); err != nil || f.GetAccepted() == nil {
		t.Fatalf("hello answered %v, %v", f, err)
	}
	heartbeat := func(id uint64) {
		t.Helper()
		if err := stream.Send(&persysv1.AgentFrame{CallId: id, Body: &persysv1.AgentFrame_Heartbeat{
			Heartbeat: &persysv1.HeartbeatRequest{NodeId: "n1", ReportDigest: id}}}); err != nil {
			t.Fatal(err)
		}
	}
	heartbeat(1)
	if got := <-entered; got != 1 {
		t.Fatalf("handler entered for %d, want 1", got)
	}
	const flood = 20
	for id := uint64(2); id < 2+flood; id++ {
		heartbeat(id)
	}
	for range flood {
		f, err := stream.Recv()
		if err != nil {
			t.Fatal(err)
		}
		e := f.GetError()
		if e == nil || codes.Code(e.GetCode()) != codes.ResourceExhausted || !strings.Contains(e.GetMessage(), "previous heartbeat") ||
			f.GetCallId() < 2 {
			t.Fatalf("call %d answered %v; want ResourceExhausted naming the heartbeat in flight", f.GetCallId(), f)
		}
	}
	select {
	case id := <-entered:
		t.Fatalf("the handler ran for heartbeat %d while heartbeat 1 was in flight", id)
	default:
	}
	close(release)
	if f, err := stream.Recv(); err != nil || f.GetCallId() != 1 || f.GetHeartbeatAck().GetHeartbeatIntervalMs() != 1 {
		t.Fatalf("heartbeat 1 answered %v, %v; want its ack", f, err)
	}
	// After the answer, the next one is handled.
	heartbeat(100)
	if f, err := stream.Recv(); err != nil || f.GetCallId() != 100 || f.GetHeartbeatAck().GetHeartbeatIntervalMs() != 100 {
		t.Fatalf("heartbeat 100 answered %v, %v; want its ack", f, err)
	}
	if got := <-entered; got != 100 {
		t.Fatalf("handler entered for %d, want 100", got)
	}
}

// TestDeadlineSurvivesClockSkew: a scheduler whose clock is an hour behind
// sends a call with 30 s left: the handler gets 30 s from the frame's
// arrival by its own clock (the absolute deadline_unix_nano, an hour in
// the past here, is only for agents of the previous release). From a
// scheduler that sends only the absolute deadline, it is used as before.
func TestDeadlineSurvivesClockSkew(t *testing.T) {
	const left = 30 * time.Second
	skewed := time.Now().Add(-time.Hour)
	sent := make(chan time.Time, 2)
	b := newBed(t, func(s grpc.BidiStreamingServer[persysv1.AgentFrame, persysv1.SchedulerFrame]) error {
		if _, err := s.Recv(); err != nil {
			return err
		}
		if err := s.Send(&persysv1.SchedulerFrame{Body: &persysv1.SchedulerFrame_Accepted{Accepted: &persysv1.ChannelAccepted{}}}); err != nil {
			return err
		}
		sent <- time.Now()
		if err := s.Send(&persysv1.SchedulerFrame{CallId: 1, DeadlineUnixNano: skewed.Add(left).UnixNano(), TimeoutNanos: int64(left),
			Body: &persysv1.SchedulerFrame_GetStatus{GetStatus: &persysv1.GetWorkloadStatusRequest{Name: "block"}}}); err != nil {
			return err
		}
		// A scheduler of the previous release, with the same skew.
		if err := s.Send(&persysv1.SchedulerFrame{CallId: 2, DeadlineUnixNano: skewed.Add(left).UnixNano(),
			Body: &persysv1.SchedulerFrame_GetStatus{GetStatus: &persysv1.GetWorkloadStatusRequest{Name: "block"}}}); err != nil {
			return err
		}
		<-s.Context().Done()
		return nil
	})
	h := newHandler("skew")
	b.connect(t, "n1", "n1", h)
	at := <-sent
	var got []time.Time
	for range 2 {
		select {
		case d := <-h.deadlines:
			got = append(got, d)
		case <-time.After(wait):
			t.Fatal("handler not called")
		}
	}
	slices.SortFunc(got, func(a, b time.Time) int { return a.Compare(b) })
	old, fresh := got[0], got[1]
	if fresh.Before(at.Add(left)) || fresh.After(at.Add(left+wait)) {
		t.Fatalf("handler's deadline %v, want %s after the frame was sent (%v)", fresh, left, at)
	}
	if !old.Equal(skewed.Add(left)) {
		t.Fatalf("previous release's frame: handler's deadline %v, want its absolute %v", old, skewed.Add(left))
	}
	// The old frame's deadline has passed: that call ended at once.
	if err := <-h.ended; !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("call with a past absolute deadline ended with %v, want DeadlineExceeded", err)
	}
}
