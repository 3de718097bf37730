// Package storetest starts embedded etcd for tests, one member or a
// cluster of several, locked with TLS and client-certificate auth as in
// production, and hands out clients and Stores over it. Everything it
// starts is stopped by t.Cleanup.
package storetest

import (
	"crypto/tls"
	"io"
	"net"
	"strings"
	"sync"
	"testing"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/persys-dev/compute/internal/pki"
	"github.com/persys-dev/compute/internal/store"
	"github.com/persys-dev/compute/internal/testutil/freeport"
)

// New starts an embedded etcd in t.TempDir() and returns a Store with the
// default options and its client.
func New(t testing.TB) (*store.Store, *clientv3.Client) {
	t.Helper()
	return NewWithOptions(t, store.Options{})
}

// NewWithOptions is New with store options (prefix, event TTL).
func NewWithOptions(t testing.TB, opts store.Options) (*store.Store, *clientv3.Client) {
	t.Helper()
	e := Embedded(t)
	cli, err := e.Client()
	if err != nil {
		t.Fatalf("storetest: client: %v", err)
	}
	t.Cleanup(func() { _ = cli.Close() })
	return store.New(cli, opts), cli
}

// Embedded starts an embedded etcd in t.TempDir() (fsync off), locked with
// a certificate of a fresh CA (see TLS), and stops it in t.Cleanup.
func Embedded(t testing.TB) *store.Embedded {
	t.Helper()
	e, err := store.StartEmbedded(store.EmbeddedOptions{Dir: t.TempDir(), TLS: TLS(t, t.TempDir()), UnsafeNoFsync: true})
	if err != nil {
		t.Fatalf("storetest: start embedded etcd: %v", err)
	}
	t.Cleanup(e.Close)
	return e
}

// TLS bootstraps a CA in dir and returns the files of its scheduler
// certificate, which carries the loopback SANs and both server and client
// usage, for an embedded etcd.
func TLS(t testing.TB, dir string) *store.EmbeddedTLS {
	t.Helper()
	return FilesTLS(Bundle(t, dir).Scheduler)
}

// Bundle bootstraps a CA and the usual identities in dir.
func Bundle(t testing.TB, dir string) *pki.Bundle {
	t.Helper()
	b, err := pki.Bootstrap(dir, nil, nil, nil)
	if err != nil {
		t.Fatalf("storetest: certificates: %v", err)
	}
	return b
}

// FilesTLS is an identity's files as the embedded etcd's TLS.
func FilesTLS(f pki.Files) *store.EmbeddedTLS {
	return &store.EmbeddedTLS{CAFile: f.CA, CertFile: f.Cert, KeyFile: f.Key}
}

// Cluster is a cluster of embedded etcd members in one process, each with
// its own data folder and ports, clients and peers over TLS with
// certificate auth. Clients reach each member through a TCP relay of its
// own, so that Kill can cut their connections as a crash does.
type Cluster struct {
	// Bundle holds the CA and the identities; every member serves the
	// scheduler certificate.
	Bundle  *pki.Bundle
	Members []*store.Embedded
	relays  []*relay
}

// NewCluster starts n members on loopback and waits until all serve.
func NewCluster(t testing.TB, n int) *Cluster {
	t.Helper()
	b := Bundle(t, t.TempDir())
	dirs := make([]string, n)
	peers := make([]string, n)
	clients := make([]string, n)
	for i := range n {
		dirs[i] = t.TempDir()
		peers[i] = "https://" + freeport.Addr(t, "127.0.0.1")
		clients[i] = "https://" + freeport.Addr(t, "127.0.0.1")
	}
	opts, err := store.MemberOptions(store.EmbeddedOptions{TLS: FilesTLS(b.Scheduler), UnsafeNoFsync: true}, dirs, peers, clients)
	if err != nil {
		t.Fatalf("storetest: %v", err)
	}
	c := &Cluster{Bundle: b, Members: make([]*store.Embedded, n)}
	// A member is ready only once a quorum runs: start them together.
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c.Members[i], errs[i] = store.StartEmbedded(opts[i])
		}()
	}
	wg.Wait()
	for i := range n {
		if c.Members[i] != nil {
			t.Cleanup(c.Members[i].Close)
		}
	}
	for i, err := range errs {
		if err != nil {
			t.Fatalf("storetest: etcd member %s: %v", opts[i].Name, err)
		}
	}
	for _, m := range c.Members {
		r, err := newRelay(strings.TrimPrefix(m.Endpoints()[0], "https://"))
		if err != nil {
			t.Fatalf("storetest: relay: %v", err)
		}
		t.Cleanup(r.close)
		c.relays = append(c.relays, r)
	}
	return c
}

// Endpoints are the client URLs of every member (their relays), killed
// ones included.
func (c *Cluster) Endpoints() []string {
	eps := make([]string, len(c.relays))
	for i, r := range c.relays {
		eps[i] = "https://" + r.ln.Addr().String()
	}
	return eps
}

// Kill crashes member i: its clients' connections drop at once and it
// stops without handing over its leadership. (Closing a member alone keeps
// the client connections open up to etcd's request timeout.)
func (c *Cluster) Kill(i int) {
	c.relays[i].close()
	c.Members[i].Kill()
}

// Leader is the index of the member that leads now, or -1.
func (c *Cluster) Leader() int {
	for i, m := range c.Members {
		if m.IsLeader() {
			return i
		}
	}
	return -1
}

// ClientTLS presents the scheduler certificate and trusts the CA.
func (c *Cluster) ClientTLS(t testing.TB) *tls.Config {
	t.Helper()
	cfg, err := pki.ClientTLS(c.Bundle.Scheduler, "")
	if err != nil {
		t.Fatalf("storetest: client TLS: %v", err)
	}
	return cfg
}

// Client connects to every member with the scheduler certificate.
func (c *Cluster) Client(t testing.TB) *clientv3.Client {
	t.Helper()
	cli, err := store.Connect(c.Endpoints(), c.ClientTLS(t))
	if err != nil {
		t.Fatalf("storetest: client: %v", err)
	}
	t.Cleanup(func() { _ = cli.Close() })
	return cli
}

// relay forwards TCP connections to a member's client port; close cuts
// every one of them.
type relay struct {
	ln     net.Listener
	target string
	mu     sync.Mutex
	conns  map[net.Conn]struct{}
	closed bool
}

func newRelay(target string) (*relay, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	r := &relay{ln: ln, target: target, conns: map[net.Conn]struct{}{}}
	go r.accept()
	return r, nil
}

func (r *relay) accept() {
	for {
		in, err := r.ln.Accept()
		if err != nil {
			return
		}
		out, err := net.Dial("tcp", r.target)
		if err != nil {
			_ = in.Close()
			continue
		}
		if !r.track(in, out) {
			return
		}
		go r.pipe(in, out)
		go r.pipe(out, in)
	}
}

func (r *relay) track(cs ...net.Conn) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		for _, c := range cs {
			_ = c.Close()
		}
		return false
	}
	for _, c := range cs {
		r.conns[c] = struct{}{}
	}
	return true
}

func (r *relay) pipe(dst, src net.Conn) {
	_, _ = io.Copy(dst, src)
	_ = dst.Close()
	_ = src.Close()
}

func (r *relay) close() {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return
	}
	r.closed = true
	_ = r.ln.Close()
	for c := range r.conns {
		_ = c.Close()
	}
}
