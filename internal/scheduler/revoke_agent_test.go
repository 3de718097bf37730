package scheduler_test

import (
	"context"
	"crypto/tls"
	"fmt"
	"strings"
	"sync"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	persysv1 "github.com/persys-dev/compute/api/persys/v1"
	"github.com/persys-dev/compute/api/persys/v1/persysv1grpc"
	"github.com/persys-dev/compute/internal/agent"
	"github.com/persys-dev/compute/internal/grpcauth"
	"github.com/persys-dev/compute/internal/pki"
	"github.com/persys-dev/compute/internal/runtime"
	"github.com/persys-dev/compute/internal/runtime/sim"
)

// The node's control stream is the only way to reach its agent, and it
// needs the node's certificate unrevoked: once it is revoked the node is
// lost, its open stream is closed with it, and a new stream with that
// certificate is refused. Nobody else can open the node's stream.
func TestRevokedAgentLosesControlStream(t *testing.T) {
	e := newIDEnv(t, idOptions{nodes: []string{"n1", "n2"}})
	h, err := pki.LoadHolder(e.bundle.Agents["n1"])
	if err != nil {
		t.Fatal(err)
	}
	scheds, err := agent.DialSchedulers([]string{e.addr}, h.ClientTLS(""),
		grpc.WithTransportCredentials(grpcauth.HolderCredentials(h, "", tls.RequireAndVerifyClientCert)))
	if err != nil {
		t.Fatal(err)
	}
	rt, err := sim.New(sim.Options{})
	if err != nil {
		t.Fatal(err)
	}
	a, err := agent.New(agent.Config{
		NodeID: "n1", AdvertiseAddr: "127.0.0.1", Runtimes: []runtime.Runtime{rt}, Schedulers: scheds,
		HeartbeatInterval: heartbeat, Capacity: &persysv1.Resources{CpuMillis: 2000, MemoryBytes: 1024 * mib, DiskBytes: 10 * 1024 * mib},
		DataDir: t.TempDir(), Logger: e.logger.With("component", "agent"), Registry: prometheus.NewRegistry(),
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { defer wg.Done(); _ = a.Run(ctx) }()
	t.Cleanup(func() { cancel(); wg.Wait(); _ = scheds.Close() })
	poll(t, "n1 ready", waitLong, func() (bool, string) {
		s := e.nodeState("n1")
		return s == persysv1.NodeState_NODE_STATE_READY, s.String()
	})

	// connect opens a stream with f's certificate and says how its hello
	// naming node was answered.
	connect := func(f pki.Files, node string) error {
		s, err := persysv1grpc.NewNodeChannelServiceClient(e.dial(f)).Connect(ctxT(t))
		if err != nil {
			return err
		}
		// A refused stream may end before the hello goes: Send then says
		// io.EOF and Recv tells the status.
		_ = s.Send(&persysv1.AgentFrame{Body: &persysv1.AgentFrame_Hello{Hello: &persysv1.ChannelHello{NodeId: node}}})
		f1, err := s.Recv()
		if err == nil && f1.GetAccepted() == nil {
			t.Fatalf("hello answered with %v, want accepted", f1)
		}
		return err
	}
	for name, f := range map[string]pki.Files{"gateway": e.bundle.Gateway, "admin": e.bundle.Admin, "scheduler": e.bundle.Scheduler} {
		if err := connect(f, "n1"); status.Code(err) != codes.PermissionDenied {
			t.Errorf("a stream for n1 with the %s certificate: %v, want PermissionDenied", name, err)
		}
	}
	if err := connect(e.bundle.Agents["n2"], "n1"); status.Code(err) != codes.PermissionDenied {
		t.Errorf("a stream for n1 with n2's certificate: %v, want PermissionDenied", err)
	}

	if _, err := e.admin.RevokeCertificate(ctxT(t), &persysv1.RevokeCertificateRequest{Serial: h.Leaf().SerialNumber.Text(16)}); err != nil {
		t.Fatal(err)
	}
	poll(t, "n1 lost", waitLong, func() (bool, string) {
		s := e.nodeState("n1")
		return s != persysv1.NodeState_NODE_STATE_READY, s.String()
	})
	// Refused at the handshake (the scheduler's holder checks the
	// revocations), or by the interceptor on a connection opened before.
	poll(t, "a new stream with the revoked certificate refused", waitLong, func() (bool, string) {
		err := connect(e.bundle.Agents["n1"], "n1")
		refused := status.Code(err) == codes.PermissionDenied ||
			status.Code(err) == codes.Unavailable && strings.Contains(err.Error(), "tls")
		return refused, fmt.Sprint(err)
	})
}
