// Package backup saves and restores the cluster's etcd state as an etcd
// snapshot file, for `persys backup`. A snapshot is taken from a running
// etcd (an external cluster's endpoint) or from a stopped scheduler's
// embedded data dir; it is restored into a new embedded data dir that
// `persys scheduler --data-dir` then starts from. Restoring an external
// etcd cluster is etcdutl's job (docs/operations.md).
package backup

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/persys-dev/compute/internal/store"
)

// revisionBump is how far a restore moves the revision past the
// snapshot's: more than any client may have seen since.
const revisionBump = 1_000_000

// Save writes a snapshot of the etcd at endpoints to path and returns the
// etcd version that made it. tlsCfg is the client TLS etcd requires (nil
// for plaintext endpoints).
func Save(ctx context.Context, endpoints []string, tlsCfg *tls.Config, path string) (string, error) {
	if len(endpoints) == 0 {
		return "", errors.New("backup: no etcd endpoint")
	}
	if _, err := os.Stat(path); err == nil {
		return "", fmt.Errorf("backup: %s exists; snapshots are never overwritten", path)
	}
	return store.SaveSnapshot(ctx, endpoints, tlsCfg, path)
}

// SaveDataDir snapshots the embedded etcd in a stopped scheduler's
// --data-dir: it starts that etcd on loopback, with the store's own
// identity storeTLS, for the time of the copy. The scheduler must not run
// (etcd locks its data dir).
func SaveDataDir(ctx context.Context, dataDir string, storeTLS store.EmbeddedTLS, path string) (string, error) {
	if _, err := os.Stat(filepath.Join(dataDir, store.EmbeddedMemberDir)); err != nil {
		return "", fmt.Errorf("backup: %s holds no embedded etcd: %w", dataDir, err)
	}
	emb, err := store.StartEmbedded(store.EmbeddedOptions{Dir: dataDir, TLS: &storeTLS})
	if err != nil {
		return "", fmt.Errorf("backup: open %s (is the scheduler still running?): %w", dataDir, err)
	}
	defer emb.Close()
	tlsCfg, err := emb.ClientTLS()
	if err != nil {
		return "", fmt.Errorf("backup: %w", err)
	}
	return Save(ctx, emb.Endpoints(), tlsCfg, path)
}

// Restore makes a new embedded data dir from a snapshot. dataDir must not
// hold an etcd yet. The revision is bumped past anything a client may have
// seen, and the history before it marked compacted, so that no watcher
// mistakes the restored state for a continuation of what it watched.
func Restore(snapshotPath, dataDir string) error {
	out := filepath.Join(dataDir, store.EmbeddedMemberDir)
	if _, err := os.Stat(out); err == nil {
		return fmt.Errorf("backup: %s already holds an etcd; restore into a new --data-dir", dataDir)
	}
	if err := os.MkdirAll(dataDir, 0o700); err != nil {
		return fmt.Errorf("backup: %w", err)
	}
	if err := store.RestoreSnapshot(snapshotPath, dataDir, revisionBump); err != nil {
		return fmt.Errorf("backup: %w", err)
	}
	return nil
}
