// Package secretstest runs a real scheduler (with a keyring, over an
// embedded etcd) behind a real gateway, both over mutual TLS, for tests of
// the secret routes, the client and persysctl. No agent runs. Everything
// stops when the test ends; production code must not import it.
package secretstest

import (
	"bytes"
	"context"
	"log/slog"
	"net"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/persys-dev/compute/api/persys/v1/persysv1grpc"
	"github.com/persys-dev/compute/internal/client"
	"github.com/persys-dev/compute/internal/gateway"
	"github.com/persys-dev/compute/internal/pki"
	"github.com/persys-dev/compute/internal/scheduler"
	"github.com/persys-dev/compute/internal/secrets"
	"github.com/persys-dev/compute/internal/store"
	"github.com/persys-dev/compute/internal/store/storetest"
)

// Env is a running scheduler and gateway.
type Env struct {
	// Endpoint is the gateway's base URL.
	Endpoint string
	// Bundle holds the CA and the admin identity.
	Bundle *pki.Bundle
	// Config is an admin's persysctl config for the gateway.
	Config *client.Config
	// Store is the scheduler's store (for raw checks).
	Store *store.Store
	// Keyring is the scheduler's keyring; KeyFile its file.
	Keyring *secrets.Keyring
	KeyFile string

	logs *lockedBuffer
}

// Logs returns every log line of the scheduler and the gateway so far.
func (e *Env) Logs() []byte { return e.logs.Bytes() }

type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) Bytes() []byte {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]byte(nil), b.buf.Bytes()...)
}

// Start runs the scheduler and the gateway and waits until both serve.
func Start(t testing.TB) *Env {
	t.Helper()
	st, _ := storetest.New(t)
	bundle, err := pki.Bootstrap(t.TempDir(), nil, nil, nil)
	if err != nil {
		t.Fatalf("secretstest: bootstrap pki: %v", err)
	}
	keyFile := filepath.Join(t.TempDir(), "secrets.key")
	if _, err := secrets.GenerateKeyFile(keyFile); err != nil {
		t.Fatalf("secretstest: %v", err)
	}
	k, err := secrets.Load(keyFile)
	if err != nil {
		t.Fatalf("secretstest: %v", err)
	}
	logs := &lockedBuffer{}
	log := slog.New(slog.NewJSONHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))

	schedTLS, err := pki.ServerTLS(bundle.Scheduler)
	if err != nil {
		t.Fatalf("secretstest: %v", err)
	}
	s, err := scheduler.New(scheduler.Config{Store: st,
		Logger: log.With("component", "scheduler"), Registry: prometheus.NewRegistry(), Secrets: k})
	if err != nil {
		t.Fatalf("secretstest: %v", err)
	}
	sln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("secretstest: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); _ = s.Run(ctx) }()
	go func() { defer wg.Done(); _ = scheduler.Serve(ctx, sln, s, schedTLS) }()

	gwClientTLS, err := pki.ClientTLS(bundle.Gateway, "")
	if err != nil {
		cancel()
		t.Fatalf("secretstest: %v", err)
	}
	conn, err := gateway.DialScheduler(sln.Addr().String(), gwClientTLS)
	if err != nil {
		cancel()
		t.Fatalf("secretstest: %v", err)
	}
	h := gateway.New(gateway.Config{Control: persysv1grpc.NewControlServiceClient(conn), Logger: log.With("component", "gateway"),
		Registry: prometheus.NewRegistry()})
	gwTLS, err := pki.ServerTLS(bundle.Gateway)
	if err != nil {
		cancel()
		t.Fatalf("secretstest: %v", err)
	}
	gln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		cancel()
		t.Fatalf("secretstest: %v", err)
	}
	wg.Add(1)
	go func() { defer wg.Done(); _ = gateway.Serve(ctx, gln, h, gwTLS) }()
	t.Cleanup(func() {
		cancel()
		wg.Wait()
		_ = conn.Close()
	})

	deadline := time.After(60 * time.Second)
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for s.Ready() != nil {
		select {
		case <-deadline:
			t.Fatalf("secretstest: scheduler not ready: %v", s.Ready())
		case <-tick.C:
		}
	}
	endpoint := "https://" + gln.Addr().String()
	return &Env{
		Endpoint: endpoint,
		Bundle:   bundle,
		Config:   &client.Config{Endpoint: endpoint, CA: bundle.CA, Cert: bundle.Admin.Cert, Key: bundle.Admin.Key},
		Store:    st,
		Keyring:  k,
		KeyFile:  keyFile,
		logs:     logs,
	}
}

// IssueUser issues a client certificate with role for user name and
// returns a persysctl config that uses it.
func (e *Env) IssueUser(t testing.TB, name string, role pki.Role) *client.Config {
	t.Helper()
	ca, err := pki.LoadCA(e.Bundle.Dir)
	if err != nil {
		t.Fatalf("secretstest: load ca: %v", err)
	}
	certPEM, keyPEM, err := ca.Issue(pki.IssueRequest{CommonName: name, Role: role})
	if err != nil {
		t.Fatalf("secretstest: issue %s: %v", name, err)
	}
	if err := pki.WriteIdentity(e.Bundle.Dir, name, certPEM, keyPEM); err != nil {
		t.Fatalf("secretstest: write identity %s: %v", name, err)
	}
	return &client.Config{Endpoint: e.Endpoint, CA: e.Bundle.CA,
		Cert: filepath.Join(e.Bundle.Dir, name+".crt"), Key: filepath.Join(e.Bundle.Dir, name+".key")}
}

// Client returns a client for cfg, closed when the test ends.
func Client(t testing.TB, cfg *client.Config) *client.Client {
	t.Helper()
	c, err := client.New(cfg)
	if err != nil {
		t.Fatalf("secretstest: client: %v", err)
	}
	t.Cleanup(c.Close)
	return c
}
