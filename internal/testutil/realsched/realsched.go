// Package realsched runs real schedulers (scheduler.New and
// scheduler.ServeWith) over one embedded etcd for tests of the clients in
// front of them: the gateway, the leader-following pool, the CLI, the
// agent. Every hop is mutual TLS with certificates of one pki.Bootstrap
// CA, which also issues users of any role (IssueUser). With several
// replicas they elect a leader as in production; a replica can be
// stopped (Stop) and a single one restarted over the same store
// (Restart). Agents on the sim runtime and gateways start beside them.
// Everything stops when the test ends, or, with Main, when the last test
// of a package that shares one cluster has run. Production code must not
// import it.
package realsched

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"net"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"

	persysv1 "github.com/persys-dev/compute/api/persys/v1"
	"github.com/persys-dev/compute/api/persys/v1/persysv1grpc"
	"github.com/persys-dev/compute/internal/pki"
	"github.com/persys-dev/compute/internal/scheduler"
	"github.com/persys-dev/compute/internal/secrets"
	"github.com/persys-dev/compute/internal/store"
	"github.com/persys-dev/compute/internal/store/storetest"
	"github.com/persys-dev/compute/internal/testutil/eventually"
)

// Options configure Start.
type Options struct {
	// Replicas is the number of schedulers (default 1). Above one they
	// hold an election and only the leader answers.
	Replicas int
	// Prefix is the store's key prefix (default "/persys", as in
	// production).
	Prefix string
	// NoSecrets leaves the secret API off (no keyring).
	NoSecrets bool
	// Config edits each scheduler's configuration before New.
	Config func(*scheduler.Config)
	// Nodes are the node ids the CA issues agent certificates for (see
	// StartAgent).
	Nodes []string
	// Bundle, when set, is the PKI to use instead of a fresh one (an
	// agent started before the scheduler needs its certificate first;
	// see NewBundle).
	Bundle *pki.Bundle
	// Addr is where a single replica listens; empty: a free loopback port.
	Addr string
	// ServerOptions are added to every replica's gRPC server, before its
	// own authentication (callrec's recorder, for one).
	ServerOptions []grpc.ServerOption
}

