// Package pki is the built-in certificate authority of Persys Compute: it
// creates and loads the cluster CA (ECDSA P-256), issues certificates that
// carry a role, reads identities back from verified peers, and builds the
// mutual-TLS configurations every hop uses.
//
// A certificate's identity is its Subject CommonName plus exactly one
// OrganizationalUnit holding the Role. Callers must only trust an Identity
// taken from a chain that TLS (or CA.Verify) has verified; IdentityFromCert
// itself checks nothing but the certificate's shape.
//
// The identity lifecycle lives here too: CSRs (NewCSR, ParseCSR,
// CA.SignCSR), CA-hash pinning for joins (HashCert, PinnedClientTLS), the
// reloadable Holder that TLS reads at every handshake, the Renewer that
// renews before expiry, CA rotation with an overlap bundle (RotateCA,
// LoadBundle) and revocation checks (RevocationChecker, RevocationSet).
package pki

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
)

// Sentinel errors; match them with errors.Is.
var (
	// ErrExists means a file that would be created already exists.
	ErrExists = errors.New("already exists")
	// ErrInvalid means an argument or a file's content was rejected.
	ErrInvalid = errors.New("invalid")
	// ErrNoPeerCert means a TLS peer presented no verified certificate.
	ErrNoPeerCert = errors.New("no verified peer certificate")
)

// MaxFileSize bounds every certificate or key file read from disk.
const MaxFileSize = 1 << 20

// File names inside a CA directory.
const (
	CACertFile = "ca.crt"
	CAKeyFile  = "ca.key"
)

// Role is what a certificate's holder may do; it is stored in the
// certificate's single OrganizationalUnit.
type Role string

// Known roles. Scheduler, gateway and agent are daemon roles (their
// certificates serve and dial); admin, operator and viewer are user roles
// (client certificates only).
const (
	RoleScheduler Role = "scheduler"
	RoleGateway   Role = "gateway"
	RoleAgent     Role = "agent"
	RoleAdmin     Role = "admin"
	RoleOperator  Role = "operator"
	RoleViewer    Role = "viewer"
)

// Roles lists every known role, daemon roles first.
func Roles() []Role {
	return []Role{RoleScheduler, RoleGateway, RoleAgent, RoleAdmin, RoleOperator, RoleViewer}
}

// Valid reports whether r is a known role.
func (r Role) Valid() bool {
	switch r {
	case RoleScheduler, RoleGateway, RoleAgent, RoleAdmin, RoleOperator, RoleViewer:
		return true
	}
	return false
}

// IsDaemon reports whether r is a component role whose certificate is used
// both as a server and as a client.
func (r Role) IsDaemon() bool {
	return r == RoleScheduler || r == RoleGateway || r == RoleAgent
}

// ParseRole returns the Role named s or an ErrInvalid error.
func ParseRole(s string) (Role, error) {
	r := Role(s)
	if !r.Valid() {
		return "", fmt.Errorf("role %q: %w: want one of %s", s, ErrInvalid, roleList())
	}
	return r, nil
}

func roleList() string {
	var names []string
	for _, r := range Roles() {
		names = append(names, string(r))
	}
	return strings.Join(names, ", ")
}

// ValidateName checks that name can be used as a file name stem for an
// identity: 1 to 64 characters of [A-Za-z0-9._-], not starting with '.' or
// '-'. The field argument names the input in the error.
func ValidateName(field, name string) error {
	if name == "" {
		return fmt.Errorf("%s: %w: empty", field, ErrInvalid)
	}
	if len(name) > 64 {
		return fmt.Errorf("%s %q: %w: longer than 64 characters", field, name, ErrInvalid)
	}
	if name[0] == '.' || name[0] == '-' {
		return fmt.Errorf("%s %q: %w: must not start with '.' or '-'", field, name, ErrInvalid)
	}
	for _, c := range name {
		ok := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '_' || c == '-'
		if !ok {
			return fmt.Errorf("%s %q: %w: character %q not allowed (use A-Z a-z 0-9 . _ -)", field, name, ErrInvalid, c)
		}
	}
	return nil
}

