package pki

import (
	"bytes"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func newCA(t *testing.T) (*CA, string) {
	t.Helper()
	dir := t.TempDir()
	ca, err := InitCA(dir, "test ca", time.Hour*24)
	if err != nil {
		t.Fatalf("InitCA: %v", err)
	}
	return ca, dir
}

func parsePEMCert(t *testing.T, data []byte) *x509.Certificate {
	t.Helper()
	certs, err := parseCerts("test", data)
	if err != nil {
		t.Fatal(err)
	}
	return certs[0]
}

func TestParseRole(t *testing.T) {
	tests := []struct {
		name    string
		in      string
		want    Role
		daemon  bool
		wantErr bool
	}{
		{name: "scheduler", in: "scheduler", want: RoleScheduler, daemon: true},
		{name: "gateway", in: "gateway", want: RoleGateway, daemon: true},
		{name: "agent", in: "agent", want: RoleAgent, daemon: true},
		{name: "admin", in: "admin", want: RoleAdmin},
		{name: "operator", in: "operator", want: RoleOperator},
		{name: "viewer", in: "viewer", want: RoleViewer},
		{name: "empty", in: "", wantErr: true},
		{name: "wrong case", in: "Admin", wantErr: true},
		{name: "unknown", in: "root", wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseRole(tt.in)
			if tt.wantErr {
				if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), "role") {
					t.Fatalf("ParseRole(%q) error = %v, want ErrInvalid naming role", tt.in, err)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Fatalf("ParseRole(%q) = %q, %v; want %q", tt.in, got, err, tt.want)
			}
			if got.IsDaemon() != tt.daemon {
				t.Fatalf("IsDaemon(%q) = %v, want %v", got, got.IsDaemon(), tt.daemon)
			}
		})
	}
}

func TestValidateName(t *testing.T) {
	tests := []struct {
		name string
		in   string
		ok   bool
	}{
		{name: "simple", in: "node-1", ok: true},
		{name: "dots and underscores", in: "agent.node_1", ok: true},
		{name: "empty", in: ""},
		{name: "dot dot", in: ".."},
		{name: "hidden", in: ".x"},
		{name: "leading dash", in: "-x"},
		{name: "slash", in: "a/b"},
		{name: "space", in: "a b"},
		{name: "too long", in: strings.Repeat("a", 65)},
		{name: "longest", in: strings.Repeat("a", 64), ok: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := ValidateName("node id", tt.in)
			if tt.ok != (err == nil) {
				t.Fatalf("ValidateName(%q) = %v, want ok=%v", tt.in, err, tt.ok)
			}
			if err != nil && (!errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), "node id")) {
				t.Fatalf("error %v does not wrap ErrInvalid or name the field", err)
			}
		})
	}
}

func TestInitAndLoadCA(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "ca")
	ca, err := InitCA(dir, "cluster ca", 48*time.Hour)
	if err != nil {
		t.Fatalf("InitCA: %v", err)
	}
	if !ca.Cert.IsCA || ca.Cert.Subject.CommonName != "cluster ca" {
		t.Fatalf("CA cert: IsCA=%v CN=%q", ca.Cert.IsCA, ca.Cert.Subject.CommonName)
	}
	if ca.Cert.KeyUsage&x509.KeyUsageCertSign == 0 {
		t.Fatalf("CA cert lacks KeyUsageCertSign")
	}
	for _, f := range []struct {
		path string
		mode os.FileMode
	}{{dir, 0o700 | os.ModeDir}, {filepath.Join(dir, CACertFile), 0o644}, {filepath.Join(dir, CAKeyFile), 0o600}} {
		st, err := os.Stat(f.path)
		if err != nil {
			t.Fatal(err)
		}
		if st.Mode() != f.mode {
			t.Errorf("%s mode = %v, want %v", f.path, st.Mode(), f.mode)
		}
	}

	_, err = InitCA(dir, "again", time.Hour)
	if !errors.Is(err, ErrExists) {
		t.Fatalf("second InitCA error = %v, want ErrExists", err)
	}

	loaded, err := LoadCA(dir)
	if err != nil {
		t.Fatalf("LoadCA: %v", err)
	}
	if !loaded.Cert.Equal(ca.Cert) || !loaded.Key.Equal(ca.Key) || !bytes.Equal(loaded.CertPEM, ca.CertPEM) {
		t.Fatalf("loaded CA differs from created CA")
	}
}

