package cloudinit

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	persysv1 "github.com/persys-dev/compute/api/persys/v1"
	yaml "go.yaml.in/yaml/v3"

	"github.com/persys-dev/compute/internal/testutil/need"
)

const testKey = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIFakeKeyForTestsOnly test@persys"

func TestValidate(t *testing.T) {
	big := "#cloud-config\nx: \"" + strings.Repeat("a", MaxDocumentBytes) + "\"\n"
	tests := []struct {
		name    string
		ci      *persysv1.CloudInit
		login   *persysv1.VMLogin
		wantErr string // substring; "" means valid
	}{
		{name: "nil", ci: nil, login: nil},
		{name: "cloud-config", ci: &persysv1.CloudInit{UserData: "#cloud-config\nruncmd: [echo hi]\n"}},
		{name: "script", ci: &persysv1.CloudInit{UserData: "#!/bin/sh\necho hi\n"}},
		{name: "meta and network", ci: &persysv1.CloudInit{MetaData: "a: b\n", NetworkConfig: "version: 2\nethernets: {}\n"}},
		{name: "invalid yaml", ci: &persysv1.CloudInit{UserData: "#cloud-config\nfoo: [unclosed\n"}, wantErr: FieldUserData + ": is not valid YAML"},
		{name: "not a mapping", ci: &persysv1.CloudInit{UserData: "#cloud-config\n- a\n- b\n"}, wantErr: FieldUserData + ": must be a YAML mapping"},
		{name: "no header", ci: &persysv1.CloudInit{UserData: "runcmd: []\n"}, wantErr: FieldUserData + ": must start with #cloud-config"},
		{name: "bad header", ci: &persysv1.CloudInit{UserData: "#cloud-configx\n"}, wantErr: FieldUserData + ": the first line"},
		{name: "nul", ci: &persysv1.CloudInit{UserData: "#!/bin/sh\necho \x00\n"}, wantErr: FieldUserData + ": contains a NUL byte"},
		{name: "oversize", ci: &persysv1.CloudInit{UserData: big}, wantErr: FieldUserData + ": is 65"},
		{name: "vendor bad", ci: &persysv1.CloudInit{VendorData: "hello"}, wantErr: FieldVendorData},
		{name: "meta bad yaml", ci: &persysv1.CloudInit{MetaData: "a: [\n"}, wantErr: FieldMetaData + ": is not valid YAML"},
		{name: "network scalar", ci: &persysv1.CloudInit{NetworkConfig: "just text"}, wantErr: FieldNetworkConfig + ": must be a YAML mapping"},
		{name: "two docs", ci: &persysv1.CloudInit{MetaData: "a: 1\n---\nb: 2\n"}, wantErr: FieldMetaData + ": holds more than one"},
		{name: "users not a list", ci: &persysv1.CloudInit{UserData: "#cloud-config\nusers: ops\n"}, login: &persysv1.VMLogin{User: "ops"}, wantErr: FieldUserData + ": users must be a list"},
		{name: "users scalar without login", ci: &persysv1.CloudInit{UserData: "#cloud-config\nusers: ops\n"}},
		{name: "login ok", login: &persysv1.VMLogin{User: "ops", PasswordHash: "$6$salt$abc", SshAuthorizedKeys: []string{testKey}}},
		{name: "login generate", login: &persysv1.VMLogin{User: "ops", GeneratePassword: true, PasswordSecret: "vm-pass"}},
		{name: "login no user", login: &persysv1.VMLogin{SshAuthorizedKeys: []string{testKey}}, wantErr: FieldLoginUser + ": is required"},
		{name: "login bad user", login: &persysv1.VMLogin{User: "Bad User"}, wantErr: FieldLoginUser},
		{name: "login root", login: &persysv1.VMLogin{User: "root"}, wantErr: FieldLoginUser + ": root"},
		{name: "hash and generate", login: &persysv1.VMLogin{User: "ops", PasswordHash: "$6$a$b", GeneratePassword: true, PasswordSecret: "s"}, wantErr: FieldGeneratePass},
		{name: "bad hash", login: &persysv1.VMLogin{User: "ops", PasswordHash: "plain"}, wantErr: FieldPasswordHash},
		{name: "generate without secret", login: &persysv1.VMLogin{User: "ops", GeneratePassword: true}, wantErr: FieldPasswordSecret + ": is required"},
		{name: "bad key", login: &persysv1.VMLogin{User: "ops", SshAuthorizedKeys: []string{"hello"}}, wantErr: FieldSSHKeys + "[0]"},
		{name: "multiline key", login: &persysv1.VMLogin{User: "ops", SshAuthorizedKeys: []string{testKey, testKey + "\n" + testKey}}, wantErr: FieldSSHKeys + "[1]: must be one line"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := Validate(tt.ci, tt.login)
			if tt.wantErr == "" {
				if err != nil {
					t.Fatalf("Validate: %v", err)
				}
				return
			}
			if err == nil {
				t.Fatalf("Validate: no error, want %q", tt.wantErr)
			}
			if !errors.Is(err, ErrInvalid) {
				t.Errorf("error %v does not wrap ErrInvalid", err)
			}
			if !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("error %q does not contain %q", err, tt.wantErr)
			}
		})
	}
}

