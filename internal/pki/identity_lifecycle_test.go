package pki

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestParseCSR(t *testing.T) {
	key, err := NewKey()
	if err != nil {
		t.Fatal(err)
	}
	good, err := NewServerCSR("node-1", []string{"node-1.example"}, []net.IP{net.IPv4(10, 0, 0, 1)}, key)
	if err != nil {
		t.Fatal(err)
	}
	// A CSR whose signature does not match its content (tampered).
	block, _ := pem.Decode(good)
	tampered := append([]byte(nil), block.Bytes...)
	tampered[len(tampered)-5] ^= 0xff
	// RSA and P-384 keys are refused.
	rsaKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	rsaDER, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{Subject: pkix.Name{CommonName: "n"}}, rsaKey)
	if err != nil {
		t.Fatal(err)
	}
	p384, err := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	p384DER, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{Subject: pkix.Name{CommonName: "n"}}, p384)
	if err != nil {
		t.Fatal(err)
	}
	noCN, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{}, key)
	if err != nil {
		t.Fatal(err)
	}
	csrPEM := func(der []byte) []byte {
		return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der})
	}

	tests := []struct {
		name    string
		in      []byte
		wantErr string
	}{
		{name: "good", in: good},
		{name: "empty", in: nil, wantErr: "empty"},
		{name: "too large", in: make([]byte, MaxCSRSize+1), wantErr: "larger than"},
		{name: "not PEM", in: []byte("junk"), wantErr: "CERTIFICATE REQUEST"},
		{name: "certificate instead", in: []byte("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"), wantErr: "CERTIFICATE REQUEST"},
		{name: "tampered signature", in: csrPEM(tampered), wantErr: "csr_pem"},
		{name: "rsa key", in: csrPEM(rsaDER), wantErr: "P-256"},
		{name: "p384 key", in: csrPEM(p384DER), wantErr: "P-256"},
		{name: "no common name", in: csrPEM(noCN), wantErr: "common name"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			csr, err := ParseCSR(tt.in)
			if tt.wantErr == "" {
				if err != nil || csr.Subject.CommonName != "node-1" {
					t.Fatalf("ParseCSR = %v, %v", csr, err)
				}
				return
			}
			if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("error = %v, want ErrInvalid containing %q", err, tt.wantErr)
			}
		})
	}
}

func TestSignCSR(t *testing.T) {
	ca, _ := newCA(t)
	key, err := NewKey()
	if err != nil {
		t.Fatal(err)
	}
	// The CSR asks for "admin"; the caller decides the identity.
	csrPEM, err := NewCSR("admin", key)
	if err != nil {
		t.Fatal(err)
	}
	csr, err := ParseCSR(csrPEM)
	if err != nil {
		t.Fatal(err)
	}
	certPEM, err := ca.SignCSR(csr, IssueRequest{CommonName: "node-7", Role: RoleAgent, Validity: 30 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	c, err := ParseCertPEM(certPEM)
	if err != nil {
		t.Fatal(err)
	}
	id, err := ca.Verify(c)
	if err != nil || id.CommonName != "node-7" || id.Role != RoleAgent {
		t.Fatalf("identity = %+v, %v", id, err)
	}
	if !keyMatches(c, key) {
		t.Fatal("certificate is not for the CSR's key")
	}
	if life := c.NotAfter.Sub(IssuedAt(c)); life < 29*time.Second || life > 31*time.Second {
		t.Fatalf("lifetime %s, want 30s", life)
	}
	at := RenewAt(c, 0.5)
	if d := at.Sub(IssuedAt(c)); d < 14*time.Second || d > 16*time.Second {
		t.Fatalf("RenewAt(0.5) is %s after issuance, want 15s", d)
	}
	if _, err := ca.SignCSR(csr, IssueRequest{CommonName: "x", Role: "boss"}); !errors.Is(err, ErrInvalid) {
		t.Fatalf("bad role: %v", err)
	}
}

func TestRevocationSet(t *testing.T) {
	ca, _ := newCA(t)
	issue := func(cn string, role Role) *x509.Certificate {
		t.Helper()
		certPEM, _, err := ca.Issue(IssueRequest{CommonName: cn, Role: role})
		if err != nil {
			t.Fatal(err)
		}
		c, err := ParseCertPEM(certPEM)
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	node := issue("node-1", RoleAgent)
	other := issue("node-2", RoleAgent)
	user := issue("alice", RoleOperator)
	sameNameDaemon := issue("alice", RoleGateway)
	now := time.Now()

	set := NewRevocationSet()
	if set.Revoked(node) || set.Len() != 0 {
		t.Fatal("empty set revokes")
	}
	set.Replace([]Revocation{
		{Serial: strings.ToUpper(other.SerialNumber.Text(16))}, // case does not matter
		{NodeID: "node-1", At: now.Add(time.Second)},
		{User: "alice", At: now.Add(time.Second)},
	})
	tests := []struct {
		name string
		cert *x509.Certificate
		want bool
	}{
		{name: "by serial", cert: other, want: true},
		{name: "node issued before the revocation", cert: node, want: true},
		{name: "user issued before the revocation", cert: user, want: true},
		{name: "a daemon named like a revoked user", cert: sameNameDaemon, want: false},
		{name: "node issued after the revocation", cert: func() *x509.Certificate {
			c := *node
			c.NotBefore = now.Add(time.Hour)
			c.SerialNumber = big.NewInt(12345)
			return &c
		}(), want: false},
		{name: "nil", cert: nil, want: false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := set.Revoked(tt.cert); got != tt.want {
				t.Fatalf("Revoked = %v, want %v", got, tt.want)
			}
		})
	}
	if at, ok := set.NodeRevokedAt("node-1"); !ok || !at.Equal(now.Add(time.Second)) {
		t.Fatalf("NodeRevokedAt = %v, %v", at, ok)
	}
	set.Replace(nil)
	if set.Revoked(node) || set.Len() != 0 {
		t.Fatal("Replace(nil) kept entries")
	}
}

// serveTLS accepts connections on a loopback listener with cfg until the
// test ends; each accepted connection completes its handshake and writes
// "ok".
func serveTLS(t testing.TB, cfg *tls.Config) string {
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
				if err := c.(*tls.Conn).Handshake(); err == nil {
					_, _ = c.Write([]byte("ok"))
				}
			}()
		}
	}()
	return ln.Addr().String()
}

