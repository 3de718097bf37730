package store_test

import (
	"context"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	persysv1 "github.com/persys-dev/compute/api/persys/v1"
	"github.com/persys-dev/compute/internal/store"
	"github.com/persys-dev/compute/internal/store/storetest"
)

func testCtx(t *testing.T) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func TestEmbeddedSeveralInOneProcess(t *testing.T) {
	t.Parallel()
	ctx := testCtx(t)
	a := storetest.Embedded(t)
	b := storetest.Embedded(t)
	if a.Endpoints()[0] == b.Endpoints()[0] {
		t.Fatalf("both servers on %s", a.Endpoints()[0])
	}
	for i, e := range []*store.Embedded{a, b} {
		cli, err := e.Client()
		if err != nil {
			t.Fatalf("client %d: %v", i, err)
		}
		defer cli.Close()
		if _, err := cli.Put(ctx, "k", e.Endpoints()[0]); err != nil {
			t.Fatalf("put %d: %v", i, err)
		}
		resp, err := cli.Get(ctx, "k")
		if err != nil || len(resp.Kvs) != 1 || string(resp.Kvs[0].Value) != e.Endpoints()[0] {
			t.Fatalf("server %d: got %v, %v", i, resp, err)
		}
	}
}

func TestEmbeddedUnixSocketAndRestart(t *testing.T) {
	t.Parallel()
	ctx := testCtx(t)
	dir, err := os.MkdirTemp("", "etcd")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	opts := store.EmbeddedOptions{Dir: dir, TLS: storetest.TLS(t, t.TempDir()), ClientURL: store.ClientURLUnix, UnsafeNoFsync: true, Logger: slog.New(slog.DiscardHandler)}

	e, err := store.StartEmbedded(opts)
	if err != nil {
		t.Fatalf("start: %v", err)
	}
	sock := filepath.Join(dir, "etcd.sock")
	if ep := e.Endpoints()[0]; ep != "unix://"+sock {
		t.Fatalf("endpoint %q", ep)
	}
	// The socket has no TLS: only this user may open it.
	if fi, err := os.Stat(sock); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("socket mode: %v, %v", fi, err)
	}
	cli, err := e.Client()
	if err != nil {
		t.Fatal(err)
	}
	s := store.New(cli, store.Options{})
	if _, err := s.CreateWorkload(ctx, &persysv1.Workload{Name: "web", Uid: "u1"}); err != nil {
		t.Fatalf("create: %v", err)
	}
	cli.Close()
	e.Close()
	e.Close() // idempotent

	// Same data dir again: the data survives and the stale socket is replaced.
	e, err = store.StartEmbedded(opts)
	if err != nil {
		t.Fatalf("restart: %v", err)
	}
	defer e.Close()
	cli, err = e.Client()
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	w, _, err := store.New(cli, store.Options{}).GetWorkload(ctx, "web")
	if err != nil || w.GetUid() != "u1" {
		t.Fatalf("after restart: %v, %v", w, err)
	}
}

func TestEmbeddedOptionsValidation(t *testing.T) {
	t.Parallel()
	long := "/" + strings.Repeat("d", 120)
	tlsFiles := storetest.TLS(t, t.TempDir())
	opts := func(clientURL, peerURL string) store.EmbeddedOptions {
		return store.EmbeddedOptions{Dir: t.TempDir(), TLS: tlsFiles, ClientURL: clientURL, PeerURL: peerURL}
	}
	tests := []struct {
		name  string
		opts  store.EmbeddedOptions
		field string
	}{
		{name: "no dir", opts: store.EmbeddedOptions{TLS: tlsFiles}, field: "Dir"},
		{name: "no tls", opts: store.EmbeddedOptions{Dir: t.TempDir()}, field: "TLS"},
		{name: "no ca file", opts: store.EmbeddedOptions{Dir: t.TempDir(), TLS: &store.EmbeddedTLS{CertFile: tlsFiles.CertFile, KeyFile: tlsFiles.KeyFile}}, field: "TLS.CAFile"},
		{name: "missing key file", opts: store.EmbeddedOptions{Dir: t.TempDir(), TLS: &store.EmbeddedTLS{CAFile: tlsFiles.CAFile, CertFile: tlsFiles.CertFile, KeyFile: "/nonexistent.key"}}, field: "TLS.KeyFile"},
		{name: "plaintext client url", opts: opts("http://127.0.0.1:2379", ""), field: "ClientURL"},
		{name: "unspecified client ip", opts: opts("https://0.0.0.0:2379", ""), field: "ClientURL"},
		{name: "hostname client url", opts: opts("https://localhost:2379", ""), field: "ClientURL"},
		{name: "relative unix", opts: opts("unix://etcd.sock", ""), field: "ClientURL"},
		{name: "long unix", opts: opts("unix://"+long, ""), field: "ClientURL"},
		{name: "unix peer", opts: opts("", "unix:///tmp/p.sock"), field: "PeerURL"},
		{name: "plaintext peer", opts: opts("", "http://127.0.0.1:2380"), field: "PeerURL"},
		{name: "cluster member on port 0", opts: store.EmbeddedOptions{Dir: t.TempDir(), TLS: tlsFiles, InitialCluster: "persys=https://127.0.0.1:0"}, field: "PeerURL"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e, err := store.StartEmbedded(tc.opts)
			if err == nil {
				e.Close()
				t.Fatal("started")
			}
			if !errors.Is(err, store.ErrInvalid) || !strings.Contains(err.Error(), tc.field) {
				t.Fatalf("error %q does not name %s as invalid", err, tc.field)
			}
		})
	}
}

func TestConnectValidation(t *testing.T) {
	t.Parallel()
	if _, err := store.Connect(nil, nil); !errors.Is(err, store.ErrInvalid) {
		t.Fatalf("no endpoints: %v", err)
	}
	if _, err := store.Connect([]string{""}, nil); !errors.Is(err, store.ErrInvalid) {
		t.Fatalf("empty endpoint: %v", err)
	}
}

// TestDialAndLocalStoreOwnTheirClient: a Store made by Dial or LocalStore
// works and its Close ends its client; one made by New leaves the client
// to its caller.
func TestDialAndLocalStoreOwnTheirClient(t *testing.T) {
	t.Parallel()
	ctx := testCtx(t)
	e := storetest.Embedded(t)
	tlsCfg, err := e.ClientTLS()
	if err != nil {
		t.Fatal(err)
	}
	dialed, err := store.Dial(e.Endpoints(), tlsCfg, store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	local := e.LocalStore(store.Options{})
	for name, st := range map[string]*store.Store{"Dial": dialed, "LocalStore": local} {
		if _, err := st.Revision(ctx); err != nil {
			t.Fatalf("%s: revision: %v", name, err)
		}
		if err := st.Close(); err != nil {
			t.Fatalf("%s: close: %v", name, err)
		}
		// The in-process client may still answer; its context tells.
		if st.Client().Ctx().Err() == nil {
			t.Fatalf("%s: Close left the client open", name)
		}
	}

	cli, err := e.Client()
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	borrowed := store.New(cli, store.Options{})
	if err := borrowed.Close(); err != nil {
		t.Fatal(err)
	}
	if cli.Ctx().Err() != nil {
		t.Fatal("Close of a store made by New closed the caller's client")
	}
	if _, err := store.Dial(nil, nil, store.Options{}); !errors.Is(err, store.ErrInvalid) {
		t.Fatalf("Dial without endpoints: %v", err)
	}
}