func TestInitCAValidation(t *testing.T) {
	tests := []struct {
		name     string
		dir      string
		cn       string
		validity time.Duration
		field    string
	}{
		{name: "empty dir", dir: "", cn: "x", validity: time.Hour, field: "ca dir"},
		{name: "empty cn", dir: "d", cn: " ", validity: time.Hour, field: "ca common name"},
		{name: "zero validity", dir: "d", cn: "x", validity: 0, field: "ca validity"},
		{name: "negative validity", dir: "d", cn: "x", validity: -time.Hour, field: "ca validity"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := tt.dir
			if dir != "" {
				dir = filepath.Join(t.TempDir(), dir)
			}
			_, err := InitCA(dir, tt.cn, tt.validity)
			if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), tt.field) {
				t.Fatalf("InitCA error = %v, want ErrInvalid naming %q", err, tt.field)
			}
		})
	}
}

func TestLoadCAErrors(t *testing.T) {
	other, otherDir := newCA(t)
	_ = other
	otherKey, err := os.ReadFile(filepath.Join(otherDir, CAKeyFile))
	if err != nil {
		t.Fatal(err)
	}
	ca, _ := newCA(t)
	leafPEM, leafKey, err := ca.Issue(IssueRequest{CommonName: "x", Role: RoleAgent})
	if err != nil {
		t.Fatal(err)
	}

	tests := []struct {
		name     string
		cert     []byte // nil: file absent
		key      []byte
		wantFile string
		wantErr  error
	}{
		{name: "missing cert", cert: nil, key: otherKey, wantFile: CACertFile, wantErr: os.ErrNotExist},
		{name: "missing key", cert: other.CertPEM, key: nil, wantFile: CAKeyFile, wantErr: os.ErrNotExist},
		{name: "garbage cert", cert: []byte("not pem"), key: otherKey, wantFile: CACertFile, wantErr: ErrInvalid},
		{name: "wrong block type", cert: otherKey, key: otherKey, wantFile: CACertFile, wantErr: ErrInvalid},
		{name: "corrupt certificate", cert: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: []byte{1, 2, 3}}), key: otherKey, wantFile: CACertFile, wantErr: ErrInvalid},
		{name: "garbage key", cert: other.CertPEM, key: []byte("-----BEGIN NOTHING-----\n"), wantFile: CAKeyFile, wantErr: ErrInvalid},
		{name: "key mismatch", cert: other.CertPEM, key: leafKey, wantFile: CAKeyFile, wantErr: ErrInvalid},
		{name: "not a CA", cert: leafPEM, key: leafKey, wantFile: CACertFile, wantErr: ErrInvalid},
		{name: "oversized cert", cert: bytes.Repeat([]byte("a"), MaxFileSize+1), key: otherKey, wantFile: CACertFile, wantErr: ErrInvalid},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			if tt.cert != nil {
				if err := os.WriteFile(filepath.Join(dir, CACertFile), tt.cert, 0o644); err != nil {
					t.Fatal(err)
				}
			}
			if tt.key != nil {
				if err := os.WriteFile(filepath.Join(dir, CAKeyFile), tt.key, 0o600); err != nil {
					t.Fatal(err)
				}
			}
			_, err := LoadCA(dir)
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("LoadCA error = %v, want %v", err, tt.wantErr)
			}
			if !strings.Contains(err.Error(), filepath.Join(dir, tt.wantFile)) {
				t.Fatalf("LoadCA error %q does not name %s", err, tt.wantFile)
			}
		})
	}
}

