package pki

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"
)

// ErrRevoked means a peer presented a certificate that has been revoked.
var ErrRevoked = errors.New("certificate revoked")

// RevocationChecker tells whether a verified certificate has been revoked.
// Implementations must be safe for concurrent use and fast: they run in
// every TLS handshake.
type RevocationChecker interface {
	Revoked(cert *x509.Certificate) bool
}

// Revocation is one revoked identity: exactly one of Serial (lowercase hex,
// as in Identity.Serial), NodeID or User is set. Revoking a node or a user
// revokes every certificate issued for that name (agent role, or a user
// role) at or before At; later ones, such as a node that joins again with
// a new token, are not affected.
type Revocation struct {
	Serial, NodeID, User string
	At                   time.Time
}

// RevocationSet is an in-memory RevocationChecker. The zero value is not
// usable; call NewRevocationSet.
type RevocationSet struct {
	mu      sync.RWMutex
	serials map[string]bool
	nodes   map[string]time.Time
	users   map[string]time.Time
}

// NewRevocationSet returns an empty set.
func NewRevocationSet() *RevocationSet {
	return &RevocationSet{serials: map[string]bool{}, nodes: map[string]time.Time{}, users: map[string]time.Time{}}
}

// Replace makes list the whole content of the set.
func (r *RevocationSet) Replace(list []Revocation) {
	serials, nodes, users := map[string]bool{}, map[string]time.Time{}, map[string]time.Time{}
	for _, rv := range list {
		addTo(serials, nodes, users, rv)
	}
	r.mu.Lock()
	r.serials, r.nodes, r.users = serials, nodes, users
	r.mu.Unlock()
}

// Add records one revocation.
func (r *RevocationSet) Add(rv Revocation) {
	r.mu.Lock()
	addTo(r.serials, r.nodes, r.users, rv)
	r.mu.Unlock()
}

func addTo(serials map[string]bool, nodes, users map[string]time.Time, rv Revocation) {
	switch {
	case rv.Serial != "":
		serials[strings.ToLower(rv.Serial)] = true
	case rv.NodeID != "":
		if rv.At.After(nodes[rv.NodeID]) {
			nodes[rv.NodeID] = rv.At
		}
	case rv.User != "":
		if rv.At.After(users[rv.User]) {
			users[rv.User] = rv.At
		}
	}
}

// Len returns the number of entries.
func (r *RevocationSet) Len() int {
	r.mu.RLock()
	defer r.mu.RUnlock()
	return len(r.serials) + len(r.nodes) + len(r.users)
}

// Revoked implements RevocationChecker.
func (r *RevocationSet) Revoked(c *x509.Certificate) bool {
	if c == nil {
		return false
	}
	r.mu.RLock()
	defer r.mu.RUnlock()
	if c.SerialNumber != nil && r.serials[c.SerialNumber.Text(16)] {
		return true
	}
	if len(r.nodes) == 0 && len(r.users) == 0 {
		return false
	}
	id, err := IdentityFromCert(c)
	if err != nil {
		return false
	}
	var at time.Time
	var ok bool
	switch {
	case id.Role == RoleAgent:
		at, ok = r.nodes[id.CommonName]
	case !id.Role.IsDaemon():
		at, ok = r.users[id.CommonName]
	}
	return ok && !IssuedAt(c).After(at)
}

// NodeRevokedAt returns when node id was revoked as a whole, if it was.
func (r *RevocationSet) NodeRevokedAt(id string) (time.Time, bool) {
	r.mu.RLock()
	defer r.mu.RUnlock()
	at, ok := r.nodes[id]
	return at, ok
}

// VerifyConnection returns a tls.Config.VerifyConnection hook that refuses
// a peer whose leaf certificate rc reports revoked. A nil rc accepts all.
// A peer without a certificate passes: requiring one is ClientAuth's job.
func VerifyConnection(rc RevocationChecker) func(tls.ConnectionState) error {
	return func(cs tls.ConnectionState) error {
		if rc == nil || len(cs.PeerCertificates) == 0 {
			return nil
		}
		c := cs.PeerCertificates[0]
		if rc.Revoked(c) {
			return fmt.Errorf("peer %q serial %s: %w", c.Subject.CommonName, c.SerialNumber.Text(16), ErrRevoked)
		}
		return nil
	}
}

var _ RevocationChecker = (*RevocationSet)(nil)