// readFile reads at most MaxFileSize bytes of path.
func readFile(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, MaxFileSize+1))
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", path, err)
	}
	if len(data) > MaxFileSize {
		return nil, fmt.Errorf("%s: %w: larger than %d bytes", path, ErrInvalid, MaxFileSize)
	}
	return data, nil
}

// parseCerts decodes every CERTIFICATE block of data; src names the input
// in errors. Other block types are skipped.
func parseCerts(src string, data []byte) ([]*x509.Certificate, error) {
	var certs []*x509.Certificate
	rest := data
	for {
		var block *pem.Block
		block, rest = pem.Decode(rest)
		if block == nil {
			break
		}
		if block.Type != "CERTIFICATE" {
			continue
		}
		c, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			return nil, fmt.Errorf("%s: %w: certificate %d: %w", src, ErrInvalid, len(certs)+1, err)
		}
		certs = append(certs, c)
	}
	if len(certs) == 0 {
		return nil, fmt.Errorf("%s: %w: no PEM block of type CERTIFICATE", src, ErrInvalid)
	}
	return certs, nil
}

// parseKey decodes the first private key block of data (PKCS#8 or SEC 1)
// and requires an ECDSA key.
func parseKey(src string, data []byte) (*ecdsa.PrivateKey, error) {
	rest := data
	for {
		var block *pem.Block
		block, rest = pem.Decode(rest)
		if block == nil {
			return nil, fmt.Errorf("%s: %w: no PEM block of type PRIVATE KEY or EC PRIVATE KEY", src, ErrInvalid)
		}
		switch block.Type {
		case "EC PRIVATE KEY":
			k, err := x509.ParseECPrivateKey(block.Bytes)
			if err != nil {
				return nil, fmt.Errorf("%s: %w: %w", src, ErrInvalid, err)
			}
			return k, nil
		case "PRIVATE KEY":
			k, err := x509.ParsePKCS8PrivateKey(block.Bytes)
			if err != nil {
				return nil, fmt.Errorf("%s: %w: %w", src, ErrInvalid, err)
			}
			ek, ok := k.(*ecdsa.PrivateKey)
			if !ok {
				return nil, fmt.Errorf("%s: %w: private key is %T, want ECDSA", src, ErrInvalid, k)
			}
			return ek, nil
		}
	}
}

func encodeCert(der []byte) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
}

func encodeKey(k *ecdsa.PrivateKey) ([]byte, error) {
	der, err := x509.MarshalPKCS8PrivateKey(k)
	if err != nil {
		return nil, fmt.Errorf("marshal private key: %w", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), nil
}

// keyMatches reports whether k is the private half of c's public key.
func keyMatches(c *x509.Certificate, k *ecdsa.PrivateKey) bool {
	pub, ok := c.PublicKey.(*ecdsa.PublicKey)
	return ok && pub.Equal(&k.PublicKey)
}

// writeNew creates path with perm and fails with ErrExists if it exists.
func writeNew(path string, data []byte, perm os.FileMode) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, perm)
	if err != nil {
		if errors.Is(err, os.ErrExist) {
			return fmt.Errorf("%s: %w", path, ErrExists)
		}
		return err
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		os.Remove(path)
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := f.Close(); err != nil {
		os.Remove(path)
		return fmt.Errorf("close %s: %w", path, err)
	}
	return nil
}

// writeReplace writes path atomically (temporary file and rename) with perm.
func writeReplace(path string, data []byte, perm os.FileMode) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp*")
	if err != nil {
		return err
	}
	name := tmp.Name()
	fail := func(err error) error {
		tmp.Close()
		os.Remove(name)
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := tmp.Chmod(perm); err != nil {
		return fail(err)
	}
	if _, err := io.Copy(tmp, bytes.NewReader(data)); err != nil {
		return fail(err)
	}
	if err := tmp.Sync(); err != nil {
		return fail(err)
	}
	if err := tmp.Close(); err != nil {
		os.Remove(name)
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := os.Rename(name, path); err != nil {
		os.Remove(name)
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}

// ReadCertFile reads the certificates of a PEM file (at most MaxFileSize
// bytes), with errors naming the file. The first certificate comes first.
func ReadCertFile(path string) ([]*x509.Certificate, error) {
	data, err := readFile(path)
	if err != nil {
		return nil, err
	}
	return parseCerts(path, data)
}
