package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"

	persysv1 "github.com/persys-dev/compute/api/persys/v1"
	"github.com/persys-dev/compute/api/persys/v1/persysv1grpc"
	"github.com/persys-dev/compute/internal/agent"
	"github.com/persys-dev/compute/internal/grpcauth"
	"github.com/persys-dev/compute/internal/pki"
	"github.com/persys-dev/compute/internal/scheduler"
	"github.com/persys-dev/compute/internal/store/storetest"
	"github.com/persys-dev/compute/internal/testutil/eventually"
	"github.com/persys-dev/compute/internal/testutil/freeport"
)

// A running `persys gateway` whose --ca file is replaced with the bundle
// after `persys ca rotate` accepts a user certificate of the new CA
// without a restart, forwards its call to the scheduler, and still
// accepts users of the previous CA.
// startScheduler runs a real scheduler with a CA over embedded etcd on
// loopback with mTLS (nodes get agent certificates) until the test ends.
func startScheduler(t *testing.T, nodes ...string) (*pki.Bundle, string) {
	t.Helper()
	b, err := pki.Bootstrap(t.TempDir(), nodes, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	st, _ := storetest.New(t)
	holder, err := pki.LoadHolder(b.Scheduler)
	if err != nil {
		t.Fatal(err)
	}
	s, err := scheduler.New(scheduler.Config{Store: st, Registry: prometheus.NewRegistry(), ResyncInterval: 10 * time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	s.SetIdentity(scheduler.IdentityConfig{CADir: b.Dir})
	holder.SetRevocationChecker(s.Revocations())
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Add(3)
	go func() { defer wg.Done(); _ = s.Run(ctx) }()
	go func() {
		defer wg.Done()
		_ = scheduler.Serve(ctx, ln, s, holder.ServerTLS(tls.VerifyClientCertIfGiven))
	}()
	go func() { defer wg.Done(); _ = s.RunIdentity(ctx) }()
	t.Cleanup(func() { cancel(); wg.Wait() })
	return b, ln.Addr().String()
}

// copyIdentity copies f into dir, as on a host of its own.
func copyIdentity(t *testing.T, f pki.Files, dir, name string) pki.Files {
	t.Helper()
	out := pki.Files{CA: filepath.Join(dir, "ca.crt"), Cert: filepath.Join(dir, name+".crt"), Key: filepath.Join(dir, name+".key")}
	for src, dst := range map[string]string{f.CA: out.CA, f.Cert: out.Cert, f.Key: out.Key} {
		copyFile(t, src, dst)
	}
	return out
}

// A running `persys gateway` whose --ca file is replaced with the bundle
// after `persys ca rotate` accepts a user certificate of the new CA
// without a restart, forwards its call to the scheduler, and still
// accepts users of the previous CA.
func TestGatewayTakesRotatedBundleWithoutRestart(t *testing.T) {
	b, schedAddr := startScheduler(t)
	files := copyIdentity(t, b.Gateway, t.TempDir(), "gateway")
	listen := freeport.Addr(t, "127.0.0.1")
	o := gatewayOptions{listen: listen, scheduler: schedAddr, ca: files.CA, cert: files.Cert, key: files.Key,
		logLevel: "warn", renewFraction: pki.DefaultRenewFraction, revocationRefresh: time.Second, identityReload: 20 * time.Millisecond}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := runGateway(ctx, o); err != nil {
			t.Errorf("gateway: %v", err)
		}
	}()
	t.Cleanup(func() { cancel(); <-done })

	old, err := pki.LoadCA(b.Dir)
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	roots.AddCert(old.Cert) // the gateway's certificate is of the old CA
	client := func(c tls.Certificate) *http.Client {
		tr := &http.Transport{TLSClientConfig: &tls.Config{MinVersion: tls.VersionTLS13, RootCAs: roots, Certificates: []tls.Certificate{c}}, DisableKeepAlives: true}
		return &http.Client{Transport: tr, Timeout: 10 * time.Second}
	}
	get := func(c *http.Client) (int, error) {
		resp, err := c.Get("https://" + listen + "/v1/nodes")
		if err != nil {
			return 0, err
		}
		defer resp.Body.Close()
		return resp.StatusCode, nil
	}
	oldPair, err := tls.LoadX509KeyPair(b.Admin.Cert, b.Admin.Key)
	if err != nil {
		t.Fatal(err)
	}
	oldAdmin := client(oldPair)
	eventually.Eventually(t, "the gateway answers the old admin", 30*time.Second, func() (bool, string) {
		code, err := get(oldAdmin)
		return code == http.StatusOK, describe(code, err)
	})

	next, err := pki.RotateCA(b.Dir, "next", 24*time.Hour, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	certPEM, keyPEM, err := next.Issue(pki.IssueRequest{CommonName: "alice", Role: pki.RoleAdmin})
	if err != nil {
		t.Fatal(err)
	}
	newPair, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	newAdmin := client(newPair)
	// Refused: at the handshake, or (Go's client sends no certificate of
	// a CA the server does not list) as a request without credentials.
	if code, err := get(newAdmin); err == nil && code != http.StatusUnauthorized {
		t.Fatalf("a user of the new CA was answered %d before the gateway's bundle changed", code)
	}

	copyFile(t, filepath.Join(b.Dir, pki.CABundleFile), files.CA)
	eventually.Eventually(t, "the gateway answers a user of the new CA", 30*time.Second, func() (bool, string) {
		code, err := get(newAdmin)
		return code == http.StatusOK, describe(code, err)
	})
	if code, err := get(oldAdmin); code != http.StatusOK {
		t.Fatalf("the old admin after the reload: %s", describe(code, err))
	}
}

func copyFile(t *testing.T, src, dst string) {
	t.Helper()
	data, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	tmp := dst + ".tmp"
	if err := os.WriteFile(tmp, data, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, dst); err != nil {
		t.Fatal(err)
	}
}

func describe(code int, err error) string {
	if err != nil {
		return err.Error()
	}
	return http.StatusText(code)
}

// keepAgentIdentity, as `persys agent` runs it: the holder refuses a
// scheduler certificate once the scheduler lists it revoked, and takes a
// CA bundle written over its file without a restart.
func TestAgentIdentityFollowsRevocationsAndFiles(t *testing.T) {
	b, schedAddr := startScheduler(t, "n1")
	files := copyIdentity(t, b.Agents["n1"], t.TempDir(), "agent")
	h, err := pki.LoadHolder(files)
	if err != nil {
		t.Fatal(err)
	}
	scheds, err := agent.DialSchedulers([]string{schedAddr}, h.ClientTLS(""),
		grpc.WithTransportCredentials(grpcauth.HolderCredentials(h, "", tls.RequireAndVerifyClientCert)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = scheds.Close() })
	revs := pki.NewRevocationSet()
	stop := keepAgentIdentity(context.Background(), agentOptions{revocationRefresh: 50 * time.Millisecond, identityReload: 20 * time.Millisecond},
		h, revs, scheds, slog.New(slog.DiscardHandler))
	t.Cleanup(stop)
	addr := serveHandshakes(t, h.ServerTLS(tls.RequireAndVerifyClientCert))

	// A second scheduler certificate, then revoked by serial.
	ca, err := pki.LoadCA(b.Dir)
	if err != nil {
		t.Fatal(err)
	}
	certPEM, keyPEM, err := ca.Issue(pki.IssueRequest{CommonName: "scheduler", Role: pki.RoleScheduler, DNSNames: []string{"localhost"}})
	if err != nil {
		t.Fatal(err)
	}
	stolen, err := pki.NewHolder(certPEM, keyPEM, mustReadFile(t, b.CA))
	if err != nil {
		t.Fatal(err)
	}
	if err := handshake(addr, stolen.ClientTLS("localhost")); err != nil {
		t.Fatalf("before the revocation: %v", err)
	}
	adminTLS, err := pki.ClientTLS(b.Admin, "")
	if err != nil {
		t.Fatal(err)
	}
	conn, err := grpc.NewClient(schedAddr, grpc.WithTransportCredentials(credentials.NewTLS(adminTLS)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	eventually.Eventually(t, "revocation stored", 30*time.Second, func() (bool, string) {
		_, err := persysv1grpc.NewControlServiceClient(conn).RevokeCertificate(context.Background(),
			&persysv1.RevokeCertificateRequest{Serial: stolen.Leaf().SerialNumber.Text(16)})
		return err == nil, describe(0, err)
	})
	eventually.Eventually(t, "the revoked scheduler certificate refused", 30*time.Second, func() (bool, string) {
		err := handshake(addr, stolen.ClientTLS("localhost"))
		return err != nil, "accepted"
	})

	// The bundle after a rotation, written over the agent's CA file.
	if _, err := pki.RotateCA(b.Dir, "next", 24*time.Hour, time.Hour); err != nil {
		t.Fatal(err)
	}
	copyFile(t, filepath.Join(b.Dir, pki.CABundleFile), files.CA)
	eventually.Eventually(t, "the new bundle loaded", 30*time.Second, func() (bool, string) {
		return len(h.Roots()) == 3, fmt.Sprintf("%d roots", len(h.Roots()))
	})
}

// serveHandshakes accepts TLS connections with cfg and completes their
// handshakes until the test ends.
func serveHandshakes(t *testing.T, cfg *tls.Config) string {
	t.Helper()
	ln, err := tls.Listen("tcp", "127.0.0.1:0", cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				_ = c.SetDeadline(time.Now().Add(10 * time.Second))
				if c.(*tls.Conn).Handshake() == nil {
					_, _ = c.Write([]byte("ok"))
				}
			}()
		}
	}()
	return ln.Addr().String()
}

// handshake dials addr with cfg and reads the server's "ok".
func handshake(addr string, cfg *tls.Config) error {
	c, err := tls.DialWithDialer(&net.Dialer{Timeout: 10 * time.Second}, "tcp", addr, cfg)
	if err != nil {
		return err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	buf := make([]byte, 2)
	if _, err := io.ReadFull(c, buf); err != nil {
		return err
	}
	return nil
}

func mustReadFile(t *testing.T, path string) []byte {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return data
}
