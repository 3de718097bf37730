package grpcauth_test

import (
	"context"
	"crypto/tls"
	"net"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/protobuf/types/known/timestamppb"

	persysv1 "github.com/persys-dev/compute/api/persys/v1"
	"github.com/persys-dev/compute/internal/grpcauth"
	"github.com/persys-dev/compute/internal/pki"
)

// TestHolderCredentials serves the health protocol with holder credentials
// and checks that a CA rotation reaches a client that keeps its
// credentials: after both sides renew onto the new CA, new connections
// still work, and a revoked server is refused.
func TestHolderCredentials(t *testing.T) {
	b, err := pki.Bootstrap(t.TempDir(), []string{"n1"}, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	server, err := pki.LoadHolder(b.Scheduler)
	if err != nil {
		t.Fatal(err)
	}
	client, err := pki.LoadHolder(b.Agents["n1"])
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer(grpc.Creds(grpcauth.HolderCredentials(server, "", tls.RequireAndVerifyClientCert)))
	healthpb.RegisterHealthServer(srv, health.NewServer())
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { defer wg.Done(); _ = srv.Serve(ln) }()
	t.Cleanup(func() { srv.Stop(); wg.Wait() })

	creds := grpcauth.HolderCredentials(client, "", tls.RequireAndVerifyClientCert)
	check := func() error {
		conn, err := grpc.NewClient(ln.Addr().String(), grpc.WithTransportCredentials(creds))
		if err != nil {
			return err
		}
		defer conn.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_, err = healthpb.NewHealthClient(conn).Check(ctx, &healthpb.HealthCheckRequest{})
		return err
	}
	if err := check(); err != nil {
		t.Fatalf("before rotation: %v", err)
	}
	if _, err := pki.RotateCA(b.Dir, "next", 24*time.Hour, time.Hour); err != nil {
		t.Fatal(err)
	}
	// The server renews first; the client still trusts only the old CA.
	renew := func(h *pki.Holder) {
		t.Helper()
		key, err := pki.NewKey()
		if err != nil {
			t.Fatal(err)
		}
		csr, err := pki.NewCSR(h.Leaf().Subject.CommonName, key)
		if err != nil {
			t.Fatal(err)
		}
		certPEM, bundlePEM, err := pki.LocalRenew(b.Dir, time.Hour)(context.Background(), h.Leaf(), csr)
		if err != nil {
			t.Fatal(err)
		}
		keyPEM, err := pki.EncodeKey(key)
		if err != nil {
			t.Fatal(err)
		}
		if err := h.Update(certPEM, keyPEM, bundlePEM); err != nil {
			t.Fatal(err)
		}
	}
	renew(server)
	if err := check(); err != nil {
		t.Fatalf("server renewed onto the new CA, client on the old: %v", err)
	}
	renew(client)
	if err := check(); err != nil {
		t.Fatalf("both renewed onto the new CA: %v", err)
	}
	revs := pki.NewRevocationSet()
	revs.Add(pki.Revocation{Serial: server.Leaf().SerialNumber.Text(16)})
	client.SetRevocationChecker(revs)
	if err := check(); err == nil {
		t.Fatal("a revoked server was accepted")
	}
}

type listerFunc func() (*persysv1.ListRevocationsResponse, error)

func (f listerFunc) ListRevocations(context.Context, *persysv1.ListRevocationsRequest, ...grpc.CallOption) (*persysv1.ListRevocationsResponse, error) {
	return f()
}

func TestPollRevocations(t *testing.T) {
	set := pki.NewRevocationSet()
	var mu sync.Mutex
	resp := &persysv1.ListRevocationsResponse{Revocations: []*persysv1.Revocation{{NodeId: "n1", RevokedAt: timestamppb.Now()}}}
	lister := listerFunc(func() (*persysv1.ListRevocationsResponse, error) {
		mu.Lock()
		defer mu.Unlock()
		return resp, nil
	})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); grpcauth.PollRevocations(ctx, lister, set, 10*time.Millisecond, nil) }()
	waitSet := func(want int) {
		t.Helper()
		deadline := time.After(10 * time.Second)
		tick := time.NewTicker(5 * time.Millisecond)
		defer tick.Stop()
		for set.Len() != want {
			select {
			case <-deadline:
				t.Fatalf("set holds %d entries, want %d", set.Len(), want)
			case <-tick.C:
			}
		}
	}
	waitSet(1)
	mu.Lock()
	resp = &persysv1.ListRevocationsResponse{Revocations: []*persysv1.Revocation{{Serial: "ab"}, {User: "u"}, {NodeId: "n1", RevokedAt: timestamppb.Now()}}}
	mu.Unlock()
	waitSet(3)
	cancel()
	<-done
}

// An asserted identity stands in for a certificate; without one, a call
// that did not come over TLS has no identity.
func TestAssertIdentity(t *testing.T) {
	if _, err := grpcauth.PeerIdentity(context.Background()); err == nil {
		t.Fatal("no peer: identity without an error")
	}
	want := pki.Identity{CommonName: "hollow-00001", Role: pki.RoleAgent, Serial: "sim"}
	got, err := grpcauth.PeerIdentity(grpcauth.AssertIdentity(context.Background(), want))
	if err != nil || got != want {
		t.Fatalf("asserted: %+v, %v; want %+v", got, err, want)
	}
}
