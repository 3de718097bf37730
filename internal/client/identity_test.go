package client_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/persys-dev/compute/internal/client"
)

func TestConfigToken(t *testing.T) {
	tests := []struct {
		name    string
		cfg     client.Config
		wantErr string
	}{
		{"token alone", client.Config{Endpoint: "https://gw:8443", CA: "ca.crt", Token: "psy_a_b"}, ""},
		{"token and a certificate", client.Config{Endpoint: "https://gw:8443", CA: "ca.crt", Cert: "c", Key: "k", Token: "psy_a_b"}, ""},
		{"token with cert but no key", client.Config{Endpoint: "https://gw:8443", CA: "ca.crt", Cert: "c", Token: "psy_a_b"}, "cert and key"},
		{"token with a space", client.Config{Endpoint: "https://gw:8443", CA: "ca.crt", Token: "psy a"}, "token"},
		{"token too long", client.Config{Endpoint: "https://gw:8443", CA: "ca.crt", Token: strings.Repeat("x", 300)}, "token"},
		{"no ca", client.Config{Endpoint: "https://gw:8443", Token: "psy_a_b"}, "ca"},
		{"neither token nor cert", client.Config{Endpoint: "https://gw:8443", CA: "ca.crt"}, "PERSYS_TOKEN"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.cfg.Validate()
			if tt.wantErr == "" {
				if err != nil {
					t.Fatalf("unexpected error: %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("got %v, want an error naming %q", err, tt.wantErr)
			}
		})
	}
}

func TestConfigTokenFromEnvironment(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "config.yaml")
	// No cert and key: valid only with $PERSYS_TOKEN.
	if err := os.WriteFile(p, []byte("endpoint: https://gw:8443\nca: ca.crt\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv(client.EnvToken, "")
	if _, _, err := client.LoadConfig(p); err == nil || !strings.Contains(err.Error(), client.EnvToken) {
		t.Fatalf("without a token: %v", err)
	}
	t.Setenv(client.EnvToken, "psy_0123_abcd")
	c, _, err := client.LoadConfig(p)
	if err != nil {
		t.Fatalf("with $%s: %v", client.EnvToken, err)
	}
	if c.Token != "psy_0123_abcd" || c.CA != filepath.Join(dir, "ca.crt") || c.Cert != "" {
		t.Fatalf("config %+v", c)
	}
}