func TestIssueChains(t *testing.T) {
	ca, _ := newCA(t)
	other, _ := newCA(t)
	roots := x509.NewCertPool()
	roots.AddCert(ca.Cert)
	otherRoots := x509.NewCertPool()
	otherRoots.AddCert(other.Cert)

	tests := []struct {
		name       string
		req        IssueRequest
		serverAuth bool
	}{
		{name: "scheduler", req: IssueRequest{CommonName: "scheduler", Role: RoleScheduler, DNSNames: []string{"localhost", "scheduler"}, IPs: []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback}}, serverAuth: true},
		{name: "gateway", req: IssueRequest{CommonName: "gateway", Role: RoleGateway, DNSNames: []string{"gw.example.com"}}, serverAuth: true},
		{name: "agent", req: IssueRequest{CommonName: "node-1", Role: RoleAgent, IPs: []net.IP{net.ParseIP("10.0.0.7")}, Validity: 2 * time.Hour}, serverAuth: true},
		{name: "admin", req: IssueRequest{CommonName: "alice", Role: RoleAdmin}},
		{name: "operator", req: IssueRequest{CommonName: "bob", Role: RoleOperator}},
		{name: "viewer", req: IssueRequest{CommonName: "carol", Role: RoleViewer}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			certPEM, keyPEM, err := ca.Issue(tt.req)
			if err != nil {
				t.Fatalf("Issue: %v", err)
			}
			c := parsePEMCert(t, certPEM)
			key, err := parseKey("key", keyPEM)
			if err != nil || !keyMatches(c, key) {
				t.Fatalf("key does not parse or match: %v", err)
			}
			if got := c.Subject.OrganizationalUnit; len(got) != 1 || got[0] != string(tt.req.Role) {
				t.Fatalf("OU = %v, want [%s]", got, tt.req.Role)
			}
			if c.IsCA {
				t.Fatalf("leaf is a CA")
			}
			if c.SerialNumber.Sign() <= 0 || c.SerialNumber.BitLen() > 128 {
				t.Fatalf("serial %v not a positive 128-bit number", c.SerialNumber)
			}
			if !c.NotBefore.Before(time.Now()) {
				t.Fatalf("NotBefore %v not in the past", c.NotBefore)
			}
			if c.NotAfter.After(ca.Cert.NotAfter) {
				t.Fatalf("NotAfter %v beyond CA NotAfter %v", c.NotAfter, ca.Cert.NotAfter)
			}
			if len(c.DNSNames) != len(tt.req.DNSNames) || len(c.IPAddresses) != len(tt.req.IPs) {
				t.Fatalf("SANs = %v %v, want %v %v", c.DNSNames, c.IPAddresses, tt.req.DNSNames, tt.req.IPs)
			}

			if _, err := c.Verify(x509.VerifyOptions{Roots: roots, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
				t.Fatalf("verify as client: %v", err)
			}
			_, err = c.Verify(x509.VerifyOptions{Roots: roots, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}})
			if tt.serverAuth != (err == nil) {
				t.Fatalf("verify as server: err=%v, want ok=%v", err, tt.serverAuth)
			}
			if _, err := c.Verify(x509.VerifyOptions{Roots: otherRoots, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}}); err == nil {
				t.Fatalf("verified against a foreign CA")
			}

			id, err := ca.Verify(c)
			if err != nil {
				t.Fatalf("CA.Verify: %v", err)
			}
			want := Identity{CommonName: tt.req.CommonName, Role: tt.req.Role, Serial: c.SerialNumber.Text(16)}
			if id != want {
				t.Fatalf("identity = %+v, want %+v", id, want)
			}
			if _, err := other.Verify(c); err == nil {
				t.Fatalf("foreign CA.Verify accepted the certificate")
			}
		})
	}
}

func TestIssueSerialsDiffer(t *testing.T) {
	ca, _ := newCA(t)
	seen := map[string]bool{}
	for range 5 {
		certPEM, _, err := ca.Issue(IssueRequest{CommonName: "n", Role: RoleAgent})
		if err != nil {
			t.Fatal(err)
		}
		s := parsePEMCert(t, certPEM).SerialNumber.Text(16)
		if seen[s] {
			t.Fatalf("serial %s repeated", s)
		}
		seen[s] = true
	}
}

