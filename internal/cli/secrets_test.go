package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	persysv1 "github.com/persys-dev/compute/api/persys/v1"
	"github.com/persys-dev/compute/internal/client"
	"github.com/persys-dev/compute/internal/pki"
	"github.com/persys-dev/compute/internal/secrets/secretstest"
)

func TestSecretsTableGolden(t *testing.T) {
	list := []*persysv1.SecretInfo{
		{Name: "registry-cred", Type: persysv1.SecretType_SECRET_TYPE_REGISTRY, Keys: []string{"password", "server", "username"},
			Version: 1, CreatedAt: ago(48 * time.Hour), UpdatedAt: ago(48 * time.Hour)},
		{Name: "db", Type: persysv1.SecretType_SECRET_TYPE_OPAQUE, Keys: []string{"password", "user"},
			Version: 3, CreatedAt: ago(3 * time.Hour), UpdatedAt: ago(5 * time.Minute)},
	}
	var b bytes.Buffer
	if err := printSecretsTable(&b, list, fixedNow); err != nil {
		t.Fatal(err)
	}
	golden(t, "secrets.table", b.Bytes())
	b.Reset()
	if err := printSecretsTable(&b, nil, fixedNow); err != nil {
		t.Fatal(err)
	}
	if b.String() != "No secrets.\n" {
		t.Fatalf("empty list printed %q", b.String())
	}
}

func TestSecretDataFlags(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "tls.key")
	if err := os.WriteFile(file, []byte("file-value"), 0o600); err != nil {
		t.Fatal(err)
	}
	data, err := secretData([]string{"user=admin", "eq=a=b"}, []string{file, "other=" + file})
	if err != nil {
		t.Fatal(err)
	}
	if string(data["user"]) != "admin" || string(data["eq"]) != "a=b" || string(data["tls.key"]) != "file-value" || string(data["other"]) != "file-value" {
		t.Fatalf("secretData keys %v", len(data))
	}
	for _, tc := range []struct {
		name              string
		literals, files   []string
		want, mustNotHave string
	}{
		{"nothing", nil, nil, "at least one", ""},
		{"no equals", []string{"novalue"}, nil, "KEY=VALUE", "novalue"},
		{"duplicate", []string{"k=very-secret-1", "k=very-secret-2"}, nil, `key "k" is given twice`, "very-secret"},
		{"bad key", []string{"a/b=very-secret"}, nil, `data["a/b"]`, "very-secret"},
		{"missing file", nil, []string{"k=" + filepath.Join(dir, "missing")}, "--from-file k", ""},
		{"directory", nil, []string{"k=" + dir}, "not a regular file", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := secretData(tc.literals, tc.files)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("secretData = %v, want an error with %q", err, tc.want)
			}
			if tc.mustNotHave != "" && strings.Contains(err.Error(), tc.mustNotHave) {
				t.Fatalf("error %q shows a value", err)
			}
		})
	}
}

