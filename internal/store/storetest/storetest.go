// Package storetest starts an embedded etcd for tests and hands out a Store
// over it. Everything it starts is stopped by t.Cleanup.
package storetest

import (
	"testing"

	"github.com/persys-dev/compute/internal/store"
	clientv3 "go.etcd.io/etcd/client/v3"
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

// Embedded starts an embedded etcd in t.TempDir() (fsync off) and stops it
// in t.Cleanup.
func Embedded(t testing.TB) *store.Embedded {
	t.Helper()
	e, err := store.StartEmbedded(store.EmbeddedOptions{Dir: t.TempDir(), UnsafeNoFsync: true})
	if err != nil {
		t.Fatalf("storetest: start embedded etcd: %v", err)
	}
	t.Cleanup(e.Close)
	return e
}
