package fedstore

import (
	"context"
	"fmt"
	"log/slog"
	"path/filepath"
	"time"

	"github.com/persys-dev/compute/internal/pki"
	"github.com/persys-dev/compute/internal/store"
)

// OpenOptions say where the federation's etcd is.
type OpenOptions struct {
	// Dir is the federation's data folder: the embedded etcd lives in
	// Dir/etcd, locked with a store CA of its own in Dir/store-pki.
	Dir string
	// Endpoints, when set, replace the embedded etcd; CA, Cert and Key
	// are the client identity for them.
	Endpoints     []string
	CA, Cert, Key string
	Prefix        string
	Logger        *slog.Logger
}

// Open returns a Store over the external etcd of o, or over an embedded
// one it starts; close releases the client and stops the embedded etcd.
// Opening here keeps the etcd client out of the federation's other
// packages.
func Open(o OpenOptions) (st *Store, closeFn func(), err error) {
	if len(o.Endpoints) > 0 {
		tlsCfg, err := pki.ClientTLS(pki.Files{CA: o.CA, Cert: o.Cert, Key: o.Key}, "")
		if err != nil {
			return nil, nil, fmt.Errorf("--etcd-ca/--etcd-cert/--etcd-key: %w", err)
		}
		cli, err := store.Connect(o.Endpoints, tlsCfg)
		if err != nil {
			return nil, nil, fmt.Errorf("--etcd-endpoints: %w", err)
		}
		return New(cli, o.Prefix, 0), func() { _ = cli.Close() }, nil
	}
	sf, err := pki.EnsureStoreIdentity(filepath.Join(o.Dir, "store-pki"), time.Now())
	if err != nil {
		return nil, nil, err
	}
	emb, err := store.StartEmbedded(store.EmbeddedOptions{
		Dir: filepath.Join(o.Dir, "etcd"), Logger: o.Logger,
		TLS: &store.EmbeddedTLS{CAFile: sf.CA, CertFile: sf.Cert, KeyFile: sf.Key},
	})
	if err != nil {
		return nil, nil, fmt.Errorf("embedded etcd in %s: %w", filepath.Join(o.Dir, "etcd"), err)
	}
	cli := emb.LocalClient()
	return New(cli, o.Prefix, 0), func() { _ = cli.Close(); emb.Close() }, nil
}

// Ready reports whether the store answers a read within two seconds.
func (s *Store) Ready(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	_, err := s.cli.Get(ctx, s.prefix+"/health-probe")
	return err
}
