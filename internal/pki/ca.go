package pki

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// Defaults for certificate lifetimes.
const (
	DefaultCAValidity   = 10 * 365 * 24 * time.Hour
	DefaultLeafValidity = 365 * 24 * time.Hour
)

// organization is the Subject Organization of every certificate issued here.
const organization = "Persys Compute"

// backdate is how far NotBefore lies in the past, to absorb clock skew.
const backdate = time.Minute

// CA is a loaded certificate authority: its certificate and private key.
type CA struct {
	Cert    *x509.Certificate
	Key     *ecdsa.PrivateKey
	CertPEM []byte
}

// InitCA creates a new self-signed CA in dir (created 0700 when missing),
// writing dir/ca.crt (0644), dir/ca.key (0600) and, when missing, the
// cluster id (dir/cluster-id, see EnsureClusterID). It fails with an error
// wrapping ErrExists if either file is already there, so it never replaces
// a cluster's CA.
func InitCA(dir, commonName string, validity time.Duration) (*CA, error) {
	if dir == "" {
		return nil, fmt.Errorf("ca dir: %w: empty", ErrInvalid)
	}
	commonName = strings.TrimSpace(commonName)
	if err := validateCommonName("ca common name", commonName); err != nil {
		return nil, err
	}
	if validity <= 0 {
		return nil, fmt.Errorf("ca validity %s: %w: must be positive", validity, ErrInvalid)
	}
	certPath, keyPath := filepath.Join(dir, CACertFile), filepath.Join(dir, CAKeyFile)
	for _, p := range []string{certPath, keyPath} {
		if _, err := os.Lstat(p); err == nil {
			return nil, fmt.Errorf("init ca: %s: %w", p, ErrExists)
		} else if !errors.Is(err, os.ErrNotExist) {
			return nil, fmt.Errorf("init ca: %w", err)
		}
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("init ca: %w", err)
	}

	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("init ca: generate key: %w", err)
	}
	serial, err := newSerial()
	if err != nil {
		return nil, fmt.Errorf("init ca: %w", err)
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: commonName, Organization: []string{organization}},
		NotBefore:             now.Add(-backdate),
		NotAfter:              now.Add(validity),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
		// One intermediate at most: the cross-signed successor that
		// RotateCA makes, through which peers that still trust only this
		// CA verify certificates of the next one.
		MaxPathLen: 1,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, fmt.Errorf("init ca: create certificate: %w", err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("init ca: parse certificate: %w", err)
	}
	keyPEM, err := encodeKey(key)
	if err != nil {
		return nil, fmt.Errorf("init ca: %w", err)
	}
	certPEM := encodeCert(der)
	if err := writeNew(keyPath, keyPEM, 0o600); err != nil {
		return nil, fmt.Errorf("init ca: %w", err)
	}
	if err := writeNew(certPath, certPEM, 0o644); err != nil {
		os.Remove(keyPath)
		return nil, fmt.Errorf("init ca: %w", err)
	}
	// The cluster is born with its CA; an id left in dir is kept.
	if _, err := EnsureClusterID(dir); err != nil {
		return nil, fmt.Errorf("init ca: %w", err)
	}
	return &CA{Cert: cert, Key: key, CertPEM: certPEM}, nil
}

// LoadCA reads dir/ca.crt and dir/ca.key and checks that the certificate is
// a CA and that the key belongs to it.
func LoadCA(dir string) (*CA, error) {
	certPath, keyPath := filepath.Join(dir, CACertFile), filepath.Join(dir, CAKeyFile)
	certData, err := readFile(certPath)
	if err != nil {
		return nil, fmt.Errorf("load ca: %w", err)
	}
	certs, err := parseCerts(certPath, certData)
	if err != nil {
		return nil, fmt.Errorf("load ca: %w", err)
	}
	cert := certs[0]
	if !cert.IsCA {
		return nil, fmt.Errorf("load ca: %s: %w: certificate is not a CA", certPath, ErrInvalid)
	}
	keyData, err := readFile(keyPath)
	if err != nil {
		return nil, fmt.Errorf("load ca: %w", err)
	}
	key, err := parseKey(keyPath, keyData)
	if err != nil {
		return nil, fmt.Errorf("load ca: %w", err)
	}
	if !keyMatches(cert, key) {
		return nil, fmt.Errorf("load ca: %s: %w: key does not match %s", keyPath, ErrInvalid, certPath)
	}
	return &CA{Cert: cert, Key: key, CertPEM: encodeCert(cert.Raw)}, nil
}

