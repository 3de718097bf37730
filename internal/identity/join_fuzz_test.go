package identity

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"net"
	"net/url"
	"strings"
	"testing"
	"time"

	persysv1 "github.com/persys-dev/compute/api/persys/v1"
	"github.com/persys-dev/compute/internal/pki"
)

// csrSeed is a CSR for tmpl signed with key, PEM-encoded.
func csrSeed(f *testing.F, tmpl *x509.CertificateRequest, key any) []byte {
	f.Helper()
	der, err := x509.CreateCertificateRequest(rand.Reader, tmpl, key)
	if err != nil {
		f.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der})
}

// FuzzJoinRequest feeds untrusted join requests (a caller without a
// certificate sends them) through the checks JoinNode makes before the
// store: they never panic, every refusal names its field, and whatever
// they accept the CA signs into an agent certificate for exactly the
// node id and names checked, or refuses with pki.ErrInvalid.
func FuzzJoinRequest(f *testing.F) {
	ca, err := pki.InitCA(f.TempDir(), "fuzz", time.Hour)
	if err != nil {
		f.Fatal(err)
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		f.Fatal(err)
	}
	good, err := pki.NewServerCSR("node-1", []string{"node-1.example"}, []net.IP{net.IPv4(10, 0, 0, 1)}, key)
	if err != nil {
		f.Fatal(err)
	}
	const token = "0123abcd.4567ef89"
	f.Add(token, good)
	f.Add("", good)
	f.Add("0123abcd", good)
	f.Add("0123ABCD.4567ef89", good)
	f.Add(token, []byte(""))
	f.Add(token, good[:len(good)/2])
	f.Add(token, []byte("-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n-----END CERTIFICATE REQUEST-----\n"))
	rsaKey, err := rsa.GenerateKey(rand.Reader, 1024)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(token, csrSeed(f, &x509.CertificateRequest{Subject: pkix.Name{CommonName: "node-1"}}, rsaKey))
	p384, err := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(token, csrSeed(f, &x509.CertificateRequest{Subject: pkix.Name{CommonName: "node-1"}}, p384))
	for _, tmpl := range []*x509.CertificateRequest{
		{Subject: pkix.Name{CommonName: ""}},
		{Subject: pkix.Name{CommonName: " node-1 "}},
		{Subject: pkix.Name{CommonName: "../etc"}},
		{Subject: pkix.Name{CommonName: strings.Repeat("n", 65)}},
		{Subject: pkix.Name{CommonName: "node-1"}, URIs: []*url.URL{{Scheme: "spiffe", Host: "x"}}},
		{Subject: pkix.Name{CommonName: "node-1"}, EmailAddresses: []string{"a@b"}},
		{Subject: pkix.Name{CommonName: "node-1"}, DNSNames: []string{"bad name", "*.wild"}},
		{Subject: pkix.Name{CommonName: "node-1"}, DNSNames: make([]string, maxCSRNames+1)},
	} {
		f.Add(token, csrSeed(f, tmpl, key))
	}
	f.Fuzz(func(t *testing.T, token string, csrPEM []byte) {
		jr, err := parseJoinRequest(&persysv1.JoinNodeRequest{Token: token, CsrPem: csrPEM})
		if err != nil {
			if msg := err.Error(); !strings.HasPrefix(msg, "token") && !strings.HasPrefix(msg, "csr") {
				t.Fatalf("refusal %q names no field (token, csr_pem, csr common name)", msg)
			}
			return
		}
		if pki.ValidateName("node id", jr.nodeID) != nil || len(jr.dns) > maxCSRNames || len(jr.ips) > maxCSRNames {
			t.Fatalf("accepted node id %q with %d names and %d addresses", jr.nodeID, len(jr.dns), len(jr.ips))
		}
		certPEM, err := ca.SignCSR(jr.csr, pki.IssueRequest{CommonName: jr.nodeID, Role: pki.RoleAgent, DNSNames: jr.dns, IPs: jr.ips, Validity: time.Minute})
		if err != nil {
			if !errors.Is(err, pki.ErrInvalid) {
				t.Fatalf("SignCSR of an accepted request: %v, want ErrInvalid", err)
			}
			return
		}
		cert, err := pki.ParseCertPEM(certPEM)
		if err != nil {
			t.Fatal(err)
		}
		id, err := pki.IdentityFromCert(cert)
		if err != nil || id.CommonName != jr.nodeID || id.Role != pki.RoleAgent {
			t.Fatalf("issued identity = %+v, %v; want agent %q", id, err, jr.nodeID)
		}
		roots := x509.NewCertPool()
		roots.AddCert(ca.Cert)
		if _, err := cert.Verify(x509.VerifyOptions{Roots: roots, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
			t.Fatalf("issued certificate does not verify: %v", err)
		}
		if len(cert.DNSNames) != len(jr.dns) || len(cert.IPAddresses) != len(jr.ips) || len(cert.URIs) != 0 || len(cert.EmailAddresses) != 0 {
			t.Fatalf("issued names %v %v %v %v; want only %v %v", cert.DNSNames, cert.IPAddresses, cert.URIs, cert.EmailAddresses, jr.dns, jr.ips)
		}
	})
}
