package pki

import (
	"bytes"
	"errors"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

func readOrFail(t *testing.T, path string) []byte {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return data
}

func TestBootstrapLayout(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "pki")
	b, err := Bootstrap(dir, []string{"node-1", "node_2"}, []string{"persys.internal"}, []net.IP{net.ParseIP("10.1.2.3")})
	if err != nil {
		t.Fatalf("Bootstrap: %v", err)
	}
	if b.Dir != dir || b.CA != filepath.Join(dir, CACertFile) {
		t.Fatalf("bundle dir/ca = %q %q", b.Dir, b.CA)
	}
	ca, err := LoadCA(dir)
	if err != nil {
		t.Fatal(err)
	}

	tests := []struct {
		name    string
		files   Files
		file    string
		want    Identity
		daemon  bool
		nodeDNS string
	}{
		{name: "scheduler", files: b.Scheduler, file: "scheduler", want: Identity{CommonName: "scheduler", Role: RoleScheduler}, daemon: true},
		{name: "gateway", files: b.Gateway, file: "gateway", want: Identity{CommonName: "gateway", Role: RoleGateway}, daemon: true},
		{name: "agent node-1", files: b.Agents["node-1"], file: "agent-node-1", want: Identity{CommonName: "node-1", Role: RoleAgent}, daemon: true, nodeDNS: "node-1"},
		{name: "agent node_2", files: b.Agents["node_2"], file: "agent-node_2", want: Identity{CommonName: "node_2", Role: RoleAgent}, daemon: true},
		{name: "admin", files: b.Admin, file: "admin", want: Identity{CommonName: "admin", Role: RoleAdmin}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			wantFiles := Files{CA: b.CA, Cert: filepath.Join(dir, tt.file+".crt"), Key: filepath.Join(dir, tt.file+".key")}
			if tt.files != wantFiles {
				t.Fatalf("files = %+v, want %+v", tt.files, wantFiles)
			}
			c := parsePEMCert(t, readOrFail(t, tt.files.Cert))
			id, err := ca.Verify(c)
			if err != nil {
				t.Fatalf("Verify: %v", err)
			}
			if id.CommonName != tt.want.CommonName || id.Role != tt.want.Role {
				t.Fatalf("identity = %+v, want %+v", id, tt.want)
			}
			if !tt.daemon {
				if len(c.DNSNames)+len(c.IPAddresses) != 0 {
					t.Fatalf("user cert has SANs %v %v", c.DNSNames, c.IPAddresses)
				}
				return
			}
			for _, d := range []string{"localhost", "scheduler", "persys.internal"} {
				if !slices.Contains(c.DNSNames, d) {
					t.Errorf("DNS SANs %v lack %q", c.DNSNames, d)
				}
			}
			if tt.nodeDNS != "" && !slices.Contains(c.DNSNames, tt.nodeDNS) {
				t.Errorf("DNS SANs %v lack node id %q", c.DNSNames, tt.nodeDNS)
			}
			for _, ip := range []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback, net.ParseIP("10.1.2.3")} {
				if !slices.ContainsFunc(c.IPAddresses, ip.Equal) {
					t.Errorf("IP SANs %v lack %v", c.IPAddresses, ip)
				}
			}
		})
	}
}

func TestBootstrapIdempotent(t *testing.T) {
	dir := t.TempDir()
	if _, err := Bootstrap(dir, []string{"node-1"}, nil, nil); err != nil {
		t.Fatal(err)
	}
	snapshot := func() map[string][]byte {
		m := map[string][]byte{}
		entries, err := os.ReadDir(dir)
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range entries {
			m[e.Name()] = readOrFail(t, filepath.Join(dir, e.Name()))
		}
		return m
	}
	first := snapshot()

	// Same call: nothing changes.
	if _, err := Bootstrap(dir, []string{"node-1"}, nil, nil); err != nil {
		t.Fatal(err)
	}
	second := snapshot()
	if len(second) != len(first) {
		t.Fatalf("file count changed: %d -> %d", len(first), len(second))
	}
	for name, data := range first {
		if !bytes.Equal(second[name], data) {
			t.Errorf("%s changed on the second call", name)
		}
	}

	// A new node, a new name and a lost key: only what is affected changes.
	if err := os.Remove(filepath.Join(dir, "admin.key")); err != nil {
		t.Fatal(err)
	}
	b, err := Bootstrap(dir, []string{"node-1", "node-2"}, []string{"extra.example"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	third := snapshot()
	for _, f := range []string{CACertFile, CAKeyFile} {
		if !bytes.Equal(third[f], first[f]) {
			t.Errorf("%s changed: the CA must be kept", f)
		}
	}
	for _, f := range []string{"scheduler.crt", "agent-node-1.crt", "admin.crt"} {
		if bytes.Equal(third[f], first[f]) {
			t.Errorf("%s was not reissued", f)
		}
	}
	if _, ok := third["agent-node-2.crt"]; !ok || b.Agents["node-2"].Cert == "" {
		t.Errorf("agent-node-2 not issued")
	}
	if c := parsePEMCert(t, third["scheduler.crt"]); !slices.Contains(c.DNSNames, "extra.example") {
		t.Errorf("scheduler SANs %v lack the new name", c.DNSNames)
	}

	// Certificates of a replaced CA are reissued, not kept.
	for _, f := range []string{CACertFile, CAKeyFile} {
		if err := os.Remove(filepath.Join(dir, f)); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := Bootstrap(dir, []string{"node-1", "node-2"}, []string{"extra.example"}, nil); err != nil {
		t.Fatal(err)
	}
	ca, err := LoadCA(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{"scheduler.crt", "gateway.crt", "agent-node-1.crt", "agent-node-2.crt", "admin.crt"} {
		if _, err := ca.Verify(parsePEMCert(t, readOrFail(t, filepath.Join(dir, f)))); err != nil {
			t.Errorf("%s does not verify against the new CA: %v", f, err)
		}
	}
}

func TestBootstrapValidation(t *testing.T) {
	tests := []struct {
		name  string
		dir   bool
		nodes []string
		dns   []string
		ips   []net.IP
		field string
	}{
		{name: "empty dir", nodes: nil, field: "dir"},
		{name: "bad node id", dir: true, nodes: []string{"a/b"}, field: "node id"},
		{name: "duplicate node id", dir: true, nodes: []string{"n", "n"}, field: "duplicate"},
		{name: "bad dns", dir: true, dns: []string{"bad name"}, field: "extra dns name 0"},
		{name: "bad ip", dir: true, ips: []net.IP{{1}}, field: "extra ip 0"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := ""
			if tt.dir {
				dir = t.TempDir()
			}
			_, err := Bootstrap(dir, tt.nodes, tt.dns, tt.ips)
			if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), tt.field) {
				t.Fatalf("error = %v, want ErrInvalid naming %q", err, tt.field)
			}
			if tt.dir {
				if _, err := os.Stat(filepath.Join(dir, CACertFile)); !errors.Is(err, os.ErrNotExist) {
					t.Fatalf("invalid input still created a CA (%v)", err)
				}
			}
		})
	}
}