func parseCloudConfig(t *testing.T, s string) map[string]any {
	t.Helper()
	if !strings.HasPrefix(s, "#cloud-config\n") {
		t.Fatalf("user-data does not start with #cloud-config:\n%s", s)
	}
	var m map[string]any
	if err := yaml.Unmarshal([]byte(s), &m); err != nil {
		t.Fatalf("rendered user-data is not YAML: %v\n%s", err, s)
	}
	return m
}

func TestRenderMergesLogin(t *testing.T) {
	in := Input{
		CloudInit: &persysv1.CloudInit{
			UserData: "#cloud-config\n# keep this comment\nruncmd:\n  - echo MARKER-42\nusers:\n  - default\n  - name: other\n",
			MetaData: "region: test\ninstance-id: theirs\n",
		},
		Login:      &persysv1.VMLogin{User: "ops", GeneratePassword: true, PasswordSecret: "vm-pass", SshAuthorizedKeys: []string{testKey}},
		Password:   "s3cret-pw",
		InstanceID: InstanceID("uid-1", 7),
		Hostname:   Hostname("My_VM.01"),
		Metadata:   map[string]string{"team": "core", "region": "ignored"},
	}
	seed, err := Render(in)
	if err != nil {
		t.Fatalf("Render: %v", err)
	}
	if !strings.Contains(seed.UserData, "# keep this comment") {
		t.Errorf("comment lost:\n%s", seed.UserData)
	}
	m := parseCloudConfig(t, seed.UserData)
	users, _ := m["users"].([]any)
	if len(users) != 3 || users[0] != "default" {
		t.Fatalf("users = %#v, want default, other, ops", m["users"])
	}
	u, _ := users[2].(map[string]any)
	if u["name"] != "ops" || u["plain_text_passwd"] != "s3cret-pw" || u["lock_passwd"] != false {
		t.Errorf("login user = %#v", u)
	}
	keys, _ := u["ssh_authorized_keys"].([]any)
	if len(keys) != 1 || keys[0] != testKey {
		t.Errorf("ssh keys = %#v", u["ssh_authorized_keys"])
	}
	if m["ssh_pwauth"] != true {
		t.Errorf("ssh_pwauth = %#v, want true", m["ssh_pwauth"])
	}
	if rc, _ := m["runcmd"].([]any); len(rc) != 1 || rc[0] != "echo MARKER-42" {
		t.Errorf("runcmd = %#v", m["runcmd"])
	}

	var md map[string]any
	if err := yaml.Unmarshal([]byte(seed.MetaData), &md); err != nil {
		t.Fatalf("meta-data: %v", err)
	}
	if md["instance-id"] != "uid-1-r7" || md["local-hostname"] != "my-vm-01" || md["region"] != "test" || md["team"] != "core" {
		t.Errorf("meta-data = %#v", md)
	}
}

func TestRenderHashNoUserData(t *testing.T) {
	seed, err := Render(Input{
		Login:      &persysv1.VMLogin{User: "ops", PasswordHash: "$6$salt$hash"},
		InstanceID: "u-r1",
	})
	if err != nil {
		t.Fatalf("Render: %v", err)
	}
	m := parseCloudConfig(t, seed.UserData)
	users, _ := m["users"].([]any)
	if len(users) != 2 {
		t.Fatalf("users = %#v", m["users"])
	}
	u := users[1].(map[string]any)
	if u["passwd"] != "$6$salt$hash" || u["plain_text_passwd"] != nil {
		t.Errorf("user = %#v", u)
	}
}

