package client

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func writeFile(t *testing.T, path, content string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
}

func configText(endpoint string) string {
	return "endpoint: " + endpoint + "\nca: ca.crt\ncert: certs/admin.crt\nkey: /abs/admin.key\n"
}

func TestLoadConfigOrder(t *testing.T) {
	root := t.TempDir()
	home := filepath.Join(root, "home")
	explicit := filepath.Join(root, "explicit", "c.yaml")
	env := filepath.Join(root, "env", "c.yaml")
	def := filepath.Join(home, ".persys", "config.yaml")
	writeFile(t, explicit, configText("https://explicit:1"))
	writeFile(t, env, configText("https://env:1"))
	writeFile(t, def, configText("https://default:1"))

	tests := []struct {
		name         string
		flag, envVar string
		wantEndpoint string
		wantPath     string
	}{
		{"flag wins over env and default", explicit, env, "https://explicit:1", explicit},
		{"env wins over default", "", env, "https://env:1", env},
		{"default last", "", "", "https://default:1", def},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Setenv("HOME", home)
			t.Setenv(EnvConfig, tt.envVar)
			c, path, err := LoadConfig(tt.flag)
			if err != nil {
				t.Fatal(err)
			}
			if c.Endpoint != tt.wantEndpoint || path != tt.wantPath {
				t.Errorf("got %s from %s, want %s from %s", c.Endpoint, path, tt.wantEndpoint, tt.wantPath)
			}
			dir := filepath.Dir(tt.wantPath)
			if c.CA != filepath.Join(dir, "ca.crt") || c.Cert != filepath.Join(dir, "certs", "admin.crt") || c.Key != "/abs/admin.key" {
				t.Errorf("paths not resolved against %s: %+v", dir, c)
			}
		})
	}
}

func TestLoadConfigErrorsNameTheSource(t *testing.T) {
	root := t.TempDir()
	bad := filepath.Join(root, "bad.yaml")
	writeFile(t, bad, "endpoint: http://plain:1\nca: a\ncert: b\nkey: c\n")
	typo := filepath.Join(root, "typo.yaml")
	writeFile(t, typo, configText("https://x:1")+"endpont: y\n")
	noKey := filepath.Join(root, "nokey.yaml")
	writeFile(t, noKey, "endpoint: https://x:1\nca: a\ncert: b\n")

	tests := []struct {
		name         string
		flag, envVar string
		want         []string
	}{
		{"missing flag file", filepath.Join(root, "nope.yaml"), "", []string{"--config", "nope.yaml", "PERSYSCTL_CONFIG"}},
		{"missing env file", "", filepath.Join(root, "gone.yaml"), []string{"$PERSYSCTL_CONFIG", "gone.yaml"}},
		{"missing default file", "", "", []string{"default path", ".persys/config.yaml"}},
		{"plain http endpoint", bad, "", []string{"endpoint", "https://"}},
		{"unknown key", typo, "", []string{"endpont"}},
		{"missing key", noKey, "", []string{"key: required"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Setenv("HOME", filepath.Join(root, "emptyhome"))
			t.Setenv(EnvConfig, tt.envVar)
			_, _, err := LoadConfig(tt.flag)
			if err == nil {
				t.Fatal("no error")
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q lacks %q", err, w)
				}
			}
		})
	}
}

func TestWriteConfigRoundTrip(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "sub", "config.yaml")
	in := &Config{Endpoint: "https://127.0.0.1:8443", CA: "/x/ca.crt", Cert: "/x/admin.crt", Key: "/x/admin.key"}
	if err := WriteConfig(path, in); err != nil {
		t.Fatal(err)
	}
	st, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode().Perm() != 0o600 {
		t.Errorf("mode %v, want 0600", st.Mode().Perm())
	}
	out, got, err := LoadConfig(path)
	if err != nil {
		t.Fatal(err)
	}
	if got != path || *out != *in {
		t.Errorf("read back %+v from %s, want %+v", out, got, in)
	}
	if err := WriteConfig(path, &Config{Endpoint: "https://x"}); err == nil || !strings.Contains(err.Error(), "ca") {
		t.Errorf("invalid config written, err %v", err)
	}
}
