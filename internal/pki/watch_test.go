package pki

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/persys-dev/compute/internal/testutil/eventually"
)

// copyIdentity copies f into dir and returns the copies.
func copyIdentity(t *testing.T, f Files, dir string) Files {
	t.Helper()
	out := Files{CA: filepath.Join(dir, "ca.crt"), Cert: filepath.Join(dir, "id.crt"), Key: filepath.Join(dir, "id.key")}
	for src, dst := range map[string]string{f.CA: out.CA, f.Cert: out.Cert, f.Key: out.Key} {
		data, err := os.ReadFile(src)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(dst, data, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return out
}

// A server whose CA bundle file is replaced after `persys ca rotate`
// accepts clients of the new CA without a restart, keeps accepting those
// of the old one during the overlap, and keeps its identity while the
// file holds something that does not load.
func TestHolderWatchFilesPicksUpRotatedBundle(t *testing.T) {
	b, err := Bootstrap(t.TempDir(), nil, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	files := copyIdentity(t, b.Gateway, t.TempDir())
	server, err := LoadHolder(files)
	if err != nil {
		t.Fatal(err)
	}
	addr := serveTLS(t, server.ServerTLS(tls.RequireAndVerifyClientCert))
	logs := &lockedLog{}
	go server.WatchFiles(t.Context(), 10*time.Millisecond, slog.New(slog.NewTextHandler(logs, nil)))
	// refusals waits until the watcher has logged n refused sets of files:
	// it looked at the change and kept what it had.
	refusals := func(n int) {
		t.Helper()
		eventually.Eventually(t, fmt.Sprintf("the watcher refusing %d changes", n), 10*time.Second, func() (bool, string) {
			return strings.Count(logs.String(), "do not load") >= n, logs.String()
		})
	}

	old, err := LoadCA(b.Dir)
	if err != nil {
		t.Fatal(err)
	}
	next, err := RotateCA(b.Dir, "next", 24*time.Hour, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	// A user of the new CA that presents its leaf alone (no cross-signed
	// chain): only a server that trusts the new CA accepts it.
	certPEM, keyPEM, err := next.Issue(IssueRequest{CommonName: "alice", Role: RoleAdmin})
	if err != nil {
		t.Fatal(err)
	}
	pair, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	roots.AddCert(old.Cert) // the server's certificate is of the old CA
	newUser := &tls.Config{MinVersion: tls.VersionTLS13, Certificates: []tls.Certificate{pair}, RootCAs: roots, ServerName: "localhost"}
	oldPair, err := tls.LoadX509KeyPair(b.Admin.Cert, b.Admin.Key)
	if err != nil {
		t.Fatal(err)
	}
	oldUser := &tls.Config{MinVersion: tls.VersionTLS13, Certificates: []tls.Certificate{oldPair}, RootCAs: roots, ServerName: "localhost"}
	if err := tlsCall(addr, oldUser); err != nil {
		t.Fatalf("a certificate of the old CA before the rotation: %v", err)
	}
	if err := tlsCall(addr, newUser); err == nil {
		t.Fatal("a certificate of the new CA was accepted before the bundle changed")
	}

	// Something that does not load is not swapped in.
	if err := os.WriteFile(files.CA, []byte("not a bundle"), 0o644); err != nil {
		t.Fatal(err)
	}
	refusals(1)
	if err := tlsCall(addr, oldUser); err != nil {
		t.Fatalf("after an unloadable bundle: %v", err)
	}

	// The next CA alone (ca.crt after the rotation) would drop the CA of
	// the server's own certificate: it is not swapped in either.
	nextOnly, err := os.ReadFile(filepath.Join(b.Dir, CACertFile))
	if err != nil {
		t.Fatal(err)
	}
	if err := writeReplace(files.CA, nextOnly, 0o644); err != nil {
		t.Fatal(err)
	}
	refusals(2)
	if err := tlsCall(addr, oldUser); err != nil {
		t.Fatalf("after a bundle without the server's own CA: %v", err)
	}
	if got := len(server.Roots()); got != 1 || !server.Roots()[0].Equal(old.Cert) {
		t.Fatalf("roots after a bundle without the server's own CA = %d, want the old CA alone", got)
	}

	bundle, _, err := LoadBundle(b.Dir, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if err := writeReplace(files.CA, bundle, 0o644); err != nil {
		t.Fatal(err)
	}
	eventually.Eventually(t, "a certificate of the new CA accepted after the bundle changed", 10*time.Second, func() (bool, string) {
		if err := tlsCall(addr, newUser); err != nil {
			return false, err.Error()
		}
		return true, ""
	})
	if got := len(server.Roots()); got != 3 {
		t.Errorf("roots after reload = %d, want 3 (new, old, cross-signed)", got)
	}
	if err := tlsCall(addr, oldUser); err != nil {
		t.Fatalf("a certificate of the old CA during the overlap: %v", err)
	}
}

// A holder notes a CA rotation when a verified peer presents the
// cross-signed certificate of the new CA, a Renewer asking CARotated
// then renews at once into the new bundle, and an unrelated CA in a
// verified peer's chain notes nothing.
func TestHolderNotesRotatedCA(t *testing.T) {
	b, err := Bootstrap(t.TempDir(), []string{"n1"}, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	server, err := LoadHolder(copyIdentity(t, b.Scheduler, t.TempDir()))
	if err != nil {
		t.Fatal(err)
	}
	client, err := LoadHolder(copyIdentity(t, b.Agents["n1"], t.TempDir()))
	if err != nil {
		t.Fatal(err)
	}
	addr := serveTLS(t, server.ServerTLS(tls.RequireAndVerifyClientCert))
	if err := tlsCall(addr, client.ClientTLS("localhost")); err != nil {
		t.Fatal(err)
	}
	if client.CARotated() || server.CARotated() {
		t.Fatal("a rotation noted before any")
	}

	// A verified client that appends an unrelated CA to its chain.
	other, err := Bootstrap(t.TempDir(), nil, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	otherCA, err := LoadCA(other.Dir)
	if err != nil {
		t.Fatal(err)
	}
	odd := client.ClientTLS("localhost")
	pair := *client.Certificate()
	pair.Certificate = append(append([][]byte(nil), pair.Certificate...), otherCA.Cert.Raw)
	odd.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return &pair, nil }
	if err := tlsCall(addr, odd); err != nil {
		t.Fatal(err)
	}
	if server.CARotated() {
		t.Fatal("an unrelated CA in a peer's chain was taken for a rotation")
	}

	next, err := RotateCA(b.Dir, "next", 24*time.Hour, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if err := (&Renewer{Holder: server, Renew: LocalRenew(b.Dir, time.Hour)}).renewOnce(t.Context(), server.Leaf()); err != nil {
		t.Fatal(err)
	}
	// The client, still on the old bundle, verifies the renewed server
	// through the cross-signed certificate and notes the rotation.
	if err := tlsCall(addr, client.ClientTLS("localhost")); err != nil {
		t.Fatalf("old-bundle client to a renewed server: %v", err)
	}
	if !client.CARotated() {
		t.Fatal("the cross-signed CA in the server's chain was not noted")
	}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = (&Renewer{Holder: client, Renew: LocalRenew(b.Dir, time.Hour), Recheck: 10 * time.Millisecond,
			Stale: func(*x509.Certificate) bool { return client.CARotated() }}).Run(ctx)
	}()
	defer func() { cancel(); <-done }()
	eventually.Eventually(t, "the client renewed after noting the rotation", 10*time.Second, eventually.True(func() bool {
		return client.Leaf().CheckSignatureFrom(next.Cert) == nil
	}))
	if client.CARotated() {
		t.Fatal("still noted after the renewal")
	}
	if err := tlsCall(addr, client.ClientTLS("localhost")); err != nil {
		t.Fatal(err)
	}
	if client.CARotated() || len(client.Roots()) != 3 {
		t.Fatalf("after renewal: rotated %v, %d roots; want false and 3", client.CARotated(), len(client.Roots()))
	}
}

// lockedLog is a log sink safe for the watcher's goroutine and the test.
type lockedLog struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (l *lockedLog) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Write(p)
}

func (l *lockedLog) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.String()
}
