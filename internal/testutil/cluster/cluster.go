// Package cluster starts a real scheduler for tests of other packages: a
// fresh PKI (pki.Bootstrap), embedded etcd (storetest) and scheduler.New
// served with mTLS on loopback, all stopped by t.Cleanup. Tests of the
// agent talk to it instead of a stand-in, so they exercise the real
// registration, lease and heartbeat rules. Callers take the node
// certificates from Bundle and pass the scheduler's Addr to their agents.
package cluster

import (
	"context"
	"io"
	"log/slog"
	"net"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"

	persysv1 "github.com/persys-dev/compute/api/persys/v1"
	"github.com/persys-dev/compute/internal/pki"
	"github.com/persys-dev/compute/internal/scheduler"
	"github.com/persys-dev/compute/internal/store"
	"github.com/persys-dev/compute/internal/store/storetest"
)

// Options shape the scheduler; zero values take the defaults noted.
type Options struct {
	// Nodes are the node ids to issue agent certificates for. Required
	// unless Bundle is set.
	Nodes []string
	// Bundle, when set, is the PKI to use instead of a fresh one (agents
	// started before the scheduler need their certificates first; see
	// NewBundle).
	Bundle *pki.Bundle
	// Addr to listen on. Empty: a free loopback port.
	Addr string
	// HeartbeatInterval the scheduler tells its agents. Zero: 200ms.
	HeartbeatInterval time.Duration
	// LeaseTTL of a node's lease. Zero: 2s.
	LeaseTTL time.Duration
	// Config, when set, changes the scheduler's configuration last.
	Config func(*scheduler.Config)
}

// Scheduler is a running scheduler.
type Scheduler struct {
	*scheduler.Scheduler
	// Addr is where it serves ControlService.
	Addr string
	// Bundle holds the CA and the scheduler's, the admin's and each
	// node's certificates.
	Bundle *pki.Bundle
}

// Start starts a scheduler over embedded etcd and waits until it is
// ready. It is stopped, and its errors reported, when t ends.
func Start(t testing.TB, o Options) *Scheduler {
	t.Helper()
	b := o.Bundle
	if b == nil {
		b = NewBundle(t, o.Nodes...)
	}
	if o.Addr == "" {
		o.Addr = "127.0.0.1:0"
	}
	if o.HeartbeatInterval == 0 {
		o.HeartbeatInterval = 200 * time.Millisecond
	}
	if o.LeaseTTL == 0 {
		o.LeaseTTL = 2 * time.Second
	}
	emb := storetest.Embedded(t)
	etcd, err := emb.Client()
	if err != nil {
		t.Fatalf("cluster: etcd client: %v", err)
	}
	t.Cleanup(func() { _ = etcd.Close() })
	serverTLS, err := pki.ServerTLS(b.Scheduler)
	if err != nil {
		t.Fatal(err)
	}
	clientTLS, err := pki.ClientTLS(b.Scheduler, "")
	if err != nil {
		t.Fatal(err)
	}
	cfg := scheduler.Config{
		Store:             store.New(etcd, store.Options{}),
		Agents:            scheduler.TLSDialer{TLS: clientTLS},
		Logger:            logger().With("component", "scheduler"),
		Registry:          prometheus.NewRegistry(),
		HeartbeatInterval: o.HeartbeatInterval,
		LeaseTTL:          o.LeaseTTL,
	}
	if o.Config != nil {
		o.Config(&cfg)
	}
	s, err := scheduler.New(cfg)
	if err != nil {
		t.Fatalf("cluster: scheduler: %v", err)
	}
	ln, err := net.Listen("tcp", o.Addr)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	errs := make(chan error, 2)
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); errs <- s.Run(ctx) }()
	go func() { defer wg.Done(); errs <- scheduler.Serve(ctx, ln, s, serverTLS) }()
	t.Cleanup(func() {
		cancel()
		wg.Wait()
		close(errs)
		for err := range errs {
			if err != nil {
				t.Errorf("cluster: scheduler: %v", err)
			}
		}
	})
	deadline := time.Now().Add(30 * time.Second)
	for err := s.Ready(); err != nil; err = s.Ready() {
		if time.Now().After(deadline) {
			t.Fatalf("cluster: scheduler not ready: %v", err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	return &Scheduler{Scheduler: s, Addr: ln.Addr().String(), Bundle: b}
}

// NewBundle bootstraps a PKI with agent certificates for nodes.
func NewBundle(t testing.TB, nodes ...string) *pki.Bundle {
	t.Helper()
	if len(nodes) == 0 {
		t.Fatal("cluster: no node ids")
	}
	b, err := pki.Bootstrap(t.TempDir(), nodes, nil, nil)
	if err != nil {
		t.Fatalf("cluster: pki: %v", err)
	}
	return b
}

// Admin returns a ControlService client with the admin's identity.
func (s *Scheduler) Admin(t testing.TB) persysv1.ControlServiceClient {
	t.Helper()
	cfg, err := pki.ClientTLS(s.Bundle.Admin, "")
	if err != nil {
		t.Fatal(err)
	}
	conn, err := grpc.NewClient(s.Addr, grpc.WithTransportCredentials(credentials.NewTLS(cfg)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	return persysv1.NewControlServiceClient(conn)
}

func logger() *slog.Logger {
	var w io.Writer = io.Discard
	if testing.Verbose() {
		w = os.Stderr
	}
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: slog.LevelDebug}))
}