func TestIssueValidityCappedAtCA(t *testing.T) {
	ca, _ := newCA(t)
	certPEM, _, err := ca.Issue(IssueRequest{CommonName: "n", Role: RoleAgent, Validity: 100 * 365 * 24 * time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	if c := parsePEMCert(t, certPEM); !c.NotAfter.Equal(ca.Cert.NotAfter) {
		t.Fatalf("NotAfter = %v, want CA NotAfter %v", c.NotAfter, ca.Cert.NotAfter)
	}
}

func TestIssueValidation(t *testing.T) {
	ca, _ := newCA(t)
	tests := []struct {
		name  string
		req   IssueRequest
		field string
	}{
		{name: "empty common name", req: IssueRequest{Role: RoleAgent}, field: "common name"},
		{name: "blank common name", req: IssueRequest{CommonName: "  ", Role: RoleAgent}, field: "common name"},
		{name: "control character", req: IssueRequest{CommonName: "a\nb", Role: RoleAgent}, field: "common name"},
		{name: "long common name", req: IssueRequest{CommonName: strings.Repeat("x", 65), Role: RoleAgent}, field: "common name"},
		{name: "no role", req: IssueRequest{CommonName: "x"}, field: "role"},
		{name: "unknown role", req: IssueRequest{CommonName: "x", Role: "root"}, field: "role"},
		{name: "empty dns", req: IssueRequest{CommonName: "x", Role: RoleAgent, DNSNames: []string{""}}, field: "dns name 0"},
		{name: "bad dns", req: IssueRequest{CommonName: "x", Role: RoleAgent, DNSNames: []string{"ok", "a b"}}, field: "dns name 1"},
		{name: "bad ip", req: IssueRequest{CommonName: "x", Role: RoleAgent, IPs: []net.IP{{1, 2}}}, field: "ip 0"},
		{name: "negative validity", req: IssueRequest{CommonName: "x", Role: RoleAgent, Validity: -time.Second}, field: "validity"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, _, err := ca.Issue(tt.req)
			if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), tt.field) {
				t.Fatalf("Issue error = %v, want ErrInvalid naming %q", err, tt.field)
			}
		})
	}
}