// NewBundle bootstraps a PKI with agent certificates for nodes.
func NewBundle(t testing.TB, nodes ...string) *pki.Bundle {
	t.Helper()
	b, err := pki.Bootstrap(t.TempDir(), nodes, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// Cluster is running schedulers.
type Cluster struct {
	// Bundle holds the CA and the gateway, admin and scheduler identities.
	Bundle *pki.Bundle
	// Store is the schedulers' store (for raw checks).
	Store *store.Store
	// Addrs are the replicas' ControlService addresses, in start order.
	Addrs []string
	// Schedulers are the replicas, in the order of Addrs.
	Schedulers []*scheduler.Scheduler
	// Keyring is the schedulers' keyring (nil with NoSecrets).
	Keyring *secrets.Keyring
	// KeyFile is the keyring's file.
	KeyFile string

	logs  *Buffer
	stops []func()
	opts  Options
}

// Buffer is a log sink safe for concurrent writes.
type Buffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *Buffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

// String returns what was written so far.
func (b *Buffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// Logs returns the schedulers' log lines so far (JSON, one per line).
func (c *Cluster) Logs() string { return c.logs.String() }

// LogSink is where the schedulers log; tests may send other components'
// logs there too.
func (c *Cluster) LogSink() *Buffer { return c.logs }

// Start runs the schedulers and waits until they serve (and, with
// replicas, until one leads).
func Start(t testing.TB, o Options) *Cluster {
	t.Helper()
	if o.Replicas <= 0 {
		o.Replicas = 1
	}
	if o.Prefix == "" {
		o.Prefix = "/persys"
	}
	b := o.Bundle
	if b == nil {
		b = NewBundle(t, o.Nodes...)
	}
	st, _ := storetest.NewWithOptions(t, store.Options{Prefix: o.Prefix})
	c := &Cluster{Bundle: b, Store: st, logs: &Buffer{}, opts: o}
	if !o.NoSecrets {
		c.KeyFile = filepath.Join(t.TempDir(), "secrets.key")
		if _, err := secrets.GenerateKeyFile(c.KeyFile); err != nil {
			t.Fatal(err)
		}
		var err error
		if c.Keyring, err = secrets.Load(c.KeyFile); err != nil {
			t.Fatal(err)
		}
	}
	for range o.Replicas {
		c.start(t, o)
	}
	if o.Replicas > 1 {
		c.Leader(t)
	}
	return c
}

func (c *Cluster) start(t testing.TB, o Options) {
	t.Helper()
	serverTLS, err := pki.ServerTLS(c.Bundle.Scheduler)
	if err != nil {
		t.Fatal(err)
	}
	listen := "127.0.0.1:0"
	if o.Addr != "" && o.Replicas == 1 {
		listen = o.Addr
	}
	ln, err := net.Listen("tcp", listen)
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	cfg := scheduler.Config{
		Store:    c.Store,
		Logger:   slog.New(slog.NewJSONHandler(c.logs, nil)).With("scheduler", addr),
		Registry: prometheus.NewRegistry(),
		// Long, so that outcomes come from events, not the safety net.
		ResyncInterval: 10 * time.Minute,
		GitCacheDir:    t.TempDir(),
	}
	if c.Keyring != nil {
		cfg.Secrets = c.Keyring
	}
	if o.Replicas > 1 {
		cfg.Election = &scheduler.ElectionConfig{Address: addr, TTL: 2 * time.Second}
	}
	if o.Config != nil {
		o.Config(&cfg)
	}
	s, err := scheduler.New(cfg)
	if err != nil {
		_ = ln.Close()
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); _ = s.Run(ctx) }()
	opts := append([]grpc.ServerOption{grpc.Creds(credentials.NewTLS(serverTLS))}, o.ServerOptions...)
	go func() { defer wg.Done(); _ = scheduler.ServeWith(ctx, ln, s, opts...) }()
	stop := sync.OnceFunc(func() { cancel(); wg.Wait() })
	t.Cleanup(stop)
	c.stops = append(c.stops, stop)
	c.Addrs = append(c.Addrs, addr)
	c.Schedulers = append(c.Schedulers, s)
	if o.Replicas == 1 {
		eventually.Eventually(t, "scheduler ready", 30*time.Second, func() (bool, string) {
			if err := s.Ready(); err != nil {
				return false, err.Error()
			}
			return true, ""
		})
	}
}

// Stop stops replica i (as a crash of its process would, without giving
// up its leadership) and returns once it no longer serves.
func (c *Cluster) Stop(i int) { c.stops[i]() }

// Restart starts the scheduler of a one-replica cluster again after
// Stop, on its address and over the same store: a new process whose
// memory is what the store holds.
func (c *Cluster) Restart(t testing.TB) {
	t.Helper()
	if len(c.Addrs) != 1 {
		t.Fatalf("realsched: Restart needs one replica, the cluster has %d", len(c.Addrs))
	}
	o := c.opts
	o.Replicas, o.Addr = 1, c.Addrs[0]
	c.Addrs, c.Schedulers, c.stops = nil, nil, nil
	c.start(t, o)
}

// Conn returns a connection to the scheduler at addr with the gateway's
// identity, closed when the test ends.
func (c *Cluster) Conn(t testing.TB, addr string) *grpc.ClientConn {
	t.Helper()
	tlsCfg, err := pki.ClientTLS(c.Bundle.Gateway, "")
	if err != nil {
		t.Fatal(err)
	}
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(credentials.NewTLS(tlsCfg)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	return conn
}

// Admin returns a ControlService client of the first replica with the
// admin's identity.
func (c *Cluster) Admin(t testing.TB) persysv1grpc.ControlServiceClient {
	t.Helper()
	cfg, err := pki.ClientTLS(c.Bundle.Admin, "")
	if err != nil {
		t.Fatal(err)
	}
	conn, err := grpc.NewClient(c.Addrs[0], grpc.WithTransportCredentials(credentials.NewTLS(cfg)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	return persysv1grpc.NewControlServiceClient(conn)
}

// Leader waits until one replica leads and serves and every other
// replica names it, and returns its index.
func (c *Cluster) Leader(t testing.TB) int {
	t.Helper()
	leader := -1
	clients := make([]persysv1grpc.ControlServiceClient, len(c.Addrs))
	for i, a := range c.Addrs {
		clients[i] = persysv1grpc.NewControlServiceClient(c.Conn(t, a))
	}
	eventually.Eventually(t, "a scheduler leader all replicas know", 30*time.Second, func() (bool, string) {
		leader = -1
		named := map[string]int{}
		for i, cl := range clients {
			ctx, cancel := context.WithTimeout(context.Background(), time.Second)
			info, err := cl.GetLeader(ctx, &persysv1.GetLeaderRequest{})
			cancel()
			if err != nil {
				return false, err.Error()
			}
			named[info.GetAddress()]++
			if info.GetIsLeader() && c.Schedulers[i].Ready() == nil {
				leader = i
			}
		}
		if leader < 0 || named[c.Addrs[leader]] != len(c.Addrs) {
			return false, fmt.Sprintf("replicas name %v", named)
		}
		return true, ""
	})
	return leader
}