func tlsCall(addr string, cfg *tls.Config) error {
	c, err := tls.DialWithDialer(&net.Dialer{Timeout: 10 * time.Second}, "tcp", addr, cfg)
	if err != nil {
		return err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	buf := make([]byte, 2)
	if _, err := c.Read(buf); err != nil {
		return err
	}
	if string(buf) != "ok" {
		return fmt.Errorf("read %q", buf)
	}
	return nil
}

func TestPinnedClientTLS(t *testing.T) {
	b, err := Bootstrap(t.TempDir(), []string{"n1"}, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	other, err := Bootstrap(t.TempDir(), nil, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	h, err := LoadHolder(b.Scheduler)
	if err != nil {
		t.Fatal(err)
	}
	addr := serveTLS(t, h.ServerTLS(tls.VerifyClientCertIfGiven))
	ca, err := LoadCA(b.Dir)
	if err != nil {
		t.Fatal(err)
	}
	otherCA, err := LoadCA(other.Dir)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name, hash, server string
		wantErr            string
	}{
		{name: "right hash", hash: HashCert(ca.Cert), server: "127.0.0.1"},
		{name: "right hash by name", hash: HashCert(ca.Cert), server: "localhost"},
		{name: "other CA's hash", hash: HashCert(otherCA.Cert), server: "127.0.0.1", wantErr: "holds no CA with hash"},
		{name: "name not in the certificate", hash: HashCert(ca.Cert), server: "example.com", wantErr: "does not verify"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg, err := PinnedClientTLS(tt.hash, tt.server)
			if err != nil {
				t.Fatal(err)
			}
			err = tlsCall(addr, cfg)
			if tt.wantErr == "" {
				if err != nil {
					t.Fatalf("pinned handshake: %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("error = %v, want %q", err, tt.wantErr)
			}
		})
	}
	for _, bad := range []string{"", "sha256:", "md5:" + strings.Repeat("0", 64), "sha256:" + strings.Repeat("G", 64)} {
		if _, err := PinnedClientTLS(bad, "x"); !errors.Is(err, ErrInvalid) {
			t.Errorf("PinnedClientTLS(%q) = %v, want ErrInvalid", bad, err)
		}
	}
}

func TestHolderRenewAndRevoke(t *testing.T) {
	b, err := Bootstrap(t.TempDir(), []string{"n1"}, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	server, err := LoadHolder(b.Scheduler)
	if err != nil {
		t.Fatal(err)
	}
	revs := NewRevocationSet()
	server.SetRevocationChecker(revs)
	addr := serveTLS(t, server.ServerTLS(tls.RequireAndVerifyClientCert))

	// The agent's identity lives in files the holder rewrites on renewal.
	dir := t.TempDir()
	files := Files{CA: filepath.Join(dir, "ca.crt"), Cert: filepath.Join(dir, "a.crt"), Key: filepath.Join(dir, "a.key")}
	for src, dst := range map[string]string{b.CA: files.CA, b.Agents["n1"].Cert: files.Cert, b.Agents["n1"].Key: files.Key} {
		data, err := os.ReadFile(src)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(dst, data, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	client, err := LoadHolder(files)
	if err != nil {
		t.Fatal(err)
	}
	cfg := client.ClientTLS("localhost")
	if err := tlsCall(addr, cfg); err != nil {
		t.Fatalf("before renewal: %v", err)
	}
	old := client.Leaf()
	r := &Renewer{Holder: client, Renew: LocalRenew(b.Dir, time.Minute)}
	if err := r.renewOnce(t.Context(), old); err != nil {
		t.Fatal(err)
	}
	if client.Leaf().SerialNumber.Cmp(old.SerialNumber) == 0 {
		t.Fatal("serial unchanged after renewal")
	}
	// The same configuration presents the new certificate, and the files
	// hold it too.
	if err := tlsCall(addr, cfg); err != nil {
		t.Fatalf("after renewal: %v", err)
	}
	reloaded, err := LoadHolder(files)
	if err != nil || reloaded.Leaf().SerialNumber.Cmp(client.Leaf().SerialNumber) != 0 {
		t.Fatalf("files not rewritten: %v", err)
	}
	// Revoking the new serial refuses the next handshake; the old one is
	// refused once the node is revoked as a whole.
	revs.Add(Revocation{Serial: client.Leaf().SerialNumber.Text(16)})
	if err := tlsCall(addr, cfg); err == nil {
		t.Fatal("revoked certificate accepted")
	}
	// A certificate that does not chain to the bundle is not swapped in.
	foreign, err := Bootstrap(t.TempDir(), []string{"n1"}, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	fc, _ := os.ReadFile(foreign.Agents["n1"].Cert)
	fk, _ := os.ReadFile(foreign.Agents["n1"].Key)
	bundle, _ := os.ReadFile(b.CA)
	if err := client.Update(fc, fk, bundle); !errors.Is(err, ErrInvalid) {
		t.Fatalf("foreign certificate: %v, want ErrInvalid", err)
	}
}

func TestRotateCA(t *testing.T) {
	b, err := Bootstrap(t.TempDir(), []string{"n1"}, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	old, err := LoadCA(b.Dir)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := RotateCA(b.Dir, "next", time.Hour, 0); !errors.Is(err, ErrInvalid) {
		t.Fatalf("zero overlap: %v", err)
	}
	next, err := RotateCA(b.Dir, "next", 24*time.Hour, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	cur, err := LoadCA(b.Dir)
	if err != nil || !cur.Cert.Equal(next.Cert) {
		t.Fatalf("signing CA after rotation: %v", err)
	}
	_, certs, err := LoadBundle(b.Dir, time.Now())
	if err != nil || len(certs) != 3 || !certs[0].Equal(next.Cert) || !certs[1].Equal(old.Cert) {
		t.Fatalf("bundle = %d certs, %v; want next, old, cross", len(certs), err)
	}
	if HashCert(certs[2]) != HashCert(next.Cert) || certs[2].CheckSignatureFrom(old.Cert) != nil {
		t.Fatal("third bundle entry is not the new CA cross-signed by the old one")
	}
	// After the overlap only the new CA is trusted.
	_, later, err := LoadBundle(b.Dir, time.Now().Add(2*time.Hour))
	if err != nil || len(later) != 1 || !later[0].Equal(next.Cert) {
		t.Fatalf("bundle after the overlap = %d certs, %v", len(later), err)
	}
	// A peer that trusts only the old CA verifies a certificate of the
	// new one through the cross-signed certificate.
	leafPEM, _, err := next.Issue(IssueRequest{CommonName: "n2", Role: RoleAgent, DNSNames: []string{"localhost"}})
	if err != nil {
		t.Fatal(err)
	}
	leaf, _ := ParseCertPEM(leafPEM)
	roots, inter := x509.NewCertPool(), x509.NewCertPool()
	roots.AddCert(old.Cert)
	inter.AddCert(certs[2])
	if _, err := leaf.Verify(x509.VerifyOptions{Roots: roots, Intermediates: inter, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}}); err != nil {
		t.Fatalf("old-CA peer cannot verify a new certificate: %v", err)
	}
	// A second rotation keeps the first CA until its own retirement.
	if _, err := RotateCA(b.Dir, "third", 24*time.Hour, 2*time.Hour); err != nil {
		t.Fatal(err)
	}
	_, again, err := LoadBundle(b.Dir, time.Now())
	if err != nil || len(again) != 5 {
		t.Fatalf("bundle after two rotations = %d certs, %v; want 5", len(again), err)
	}
}
