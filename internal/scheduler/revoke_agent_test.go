package scheduler_test

import (
	"context"
	"crypto/tls"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/status"

	persysv1 "github.com/persys-dev/compute/api/persys/v1"
	"github.com/persys-dev/compute/api/persys/v1/persysv1grpc"
	"github.com/persys-dev/compute/internal/agent"
	"github.com/persys-dev/compute/internal/grpcauth"
	"github.com/persys-dev/compute/internal/pki"
	"github.com/persys-dev/compute/internal/runtime"
	"github.com/persys-dev/compute/internal/runtime/sim"
)

// An agent fetches the revocations from the real scheduler (as `persys
// agent` does) and refuses a revoked scheduler certificate: on a new
// connection at the handshake, and on a connection opened before the
// revocation at its next call. The scheduler's own certificate, not
// revoked, goes on reaching the agent.
func TestAgentRefusesRevokedScheduler(t *testing.T) {
	e := newIDEnv(t, idOptions{nodes: []string{"n1"}})
	h, err := pki.LoadHolder(e.bundle.Agents["n1"])
	if err != nil {
		t.Fatal(err)
	}
	revs := pki.NewRevocationSet()
	h.SetRevocationChecker(revs)
	scheds, err := agent.DialSchedulers([]string{e.addr}, h.ClientTLS(""),
		grpc.WithTransportCredentials(grpcauth.HolderCredentials(h, "", tls.RequireAndVerifyClientCert)))
	if err != nil {
		t.Fatal(err)
	}
	rt, err := sim.New(sim.Options{})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	a, err := agent.New(agent.Config{
		NodeID: "n1", AdvertiseAddr: ln.Addr().String(), Runtimes: []runtime.Runtime{rt}, Schedulers: scheds,
		HeartbeatInterval: heartbeat, Capacity: &persysv1.Resources{CpuMillis: 2000, MemoryBytes: 1024 * mib, DiskBytes: 10 * 1024 * mib},
		DataDir: t.TempDir(), Logger: e.logger.With("component", "agent"), Registry: prometheus.NewRegistry(), Revocations: revs,
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Add(3)
	go func() { defer wg.Done(); _ = agent.Serve(ctx, ln, a, h.ServerTLS(tls.RequireAndVerifyClientCert)) }()
	go func() { defer wg.Done(); _ = a.Run(ctx) }()
	go func() { defer wg.Done(); grpcauth.PollRevocations(ctx, scheds, revs, 50*time.Millisecond, e.logger) }()
	t.Cleanup(func() { cancel(); wg.Wait(); _ = scheds.Close() })

	// A second scheduler certificate of the cluster's CA, say a stolen one.
	ca, err := pki.LoadCA(e.bundle.Dir)
	if err != nil {
		t.Fatal(err)
	}
	certPEM, keyPEM, err := ca.Issue(pki.IssueRequest{CommonName: "scheduler", Role: pki.RoleScheduler, DNSNames: []string{"localhost"}})
	if err != nil {
		t.Fatal(err)
	}
	stolen, err := pki.NewHolder(certPEM, keyPEM, mustRead(t, e.bundle.CA))
	if err != nil {
		t.Fatal(err)
	}
	dialAgent := func(hd *pki.Holder) persysv1grpc.AgentServiceClient {
		conn, err := grpc.NewClient(ln.Addr().String(), grpc.WithTransportCredentials(credentials.NewTLS(hd.ClientTLS(""))))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = conn.Close() })
		return persysv1grpc.NewAgentServiceClient(conn)
	}
	open := dialAgent(stolen)
	if _, err := open.ListWorkloads(ctxT(t), &persysv1.ListAgentWorkloadsRequest{}); err != nil {
		t.Fatalf("before the revocation: %v", err)
	}
	poll(t, "n1 ready", waitLong, func() (bool, string) {
		s := e.nodeState("n1")
		return s == persysv1.NodeState_NODE_STATE_READY, s.String()
	})

	if _, err := e.admin.RevokeCertificate(ctxT(t), &persysv1.RevokeCertificateRequest{Serial: stolen.Leaf().SerialNumber.Text(16)}); err != nil {
		t.Fatal(err)
	}
	poll(t, "the open connection refused", waitLong, func() (bool, string) {
		_, err := open.ListWorkloads(ctxT(t), &persysv1.ListAgentWorkloadsRequest{})
		return status.Code(err) == codes.PermissionDenied, status.Code(err).String()
	})
	if _, err := dialAgent(stolen).ListWorkloads(ctxT(t), &persysv1.ListAgentWorkloadsRequest{}); err == nil {
		t.Fatal("a new connection with the revoked scheduler certificate was accepted")
	}
	if _, err := dialAgent(e.holder).ListWorkloads(ctxT(t), &persysv1.ListAgentWorkloadsRequest{}); err != nil {
		t.Fatalf("the scheduler's own certificate after revoking another: %v", err)
	}
}
