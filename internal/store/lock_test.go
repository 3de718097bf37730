package store_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"net/url"
	"os"
	"strings"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/persys-dev/compute/internal/pki"
	"github.com/persys-dev/compute/internal/store"
	"github.com/persys-dev/compute/internal/store/storetest"
)

// TestEmbeddedRefusesClientsWithoutCertificate: the embedded etcd's port
// answers only a client with a certificate from the cluster's CA.
func TestEmbeddedRefusesClientsWithoutCertificate(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	b := storetest.Bundle(t, dir)
	e, err := store.StartEmbedded(store.EmbeddedOptions{Dir: t.TempDir(), TLS: storetest.FilesTLS(b.Scheduler), UnsafeNoFsync: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(e.Close)
	ep := e.Endpoints()[0]
	u, err := url.Parse(ep)
	if err != nil || u.Scheme != "https" {
		t.Fatalf("endpoint %q: want https", ep)
	}
	caPEM, err := os.ReadFile(b.CA)
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(caPEM)
	otherCA := storetest.Bundle(t, t.TempDir()) // same names, another CA
	other, err := tls.LoadX509KeyPair(otherCA.Scheduler.Cert, otherCA.Scheduler.Key)
	if err != nil {
		t.Fatal(err)
	}

	refused := []struct {
		name      string
		endpoint  string
		tlsConfig *tls.Config
	}{
		{"plaintext", "http://" + u.Host, nil},
		{"tls without certificate", ep, &tls.Config{RootCAs: roots, MinVersion: tls.VersionTLS12}},
		{"certificate of another CA", ep, &tls.Config{RootCAs: roots, Certificates: []tls.Certificate{other}, MinVersion: tls.VersionTLS12}},
	}
	for _, tc := range refused {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			cli, err := store.Connect([]string{tc.endpoint}, tc.tlsConfig)
			if err != nil {
				t.Fatal(err)
			}
			defer cli.Close()
			ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
			defer cancel()
			if _, err := cli.Put(ctx, "/persys/nodes/intruder", "x"); err == nil {
				t.Fatal("put accepted")
			}
			if resp, err := cli.Get(ctx, "/persys/", clientv3.WithPrefix()); err == nil {
				t.Fatalf("get answered: %d keys", resp.Count)
			}
		})
	}

	// The handshake itself fails for a certificate of another CA (TLS 1.2
	// makes the server's verdict part of the handshake).
	t.Run("handshake of another CA", func(t *testing.T) {
		t.Parallel()
		conn, err := tls.Dial("tcp", u.Host, &tls.Config{RootCAs: roots, Certificates: []tls.Certificate{other}, MaxVersion: tls.VersionTLS12})
		if err == nil {
			conn.Close()
			t.Fatal("handshake accepted")
		}
		if !strings.Contains(err.Error(), "bad certificate") && !strings.Contains(err.Error(), "unknown certificate authority") {
			t.Fatalf("handshake: %v, want the certificate refused", err)
		}
	})

	t.Run("certificate of the cluster CA", func(t *testing.T) {
		t.Parallel()
		// A scheduler identity issued apart from the server's own.
		ca, err := pki.LoadCA(dir)
		if err != nil {
			t.Fatal(err)
		}
		certPEM, keyPEM, err := ca.Issue(pki.IssueRequest{CommonName: "scheduler-2", Role: pki.RoleScheduler})
		if err != nil {
			t.Fatal(err)
		}
		pair, err := tls.X509KeyPair(certPEM, keyPEM)
		if err != nil {
			t.Fatal(err)
		}
		cfg := &tls.Config{RootCAs: roots, Certificates: []tls.Certificate{pair}, MinVersion: tls.VersionTLS12}
		cli, err := store.Connect([]string{ep}, cfg)
		if err != nil {
			t.Fatal(err)
		}
		defer cli.Close()
		ctx := testCtx(t)
		if _, err := cli.Put(ctx, "k", "v"); err != nil {
			t.Fatalf("put: %v", err)
		}
		resp, err := cli.Get(ctx, "k")
		if err != nil || len(resp.Kvs) != 1 || string(resp.Kvs[0].Value) != "v" {
			t.Fatalf("get: %v, %v", resp, err)
		}
	})
}
