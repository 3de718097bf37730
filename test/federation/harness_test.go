package federation

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	dockerclient "github.com/moby/moby/client"

	"github.com/persys-dev/compute/internal/pki"
	"github.com/persys-dev/compute/internal/testutil/devproc"
)

// member is one `persys dev` cluster of the federation, its node named
// fed-NAME-PID.
type member struct{ *devproc.Dev }

func startMember(t *testing.T, b devproc.Bins, name string, docker *dockerclient.Client) *member {
	t.Helper()
	return &member{devproc.StartDev(t, b, name, fmt.Sprintf("fed-%s-%d", name, os.Getpid()), docker)}
}

// expiredIdentity signs, with the member's CA key, an operator
// certificate for the federation that expired an hour ago, and writes it.
func (m *member) expiredIdentity(t *testing.T, dir string) (cert, key string) {
	t.Helper()
	ca, err := pki.LoadCA(filepath.Join(m.Dir, "pki"))
	if err != nil {
		t.Fatal(err)
	}
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()),
		Subject:      pkix.Name{CommonName: "federation", OrganizationalUnit: []string{string(pki.RoleOperator)}},
		NotBefore:    time.Now().Add(-2 * time.Hour), NotAfter: time.Now().Add(-time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.Cert, &k.PublicKey, ca.Key)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalECPrivateKey(k)
	if err != nil {
		t.Fatal(err)
	}
	cert, key = filepath.Join(dir, "expired.crt"), filepath.Join(dir, "expired.key")
	if err := os.WriteFile(cert, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(key, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder}), 0o600); err != nil {
		t.Fatal(err)
	}
	return cert, key
}

// must runs a binary and fails the test when it fails.
func must(t *testing.T, bin string, args ...string) string {
	t.Helper()
	out, err := devproc.Run(bin, args...)
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", filepath.Base(bin), strings.Join(args, " "), err, out)
	}
	return out
}
