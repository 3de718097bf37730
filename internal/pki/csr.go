package pki

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"net"
	"strings"
	"time"
)

// MaxCSRSize bounds a PEM certificate request accepted from the network.
const MaxCSRSize = 16 << 10

// NewKey generates a fresh ECDSA P-256 private key. Keys are made where
// they are used and never leave that host.
func NewKey() (*ecdsa.PrivateKey, error) {
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("generate key: %w", err)
	}
	return k, nil
}

// EncodeKey returns k as a PKCS#8 PEM block.
func EncodeKey(k *ecdsa.PrivateKey) ([]byte, error) { return encodeKey(k) }

// NewCSR returns a PEM certificate request for commonName signed by key
// (the request proves possession of the key).
func NewCSR(commonName string, key *ecdsa.PrivateKey) ([]byte, error) {
	if err := validateCommonName("csr common name", commonName); err != nil {
		return nil, err
	}
	if key == nil {
		return nil, fmt.Errorf("csr key: %w: nil", ErrInvalid)
	}
	der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{
		Subject: pkix.Name{CommonName: commonName, Organization: []string{organization}},
	}, key)
	if err != nil {
		return nil, fmt.Errorf("create csr: %w", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der}), nil
}

// NewServerCSR is NewCSR that also asks for DNS and IP subject
// alternative names (a daemon's server certificate).
func NewServerCSR(commonName string, dns []string, ips []net.IP, key *ecdsa.PrivateKey) ([]byte, error) {
	if err := validateCommonName("csr common name", commonName); err != nil {
		return nil, err
	}
	if key == nil {
		return nil, fmt.Errorf("csr key: %w: nil", ErrInvalid)
	}
	for i, d := range dns {
		if err := validateDNSName(d); err != nil {
			return nil, fmt.Errorf("csr dns name %d: %w", i, err)
		}
	}
	der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{
		Subject:     pkix.Name{CommonName: commonName, Organization: []string{organization}},
		DNSNames:    dns,
		IPAddresses: ips,
	}, key)
	if err != nil {
		return nil, fmt.Errorf("create csr: %w", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der}), nil
}

// ParseCSR decodes one PEM certificate request (at most MaxCSRSize bytes),
// checks its self-signature, that its key is ECDSA P-256 and that its
// common name is well formed. Errors wrap ErrInvalid and name the field.
func ParseCSR(csrPEM []byte) (*x509.CertificateRequest, error) {
	if len(csrPEM) == 0 {
		return nil, fmt.Errorf("csr_pem: %w: empty", ErrInvalid)
	}
	if len(csrPEM) > MaxCSRSize {
		return nil, fmt.Errorf("csr_pem: %w: larger than %d bytes", ErrInvalid, MaxCSRSize)
	}
	block, _ := pem.Decode(csrPEM)
	if block == nil || block.Type != "CERTIFICATE REQUEST" {
		return nil, fmt.Errorf("csr_pem: %w: no PEM block of type CERTIFICATE REQUEST", ErrInvalid)
	}
	csr, err := x509.ParseCertificateRequest(block.Bytes)
	if err != nil {
		return nil, fmt.Errorf("csr_pem: %w: %w", ErrInvalid, err)
	}
	if err := csr.CheckSignature(); err != nil {
		return nil, fmt.Errorf("csr_pem: %w: signature does not verify: %w", ErrInvalid, err)
	}
	pub, ok := csr.PublicKey.(*ecdsa.PublicKey)
	if !ok || pub.Curve != elliptic.P256() {
		return nil, fmt.Errorf("csr_pem: %w: public key must be ECDSA P-256, got %T", ErrInvalid, csr.PublicKey)
	}
	if err := validateCommonName("csr common name", strings.TrimSpace(csr.Subject.CommonName)); err != nil {
		return nil, fmt.Errorf("csr_pem: %w", err)
	}
	return csr, nil
}

// SignCSR issues a certificate for the CSR's public key with the identity
// in req (common name, role, names, validity); the CSR's own subject and
// extensions are ignored, so the caller decides who the holder is. The
// caller must have checked csr with ParseCSR.
func (ca *CA) SignCSR(csr *x509.CertificateRequest, req IssueRequest) ([]byte, error) {
	if csr == nil {
		return nil, fmt.Errorf("sign csr: %w: nil request", ErrInvalid)
	}
	pub, ok := csr.PublicKey.(*ecdsa.PublicKey)
	if !ok {
		return nil, fmt.Errorf("sign csr: %w: public key must be ECDSA", ErrInvalid)
	}
	der, err := ca.sign(pub, req)
	if err != nil {
		return nil, fmt.Errorf("sign csr: %w", err)
	}
	return encodeCert(der), nil
}

// sign creates a certificate for pub carrying req's identity.
func (ca *CA) sign(pub *ecdsa.PublicKey, req IssueRequest) ([]byte, error) {
	if ca == nil || ca.Cert == nil || ca.Key == nil {
		return nil, fmt.Errorf("%w: CA not loaded", ErrInvalid)
	}
	if err := req.validate(); err != nil {
		return nil, err
	}
	validity := req.Validity
	if validity == 0 {
		validity = DefaultLeafValidity
	}
	now := time.Now()
	notAfter := now.Add(validity)
	if notAfter.After(ca.Cert.NotAfter) {
		notAfter = ca.Cert.NotAfter
	}
	if !notAfter.After(now) {
		return nil, fmt.Errorf("%w: CA expired at %s", ErrInvalid, ca.Cert.NotAfter.Format(time.RFC3339))
	}
	usage := []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}
	if req.Role.IsDaemon() {
		usage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}
	}
	serial, err := newSerial()
	if err != nil {
		return nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject: pkix.Name{
			CommonName:         strings.TrimSpace(req.CommonName),
			Organization:       []string{organization},
			OrganizationalUnit: []string{string(req.Role)},
		},
		NotBefore:             now.Add(-backdate),
		NotAfter:              notAfter,
		KeyUsage:              x509.KeyUsageDigitalSignature,
		ExtKeyUsage:           usage,
		BasicConstraintsValid: true,
		DNSNames:              append([]string(nil), req.DNSNames...),
		IPAddresses:           append(req.IPs[:0:0], req.IPs...),
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.Cert, pub, ca.Key)
	if err != nil {
		return nil, fmt.Errorf("issue %q: create certificate: %w", req.CommonName, err)
	}
	return der, nil
}

// IssuedAt is when c was issued: its NotBefore plus the backdating that
// absorbs clock skew.
func IssuedAt(c *x509.Certificate) time.Time { return c.NotBefore.Add(backdate) }
