package realsched

import (
	"path/filepath"
	"testing"

	"github.com/persys-dev/compute/internal/pki"
)

// IssueUser issues a client certificate of the cluster's CA for a user
// called name with role, as `persys ca issue` does, and returns its files.
func (c *Cluster) IssueUser(t testing.TB, name string, role pki.Role) pki.Files {
	t.Helper()
	ca, err := pki.LoadCA(c.Bundle.Dir)
	if err != nil {
		t.Fatalf("realsched: load ca: %v", err)
	}
	certPEM, keyPEM, err := ca.Issue(pki.IssueRequest{CommonName: name, Role: role})
	if err != nil {
		t.Fatalf("realsched: issue %s: %v", name, err)
	}
	if err := pki.WriteIdentity(c.Bundle.Dir, name, certPEM, keyPEM); err != nil {
		t.Fatalf("realsched: write identity %s: %v", name, err)
	}
	return pki.Files{CA: c.Bundle.CA, Cert: filepath.Join(c.Bundle.Dir, name+".crt"), Key: filepath.Join(c.Bundle.Dir, name+".key")}
}
