package backup

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"github.com/persys-dev/compute/internal/pki"
	"github.com/persys-dev/compute/internal/store"
)

// TestSaveDataDirRestore: a stopped scheduler's embedded etcd is saved
// and restored into a new data dir that store.StartEmbedded opens with
// every key; a restore over an existing etcd is refused.
func TestSaveDataDirRestore(t *testing.T) {
	ctx := context.Background()
	// The store's own identity, as the scheduler makes it in --data-dir.
	sf, err := pki.EnsureStoreIdentity(filepath.Join(t.TempDir(), "store-pki"), time.Now())
	if err != nil {
		t.Fatal(err)
	}
	storeTLS := store.EmbeddedTLS{CAFile: sf.CA, CertFile: sf.Cert, KeyFile: sf.Key}
	old := filepath.Join(t.TempDir(), "old")
	emb, err := store.StartEmbedded(store.EmbeddedOptions{Dir: old, UnsafeNoFsync: true, TLS: &storeTLS})
	if err != nil {
		t.Fatal(err)
	}
	cli, err := emb.Client()
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"/persys/workloads/a", "/persys/workloads/b"} {
		if _, err := cli.Put(ctx, k, "v-"+k); err != nil {
			t.Fatal(err)
		}
	}
	_ = cli.Close()
	emb.Close()

	snap := filepath.Join(t.TempDir(), "snap.db")
	if _, err := SaveDataDir(ctx, old, storeTLS, snap); err != nil {
		t.Fatal(err)
	}
	if _, err := SaveDataDir(ctx, old, storeTLS, snap); err == nil {
		t.Fatal("a second save over the same file passed")
	}
	restored := filepath.Join(t.TempDir(), "new")
	if err := Restore(snap, restored); err != nil {
		t.Fatal(err)
	}
	if err := Restore(snap, restored); err == nil {
		t.Fatal("a restore over an existing etcd passed")
	}
	emb, err = store.StartEmbedded(store.EmbeddedOptions{Dir: restored, UnsafeNoFsync: true, TLS: &storeTLS})
	if err != nil {
		t.Fatal(err)
	}
	defer emb.Close()
	cli, err = emb.Client()
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	for _, k := range []string{"/persys/workloads/a", "/persys/workloads/b"} {
		resp, err := cli.Get(ctx, k)
		if err != nil || len(resp.Kvs) != 1 || string(resp.Kvs[0].Value) != "v-"+k {
			t.Fatalf("restored %s: %v %v", k, resp, err)
		}
		if resp.Header.Revision < 1_000_000 {
			t.Errorf("revision %d not bumped past the old history", resp.Header.Revision)
		}
	}
}