func TestIdentityFromCert(t *testing.T) {
	mk := func(cn string, ou ...string) *x509.Certificate {
		return &x509.Certificate{SerialNumber: big.NewInt(0xabc), Subject: pkix.Name{CommonName: cn, OrganizationalUnit: ou}}
	}
	tests := []struct {
		name    string
		cert    *x509.Certificate
		want    Identity
		wantErr string
	}{
		{name: "agent", cert: mk("node-1", "agent"), want: Identity{CommonName: "node-1", Role: RoleAgent, Serial: "abc"}},
		{name: "viewer", cert: mk("carol", "viewer"), want: Identity{CommonName: "carol", Role: RoleViewer, Serial: "abc"}},
		{name: "nil", cert: nil, wantErr: "nil certificate"},
		{name: "no common name", cert: mk("", "agent"), wantErr: "no common name"},
		{name: "no role", cert: mk("x"), wantErr: "exactly one organizational unit"},
		{name: "two roles", cert: mk("x", "agent", "admin"), wantErr: "exactly one organizational unit"},
		{name: "unknown role", cert: mk("x", "root"), wantErr: `role "root"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := IdentityFromCert(tt.cert)
			if tt.wantErr != "" {
				if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("error = %v, want ErrInvalid containing %q", err, tt.wantErr)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Fatalf("IdentityFromCert = %+v, %v; want %+v", got, err, tt.want)
			}
		})
	}
}

func TestHashCA(t *testing.T) {
	ca, dir := newCA(t)
	other, _ := newCA(t)
	sum := sha256.Sum256(ca.Cert.RawSubjectPublicKeyInfo)
	want := "sha256:" + hex.EncodeToString(sum[:])
	fileData, err := os.ReadFile(filepath.Join(dir, CACertFile))
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		in   []byte
		want string
	}{
		{name: "created", in: ca.CertPEM, want: want},
		{name: "file", in: fileData, want: want},
		{name: "other ca", in: other.CertPEM, want: HashCert(other.Cert)},
		{name: "garbage", in: []byte("nope"), want: ""},
		{name: "empty", in: nil, want: ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := HashCA(tt.in); got != tt.want {
				t.Fatalf("HashCA = %q, want %q", got, tt.want)
			}
		})
	}
	if HashCA(ca.CertPEM) == HashCA(other.CertPEM) {
		t.Fatalf("two CAs share a hash")
	}
}

func TestWriteIdentity(t *testing.T) {
	ca, _ := newCA(t)
	certPEM, keyPEM, err := ca.Issue(IssueRequest{CommonName: "alice", Role: RoleOperator})
	if err != nil {
		t.Fatal(err)
	}
	_, otherKey, err := ca.Issue(IssueRequest{CommonName: "bob", Role: RoleOperator})
	if err != nil {
		t.Fatal(err)
	}

	dir := filepath.Join(t.TempDir(), "nested", "certs")
	if err := WriteIdentity(dir, "alice", certPEM, keyPEM); err != nil {
		t.Fatalf("WriteIdentity: %v", err)
	}
	for _, f := range []struct {
		path string
		mode os.FileMode
	}{{dir, 0o700 | os.ModeDir}, {filepath.Join(dir, "alice.crt"), 0o644}, {filepath.Join(dir, "alice.key"), 0o600}} {
		st, err := os.Stat(f.path)
		if err != nil {
			t.Fatal(err)
		}
		if st.Mode() != f.mode {
			t.Errorf("%s mode = %v, want %v", f.path, st.Mode(), f.mode)
		}
	}
	got, err := os.ReadFile(filepath.Join(dir, "alice.crt"))
	if err != nil || !bytes.Equal(got, certPEM) {
		t.Fatalf("alice.crt content differs (%v)", err)
	}
	// Replacing is allowed (rotation) and leaves no temporary files.
	if err := WriteIdentity(dir, "alice", certPEM, keyPEM); err != nil {
		t.Fatalf("rewrite: %v", err)
	}
	entries, err := os.ReadDir(dir)
	if err != nil || len(entries) != 2 {
		t.Fatalf("dir holds %d entries (%v), want 2", len(entries), err)
	}

	tests := []struct {
		name    string
		id      string
		cert    []byte
		key     []byte
		wantErr string
	}{
		{name: "path in name", id: "../x", cert: certPEM, key: keyPEM, wantErr: "identity name"},
		{name: "empty name", id: "", cert: certPEM, key: keyPEM, wantErr: "identity name"},
		{name: "bad cert", id: "x", cert: []byte("junk"), key: keyPEM, wantErr: "x.crt"},
		{name: "bad key", id: "x", cert: certPEM, key: []byte("junk"), wantErr: "x.key"},
		{name: "mismatched key", id: "x", cert: certPEM, key: otherKey, wantErr: "does not match"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := WriteIdentity(t.TempDir(), tt.id, tt.cert, tt.key)
			if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("error = %v, want ErrInvalid containing %q", err, tt.wantErr)
			}
		})
	}
}

func TestReadCertFile(t *testing.T) {
	ca, dir := newCA(t)
	junk := filepath.Join(t.TempDir(), "junk.crt")
	if err := os.WriteFile(junk, []byte("junk"), 0o600); err != nil {
		t.Fatal(err)
	}
	certs, err := ReadCertFile(filepath.Join(dir, CACertFile))
	if err != nil || len(certs) != 1 || !certs[0].Equal(ca.Cert) {
		t.Fatalf("ReadCertFile = %d certs, %v; want the CA", len(certs), err)
	}
	if _, err := ReadCertFile(junk); !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), junk) {
		t.Fatalf("ReadCertFile(junk) error = %v, want ErrInvalid naming the file", err)
	}
}
