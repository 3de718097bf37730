package pki

import (
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"time"
)

// Files of the store's own identity in its folder.
const (
	StoreCertFile = "etcd.crt"
	StoreKeyFile  = "etcd.key"
	// storeCAName is the common name of the store's CA.
	storeCAName = "persys-store-ca"
	// storeRenewBefore is how long before expiry the store's certificate
	// is issued again (at the scheduler's next start).
	storeRenewBefore = 30 * 24 * time.Hour
)

// EnsureStoreIdentity returns the identity of the embedded etcd, kept in
// dir (mode 0700, created on first use): a CA of the store's own and one
// certificate it issued, which etcd serves on loopback and which is the
// only client certificate etcd accepts. The cluster's CA never signs for
// the store, so no agent, gateway or user certificate opens it; only
// whoever can read dir (the scheduler's user) can. The certificate is
// issued again when it expires within 30 days.
func EnsureStoreIdentity(dir string, now time.Time) (Files, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return Files{}, fmt.Errorf("store identity: %w", err)
	}
	if err := os.Chmod(dir, 0o700); err != nil {
		return Files{}, fmt.Errorf("store identity: %w", err)
	}
	ca, err := LoadCA(dir)
	if errors.Is(err, os.ErrNotExist) {
		ca, err = InitCA(dir, storeCAName, DefaultCAValidity)
	}
	if err != nil {
		return Files{}, fmt.Errorf("store identity: %w", err)
	}
	files := Files{CA: filepath.Join(dir, CACertFile), Cert: filepath.Join(dir, StoreCertFile), Key: filepath.Join(dir, StoreKeyFile)}
	if certs, err := ReadCertFile(files.Cert); err == nil && len(certs) > 0 && now.Add(storeRenewBefore).Before(certs[0].NotAfter) {
		if _, err := ca.Verify(certs[0]); err == nil {
			return files, nil
		}
	}
	certPEM, keyPEM, err := ca.Issue(IssueRequest{CommonName: "persys-store", Role: RoleScheduler,
		DNSNames: []string{"localhost"}, IPs: []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback}})
	if err != nil {
		return Files{}, fmt.Errorf("store identity: %w", err)
	}
	if err := writeReplace(files.Key, keyPEM, 0o600); err != nil {
		return Files{}, fmt.Errorf("store identity: %w", err)
	}
	if err := writeReplace(files.Cert, certPEM, 0o600); err != nil {
		return Files{}, fmt.Errorf("store identity: %w", err)
	}
	return files, nil
}
