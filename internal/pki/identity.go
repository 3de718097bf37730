package pki

import (
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
)

// Identity is who a certificate names: its common name, its role and its
// serial number (lowercase hexadecimal, no separators).
type Identity struct {
	CommonName string
	Role       Role
	Serial     string
}

// IdentityFromCert reads the identity stored in c. It checks the shape only
// (non-empty common name, exactly one OrganizationalUnit holding a known
// role); the caller must have verified c's chain.
func IdentityFromCert(c *x509.Certificate) (Identity, error) {
	if c == nil {
		return Identity{}, fmt.Errorf("identity: %w: nil certificate", ErrInvalid)
	}
	cn := c.Subject.CommonName
	if cn == "" {
		return Identity{}, fmt.Errorf("identity: %w: certificate has no common name", ErrInvalid)
	}
	ou := c.Subject.OrganizationalUnit
	if len(ou) != 1 {
		return Identity{}, fmt.Errorf("identity %q: %w: want exactly one organizational unit (the role), have %d", cn, ErrInvalid, len(ou))
	}
	role, err := ParseRole(ou[0])
	if err != nil {
		return Identity{}, fmt.Errorf("identity %q: %w", cn, err)
	}
	serial := ""
	if c.SerialNumber != nil {
		serial = c.SerialNumber.Text(16)
	}
	return Identity{CommonName: cn, Role: role, Serial: serial}, nil
}

// PeerIdentity returns the identity of the peer of a TLS connection, taken
// from the leaf of the first verified chain. It fails with ErrNoPeerCert when
// the peer presented no certificate that the handshake verified.
func PeerIdentity(state *tls.ConnectionState) (Identity, error) {
	if state == nil || len(state.VerifiedChains) == 0 || len(state.VerifiedChains[0]) == 0 {
		return Identity{}, ErrNoPeerCert
	}
	return IdentityFromCert(state.VerifiedChains[0][0])
}

// WriteIdentity writes dir/name.crt (0644) and dir/name.key (0600),
// creating dir with mode 0700 when missing. It checks that certPEM and keyPEM
// parse and belong together, and replaces existing files atomically one by
// one (key first).
func WriteIdentity(dir, name string, certPEM, keyPEM []byte) error {
	if err := ValidateName("identity name", name); err != nil {
		return fmt.Errorf("write identity: %w", err)
	}
	certs, err := parseCerts(name+".crt", certPEM)
	if err != nil {
		return fmt.Errorf("write identity: %w", err)
	}
	key, err := parseKey(name+".key", keyPEM)
	if err != nil {
		return fmt.Errorf("write identity: %w", err)
	}
	if !keyMatches(certs[0], key) {
		return fmt.Errorf("write identity %q: %w: key does not match certificate", name, ErrInvalid)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("write identity: %w", err)
	}
	if err := writeReplace(filepath.Join(dir, name+".key"), keyPEM, 0o600); err != nil {
		return fmt.Errorf("write identity: %w", err)
	}
	if err := writeReplace(filepath.Join(dir, name+".crt"), certPEM, 0o644); err != nil {
		return fmt.Errorf("write identity: %w", err)
	}
	return nil
}

// HashCA returns "sha256:<hex>" of the SubjectPublicKeyInfo of the first
// certificate in caPEM, the form kubeadm uses to pin a CA in join tokens. It
// returns "" when caPEM holds no parsable certificate.
func HashCA(caPEM []byte) string {
	certs, err := parseCerts("ca", caPEM)
	if err != nil {
		return ""
	}
	return HashCert(certs[0])
}

// HashCert returns "sha256:<hex>" of c's SubjectPublicKeyInfo.
func HashCert(c *x509.Certificate) string {
	sum := sha256.Sum256(c.RawSubjectPublicKeyInfo)
	return "sha256:" + hex.EncodeToString(sum[:])
}

// ParseCertPEM returns the first certificate of a PEM block sequence.
func ParseCertPEM(data []byte) (*x509.Certificate, error) {
	certs, err := parseCerts("certificate", data)
	if err != nil {
		return nil, err
	}
	return certs[0], nil
}

// ParseCertsPEM returns every certificate of a PEM block sequence.
func ParseCertsPEM(data []byte) ([]*x509.Certificate, error) {
	return parseCerts("certificates", data)
}