func TestRenderScriptMultipart(t *testing.T) {
	script := "#!/bin/sh\necho MARKER-script\n"
	seed, err := Render(Input{
		CloudInit:  &persysv1.CloudInit{UserData: script},
		Login:      &persysv1.VMLogin{User: "ops", SshAuthorizedKeys: []string{testKey}},
		InstanceID: "u-r1",
	})
	if err != nil {
		t.Fatalf("Render: %v", err)
	}
	ud := seed.UserData
	if !strings.HasPrefix(ud, "Content-Type: multipart/mixed; boundary=") {
		t.Fatalf("not multipart:\n%s", ud)
	}
	for _, want := range []string{"Content-Type: text/cloud-config", "Content-Type: text/x-shellscript", script, testKey, "--persys-cloudinit-boundary--"} {
		if !strings.Contains(ud, want) {
			t.Errorf("multipart lacks %q:\n%s", want, ud)
		}
	}
}

func TestRenderWithoutLoginPassesThrough(t *testing.T) {
	ud := "#cloud-config\n# comment\nruncmd: [echo a]\n"
	seed, err := Render(Input{CloudInit: &persysv1.CloudInit{UserData: ud}, InstanceID: "u-r2"})
	if err != nil {
		t.Fatalf("Render: %v", err)
	}
	if seed.UserData != ud {
		t.Errorf("user-data changed:\n%s", seed.UserData)
	}
	if !strings.Contains(seed.MetaData, "instance-id: u-r2") {
		t.Errorf("meta-data = %q", seed.MetaData)
	}
}

func TestRenderMissingPassword(t *testing.T) {
	_, err := Render(Input{Login: &persysv1.VMLogin{User: "ops", GeneratePassword: true, PasswordSecret: "s"}})
	if err == nil || !strings.Contains(err.Error(), FieldPasswordSecret) {
		t.Fatalf("Render = %v, want an error naming %s", err, FieldPasswordSecret)
	}
}

func TestHostname(t *testing.T) {
	for in, want := range map[string]string{
		"web":                   "web",
		"Web_Server.1":          "web-server-1",
		"---":                   "vm",
		strings.Repeat("a", 80): strings.Repeat("a", 63),
	} {
		if got := Hostname(in); got != want {
			t.Errorf("Hostname(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestBuildSeedISO(t *testing.T) {
	if _, err := exec.LookPath(GenISOImage); err != nil {
		need.Missing(t, "%s is not installed: %v", GenISOImage, err)
	}
	dir := t.TempDir()
	iso, err := BuildSeed(context.Background(), dir, Input{
		CloudInit:  &persysv1.CloudInit{UserData: "#cloud-config\nruncmd: [echo MARKER-iso]\n", NetworkConfig: "version: 2\n"},
		Login:      &persysv1.VMLogin{User: "ops", SshAuthorizedKeys: []string{testKey}},
		InstanceID: "u-r3",
		Hostname:   "vm",
	})
	if err != nil {
		t.Fatalf("BuildSeed: %v", err)
	}
	if iso != filepath.Join(dir, SeedFile) {
		t.Errorf("iso path = %q", iso)
	}
	label, err := ReadVolumeLabel(iso)
	if err != nil {
		t.Fatalf("ReadVolumeLabel: %v", err)
	}
	if label != VolumeLabel {
		t.Errorf("volume label = %q, want %q", label, VolumeLabel)
	}
	if out, err := exec.Command("isoinfo", "-d", "-i", iso).Output(); err == nil {
		if !strings.Contains(string(out), "Volume id: cidata") {
			t.Errorf("isoinfo -d:\n%s", out)
		}
	}
	if out, err := exec.Command("isoinfo", "-J", "-x", "/user-data", "-i", iso).Output(); err == nil {
		if !strings.Contains(string(out), "MARKER-iso") || !strings.Contains(string(out), testKey) {
			t.Errorf("user-data in the ISO:\n%s", out)
		}
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != 1 {
		t.Errorf("staging files left behind: %v", entries)
	}
}