// TestSecretCommands runs persysctl secret against a real gateway and
// scheduler: values go in and never come out.
func TestSecretCommands(t *testing.T) {
	env := secretstest.Start(t)
	dir := t.TempDir()
	t.Setenv("HOME", filepath.Join(dir, "home"))
	t.Setenv(client.EnvConfig, "")
	cfgPath := filepath.Join(dir, "admin.yaml")
	if err := client.WriteConfig(cfgPath, env.Config); err != nil {
		t.Fatal(err)
	}
	const (
		literal  = "literal-secret-value-123"
		fromFile = "file-secret-value-456"
	)
	valueFile := filepath.Join(dir, "token")
	if err := os.WriteFile(valueFile, []byte(fromFile), 0o600); err != nil {
		t.Fatal(err)
	}
	cli := func(args ...string) result {
		t.Helper()
		r := runCLI(t, "", append([]string{"--config", cfgPath}, args...)...)
		for _, v := range []string{literal, fromFile} {
			if strings.Contains(r.out, v) || strings.Contains(r.err, v) {
				t.Fatalf("persysctl %v printed a secret value", args)
			}
		}
		return r
	}

	r := cli("secret", "create", "app", "--from-literal", "password="+literal, "--from-file", valueFile)
	if r.code != 0 || r.out != "secret/app created (version 1, keys: password, token)\n" {
		t.Fatalf("create: code %d out %q err %q", r.code, r.out, r.err)
	}
	r = cli("secret", "create", "app", "--from-literal", "password="+literal)
	if r.code != 0 || r.out != "secret/app updated (version 2, keys: password)\n" {
		t.Fatalf("update: code %d out %q err %q", r.code, r.out, r.err)
	}
	sealed, _, err := env.Store.GetSecret(context.Background(), "app")
	if err != nil {
		t.Fatal(err)
	}
	if data, err := env.Keyring.Open(sealed); err != nil || string(data["password"]) != literal {
		t.Fatalf("stored value differs from the literal (err %v)", err)
	}
	r = cli("secret", "create", "git-cred", "--type", "git", "--from-file", "token="+valueFile)
	if r.code != 0 {
		t.Fatalf("create git: code %d err %q", r.code, r.err)
	}
	r = cli("secret", "create", "reg", "--type", "registry", "--from-literal", "server=r.local")
	if r.code != 1 || !strings.Contains(r.err, `data["username"]`) {
		t.Fatalf("create registry without username: code %d err %q", r.code, r.err)
	}

	checkSecretReads(t, cli)

	// A viewer is refused.
	viewerCfg := filepath.Join(dir, "viewer.yaml")
	if err := client.WriteConfig(viewerCfg, env.IssueUser(t, "vera", pki.RoleViewer)); err != nil {
		t.Fatal(err)
	}
	r = runCLI(t, "", "--config", viewerCfg, "secret", "list")
	if r.code != 1 || !strings.Contains(r.err, "viewer") {
		t.Fatalf("viewer list: code %d err %q", r.code, r.err)
	}

	r = cli("secret", "delete", "app")
	if r.code != 0 || r.out != "secret/app deleted\n" {
		t.Fatalf("delete: code %d out %q err %q", r.code, r.out, r.err)
	}
	r = cli("secret", "get", "app")
	if r.code != 1 || !strings.Contains(r.err, "not found") {
		t.Fatalf("get after delete: code %d err %q", r.code, r.err)
	}
	r = cli("secret", "create", "Bad_Name", "--from-literal", "k=v")
	if r.code != 1 || !strings.Contains(r.err, "NAME") {
		t.Fatalf("bad name: code %d err %q", r.code, r.err)
	}
}

// checkSecretReads lists and gets the secrets TestSecretCommands made, in
// each output format.
func checkSecretReads(t *testing.T, cli func(args ...string) result) {
	t.Helper()
	r := cli("secret", "list")
	if r.code != 0 || !strings.Contains(r.out, "NAME") || !strings.Contains(r.out, "app") || !strings.Contains(r.out, "git-cred") ||
		!strings.Contains(r.out, "git ") {
		t.Fatalf("list: code %d out %q err %q", r.code, r.out, r.err)
	}
	r = cli("-o", "json", "secret", "get", "app")
	if r.code != 0 {
		t.Fatalf("get -o json: code %d err %q", r.code, r.err)
	}
	var got struct {
		Name    string   `json:"name"`
		Keys    []string `json:"keys"`
		Version string   `json:"version"`
	}
	if err := json.Unmarshal([]byte(r.out), &got); err != nil || got.Name != "app" || got.Version != "2" || strings.Join(got.Keys, ",") != "password" {
		t.Fatalf("get -o json = %q (%v)", r.out, err)
	}
	r = cli("-o", "yaml", "secret", "list")
	if r.code != 0 || !strings.Contains(r.out, "name: app") {
		t.Fatalf("list -o yaml: code %d out %q", r.code, r.out)
	}
}