// IssueRequest describes one certificate to issue.
type IssueRequest struct {
	// CommonName is the identity's name (required; for an agent, its node id).
	CommonName string
	// Role is stored as the single OrganizationalUnit (required).
	Role Role
	// DNSNames and IPs are the subject alternative names a server
	// certificate is valid for.
	DNSNames []string
	IPs      []net.IP
	// Validity is the lifetime; zero means DefaultLeafValidity. NotAfter is
	// capped at the CA's own NotAfter.
	Validity time.Duration
}

// Issue creates a new P-256 key and a certificate for it signed by ca.
// Daemon roles get both ServerAuth and ClientAuth extended key usages, user
// roles ClientAuth only.
func (ca *CA) Issue(req IssueRequest) (certPEM, keyPEM []byte, err error) {
	if ca == nil || ca.Cert == nil || ca.Key == nil {
		return nil, nil, fmt.Errorf("issue: %w: CA not loaded", ErrInvalid)
	}
	if err := req.validate(); err != nil {
		return nil, nil, fmt.Errorf("issue: %w", err)
	}
	key, err := NewKey()
	if err != nil {
		return nil, nil, fmt.Errorf("issue: %w", err)
	}
	der, err := ca.sign(&key.PublicKey, req)
	if err != nil {
		return nil, nil, fmt.Errorf("issue: %w", err)
	}
	keyPEM, err = encodeKey(key)
	if err != nil {
		return nil, nil, fmt.Errorf("issue: %w", err)
	}
	return encodeCert(der), keyPEM, nil
}

// Verify checks that c chains to ca (at the current time, any usage) and
// returns the identity it carries.
func (ca *CA) Verify(c *x509.Certificate) (Identity, error) {
	if c == nil {
		return Identity{}, fmt.Errorf("verify: %w: nil certificate", ErrInvalid)
	}
	pool := x509.NewCertPool()
	pool.AddCert(ca.Cert)
	if _, err := c.Verify(x509.VerifyOptions{Roots: pool, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}}); err != nil {
		return Identity{}, fmt.Errorf("verify %q: %w", c.Subject.CommonName, err)
	}
	return IdentityFromCert(c)
}

func (r IssueRequest) validate() error {
	if err := validateCommonName("common name", strings.TrimSpace(r.CommonName)); err != nil {
		return err
	}
	if !r.Role.Valid() {
		return fmt.Errorf("role %q: %w: want one of %s", r.Role, ErrInvalid, roleList())
	}
	for i, d := range r.DNSNames {
		if err := validateDNSName(d); err != nil {
			return fmt.Errorf("dns name %d: %w", i, err)
		}
	}
	for i, ip := range r.IPs {
		if len(ip) != net.IPv4len && len(ip) != net.IPv6len {
			return fmt.Errorf("ip %d: %w: not an IPv4 or IPv6 address", i, ErrInvalid)
		}
	}
	if r.Validity < 0 {
		return fmt.Errorf("validity %s: %w: must not be negative", r.Validity, ErrInvalid)
	}
	return nil
}

// validateCommonName accepts 1 to 64 printable characters (the X.509 upper
// bound for a common name).
func validateCommonName(field, cn string) error {
	if cn == "" {
		return fmt.Errorf("%s: %w: empty", field, ErrInvalid)
	}
	if len(cn) > 64 {
		return fmt.Errorf("%s %q: %w: longer than 64 bytes", field, cn, ErrInvalid)
	}
	for _, c := range cn {
		if c < 0x20 || c == 0x7f {
			return fmt.Errorf("%s %q: %w: control character", field, cn, ErrInvalid)
		}
	}
	return nil
}

// validateDNSName accepts a host name of letters, digits and hyphens in
// dot-separated labels of 1 to 63 characters, with an optional leading "*.".
func validateDNSName(name string) error {
	if name == "" {
		return fmt.Errorf("%w: empty", ErrInvalid)
	}
	if len(name) > 253 {
		return fmt.Errorf("%q: %w: longer than 253 characters", name, ErrInvalid)
	}
	labels := strings.Split(strings.TrimPrefix(name, "*."), ".")
	for _, l := range labels {
		if l == "" || len(l) > 63 || l[0] == '-' || l[len(l)-1] == '-' {
			return fmt.Errorf("%q: %w: bad label %q", name, ErrInvalid, l)
		}
		for _, c := range l {
			if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-') {
				return fmt.Errorf("%q: %w: character %q not allowed", name, ErrInvalid, c)
			}
		}
	}
	return nil
}

// newSerial returns a random positive 128-bit serial number.
func newSerial() (*big.Int, error) {
	limit := new(big.Int).Lsh(big.NewInt(1), 128)
	for {
		n, err := rand.Int(rand.Reader, limit)
		if err != nil {
			return nil, fmt.Errorf("serial number: %w", err)
		}
		if n.Sign() > 0 {
			return n, nil
		}
	}
}
