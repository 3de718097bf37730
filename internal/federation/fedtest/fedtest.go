// Package fedtest starts, for tests of the federation's packages, a real
// member cluster (realsched: a real scheduler over embedded etcd, a real
// gateway, a sim agent), a federation API over mutual TLS on its own CA
// and embedded etcd, and issues federation identities at the member,
// valid or expired. Everything stops when the test ends. Production code
// must not import it.
package fedtest

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/persys-dev/compute/internal/client"
	"github.com/persys-dev/compute/internal/federation/api"
	"github.com/persys-dev/compute/internal/federation/fedapi"
	"github.com/persys-dev/compute/internal/federation/fednodes"
	"github.com/persys-dev/compute/internal/federation/fedstore"
	"github.com/persys-dev/compute/internal/federation/fedsvc"
	"github.com/persys-dev/compute/internal/federation/fedwork"
	"github.com/persys-dev/compute/internal/gateway"
	"github.com/persys-dev/compute/internal/pki"
	"github.com/persys-dev/compute/internal/runtime/sim"
	"github.com/persys-dev/compute/internal/store/storetest"
	"github.com/persys-dev/compute/internal/testutil/realsched"
)

// Member is a real cluster of one sim node behind a real gateway.
type Member struct {
	Cluster *realsched.Cluster
	Gateway *realsched.Gateway
}

// StartMember starts a member cluster and waits until its node is ready.
func StartMember(t *testing.T) *Member {
	t.Helper()
	c := realsched.Start(t, realsched.Options{Nodes: []string{"node-1"}, NoSecrets: true})
	c.StartAgent(t, "node-1", sim.Options{})
	return &Member{Cluster: c, Gateway: c.StartGateway(t, nil)}
}

// Join is a join request for the member with an operator identity its CA
// issued to the federation.
func (m *Member) Join(t *testing.T, name string) fedapi.JoinRequest {
	t.Helper()
	f := m.Cluster.IssueUser(t, "federation", pki.RoleOperator)
	return fedapi.JoinRequest{Name: name, Gateway: m.Gateway.Endpoint, CA: read(t, m.Cluster.Bundle.CA), Cert: read(t, f.Cert), Key: read(t, f.Key)}
}

// ExpiredIdentity returns a certificate and key for the federation that
// the member's CA signed and that expired an hour ago.
func (m *Member) ExpiredIdentity(t *testing.T) (certPEM, keyPEM string) {
	t.Helper()
	ca, err := pki.LoadCA(m.Cluster.Bundle.Dir)
	if err != nil {
		t.Fatal(err)
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()),
		Subject:      pkix.Name{CommonName: "federation", OrganizationalUnit: []string{string(pki.RoleOperator)}},
		NotBefore:    time.Now().Add(-2 * time.Hour), NotAfter: time.Now().Add(-time.Hour),
		KeyUsage:    x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.Cert, &key.PublicKey, ca.Key)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})), string(pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER}))
}

// Federation is a federation API over mTLS with its store.
type Federation struct {
	Store  *fedstore.Store
	Bundle *pki.Bundle
	// Admin is a client with the federation's admin identity.
	Admin    *client.Client
	Endpoint string
}

// StartFederation serves the federation API on loopback with a CA of its
// own and an embedded etcd.
func StartFederation(t *testing.T, grace time.Duration) *Federation {
	t.Helper()
	cli, err := storetest.Embedded(t).Client()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cli.Close() })
	st := fedstore.New(cli, "", 0)
	b := storetest.Bundle(t, t.TempDir())
	serverTLS, err := pki.ServerTLS(b.Gateway)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	work := fedwork.New(fedwork.Config{Store: st})
	svcs := fedsvc.New(fedsvc.Config{Store: st, Lookup: fedwork.Lookup(st)})
	nodes := fednodes.New(st, fedwork.Lookup(st), 0)
	wg.Go(func() {
		_ = gateway.Serve(ctx, ln, api.New(api.Config{Store: st, Workloads: work, Services: svcs, Nodes: nodes, Grace: grace}), serverTLS)
	})
	t.Cleanup(func() { cancel(); wg.Wait(); work.Close(); svcs.Close(); nodes.Close() })
	admin, err := client.New(&client.Config{Endpoint: "https://" + ln.Addr().String(), CA: b.CA, Cert: b.Admin.Cert, Key: b.Admin.Key})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(admin.Close)
	return &Federation{Store: st, Bundle: b, Admin: admin, Endpoint: "https://" + ln.Addr().String()}
}

// OtherCA returns the PEM of a CA that signed nothing of the member's.
func OtherCA(t *testing.T) string {
	t.Helper()
	return read(t, storetest.Bundle(t, t.TempDir()).CA)
}

// OtherIdentity is an operator identity of a CA the member does not know.
func OtherIdentity(t *testing.T) (certPEM, keyPEM string) {
	t.Helper()
	ca, err := pki.LoadCA(storetest.Bundle(t, t.TempDir()).Dir)
	if err != nil {
		t.Fatal(err)
	}
	c, k, err := ca.Issue(pki.IssueRequest{CommonName: "federation", Role: pki.RoleOperator})
	if err != nil {
		t.Fatal(err)
	}
	return string(c), string(k)
}

func read(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// IssueClient returns a client of the federation with a user identity of
// its CA.
func (f *Federation) IssueClient(t *testing.T, name string, role pki.Role) *client.Client {
	t.Helper()
	ca, err := pki.LoadCA(f.Bundle.Dir)
	if err != nil {
		t.Fatal(err)
	}
	c, k, err := ca.Issue(pki.IssueRequest{CommonName: name, Role: role})
	if err != nil {
		t.Fatal(err)
	}
	if err := pki.WriteIdentity(f.Bundle.Dir, name, c, k); err != nil {
		t.Fatal(err)
	}
	cl, err := client.New(&client.Config{Endpoint: f.Endpoint, CA: f.Bundle.CA, Cert: filepath.Join(f.Bundle.Dir, name+".crt"), Key: filepath.Join(f.Bundle.Dir, name+".key")})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cl.Close)
	return cl
}
