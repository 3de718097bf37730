package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/persys-dev/compute/internal/client"
	"github.com/persys-dev/compute/internal/pki"
)

func TestCAIssueUser(t *testing.T) {
	dir := t.TempDir()
	if _, err := pki.InitCA(dir, "test-ca", time.Hour*24*365); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(t.TempDir(), "users")
	cfgPath := filepath.Join(t.TempDir(), "config.yaml")
	run := func(args ...string) (string, error) {
		cmd := newCAIssueUserCommand()
		var b bytes.Buffer
		cmd.SetOut(&b)
		cmd.SetErr(&b)
		cmd.SetArgs(args)
		err := cmd.Execute()
		return b.String(), err
	}

	bad := []struct {
		name string
		args []string
		want string
	}{
		{"daemon role", []string{"eve", "--dir", dir, "--role", "agent"}, "--role"},
		{"bad name", []string{"e/ve", "--dir", dir, "--role", "viewer"}, "NAME"},
		{"no role", []string{"eve", "--dir", dir}, "role"},
		{"bad endpoint", []string{"eve", "--dir", dir, "--role", "viewer", "--out-config", cfgPath, "--endpoint", "http://x"}, "--endpoint"},
		{"zero ttl", []string{"eve", "--dir", dir, "--role", "viewer", "--ttl", "0s"}, "--ttl"},
	}
	for _, tt := range bad {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := run(tt.args...); err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("got %v, want an error naming %s", err, tt.want)
			}
		})
	}

	text, err := run("alice", "--dir", dir, "--role", "operator", "--ttl", "48h", "--out", out,
		"--out-config", cfgPath, "--endpoint", "https://gw.example:8443")
	if err != nil {
		t.Fatalf("issue-user: %v\n%s", err, text)
	}
	certs, err := pki.ReadCertFile(filepath.Join(out, "alice.crt"))
	if err != nil {
		t.Fatal(err)
	}
	id, err := pki.IdentityFromCert(certs[0])
	if err != nil || id.CommonName != "alice" || id.Role != pki.RoleOperator {
		t.Fatalf("identity %+v, %v", id, err)
	}
	if life := time.Until(certs[0].NotAfter); life > 49*time.Hour || life < 47*time.Hour {
		t.Fatalf("certificate lives %s, want about 48h", life)
	}
	if st, err := os.Stat(filepath.Join(out, "alice.key")); err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("key file: %v %v", st, err)
	}
	cfg, _, err := client.LoadConfig(cfgPath)
	if err != nil {
		t.Fatalf("the written config does not load: %v", err)
	}
	if cfg.Endpoint != "https://gw.example:8443" || cfg.Cert != filepath.Join(out, "alice.crt") || cfg.CA != filepath.Join(out, "alice-ca.crt") {
		t.Fatalf("config %+v", cfg)
	}
	// The files are not replaced without --force.
	if _, err := run("alice", "--dir", dir, "--role", "viewer", "--out", out); err == nil || !strings.Contains(err.Error(), "--force") {
		t.Fatalf("second issue without --force: %v", err)
	}
	if _, err := run("alice", "--dir", dir, "--role", "viewer", "--out", out, "--force"); err != nil {
		t.Fatalf("second issue with --force: %v", err)
	}
}
