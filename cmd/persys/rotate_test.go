package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/persys-dev/compute/internal/pki"
	"github.com/persys-dev/compute/internal/scheduler"
	"github.com/persys-dev/compute/internal/store/storetest"
	"github.com/persys-dev/compute/internal/testutil/freeport"
)

// A running `persys gateway` whose --ca file is replaced with the bundle
// after `persys ca rotate` accepts a user certificate of the new CA
// without a restart, forwards its call to the scheduler, and still
// accepts users of the previous CA.
func TestGatewayTakesRotatedBundleWithoutRestart(t *testing.T) {
	b, err := pki.Bootstrap(t.TempDir(), nil, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	st, _ := storetest.New(t)
	holder, err := pki.LoadHolder(b.Scheduler)
	if err != nil {
		t.Fatal(err)
	}
	s, err := scheduler.New(scheduler.Config{Store: st, Agents: scheduler.HolderDialer{Holder: holder},
		Registry: prometheus.NewRegistry(), ResyncInterval: 10 * time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	s.SetIdentity(scheduler.IdentityConfig{CADir: b.Dir})
	holder.SetRevocationChecker(s.Revocations())
	sln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}

	// The gateway's identity in files of its own, as on a gateway host.
	gwDir := t.TempDir()
	files := pki.Files{CA: filepath.Join(gwDir, "ca.crt"), Cert: filepath.Join(gwDir, "gateway.crt"), Key: filepath.Join(gwDir, "gateway.key")}
	for src, dst := range map[string]string{b.Gateway.CA: files.CA, b.Gateway.Cert: files.Cert, b.Gateway.Key: files.Key} {
		copyFile(t, src, dst)
	}
	listen := freeport.Addr(t, "127.0.0.1")
	o := gatewayOptions{listen: listen, scheduler: sln.Addr().String(), ca: files.CA, cert: files.Cert, key: files.Key,
		logLevel: "warn", renewFraction: pki.DefaultRenewFraction, revocationRefresh: time.Second, identityReload: 20 * time.Millisecond}

	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Add(4)
	go func() { defer wg.Done(); _ = s.Run(ctx) }()
	go func() {
		defer wg.Done()
		_ = scheduler.Serve(ctx, sln, s, holder.ServerTLS(tls.VerifyClientCertIfGiven))
	}()
	go func() { defer wg.Done(); _ = s.RunIdentity(ctx) }()
	go func() {
		defer wg.Done()
		if err := runGateway(ctx, o); err != nil {
			t.Errorf("gateway: %v", err)
		}
	}()
	t.Cleanup(func() { cancel(); wg.Wait() })

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
	waitUntil(t, "the gateway answers the old admin", func() (bool, string) {
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
	waitUntil(t, "the gateway answers a user of the new CA", func() (bool, string) {
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

func waitUntil(t *testing.T, what string, cond func() (bool, string)) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		ok, last := cond()
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within 30s; last: %s", what, last)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
