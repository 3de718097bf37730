package store

import (
	"context"
	"crypto/tls"
	"fmt"
	"path/filepath"

	"go.etcd.io/etcd/etcdutl/v3/snapshot"
	"go.uber.org/zap"
)

// What StartEmbedded names its single member; RestoreSnapshot writes a data
// dir under the same names so that StartEmbedded opens it.
const (
	// EmbeddedMemberDir is the folder, inside EmbeddedOptions.Dir, of
	// etcd's own data.
	EmbeddedMemberDir    = "member-data"
	embeddedName         = "persys"
	embeddedClusterToken = "persys-embedded"
)

// SaveSnapshot writes a snapshot of the etcd at endpoints to path and
// returns the etcd version that made it. tlsCfg is nil only for plaintext
// endpoints. etcd writes path.part and renames it once complete.
func SaveSnapshot(ctx context.Context, endpoints []string, tlsCfg *tls.Config, path string) (string, error) {
	if len(endpoints) == 0 {
		return "", fmt.Errorf("store: snapshot: endpoints: %w: at least one required", ErrInvalid)
	}
	cfg := clientConfig(endpoints, tlsCfg, nil)
	version, err := snapshot.NewV3(zap.NewNop()).Save(ctx, cfg, path)
	if err != nil {
		return "", fmt.Errorf("store: snapshot %v to %s: %w", endpoints, path, err)
	}
	return version, nil
}

// RestoreSnapshot makes dataDir's embedded etcd from the snapshot at
// snapshotPath; dataDir must not hold one yet. revisionBump is added to
// the snapshot's revision and the history before it marked compacted, so
// that no watcher mistakes the restored state for a continuation of what
// it watched.
func RestoreSnapshot(snapshotPath, dataDir string, revisionBump uint64) error {
	// The peer URL is replaced by the embedded server's own at its first
	// start.
	const peer = "https://127.0.0.1:2380"
	err := snapshot.NewV3(zap.NewNop()).Restore(snapshot.RestoreConfig{
		SnapshotPath:        snapshotPath,
		Name:                embeddedName,
		OutputDataDir:       filepath.Join(dataDir, EmbeddedMemberDir),
		PeerURLs:            []string{peer},
		InitialCluster:      embeddedName + "=" + peer,
		InitialClusterToken: embeddedClusterToken,
		RevisionBump:        revisionBump,
		MarkCompacted:       revisionBump > 0,
	})
	if err != nil {
		return fmt.Errorf("store: restore %s into %s: %w", snapshotPath, dataDir, err)
	}
	return nil
}
