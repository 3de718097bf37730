package cloudinit

import (
	"errors"
	"strings"
	"testing"

	persysv1 "github.com/persys-dev/compute/api/persys/v1"
	yaml "go.yaml.in/yaml/v3"
)

// FuzzValidate feeds a user's cloud-init documents and login to Validate
// and Render: they never panic, refuse only with ErrInvalid naming a
// field, and what they accept renders into documents where the login's
// user and keys are exactly those given (nothing in the user's text can
// inject another user or key) and meta-data's instance-id is ours.
func FuzzValidate(f *testing.F) {
	f.Add("#cloud-config\nruncmd: [echo hi]\n", "a: b\n", "version: 2\nethernets: {}\n", "", "ops", "$6$salt$abc", testKey, "")
	f.Add("#!/bin/sh\necho hi\n", "", "", "#!/bin/sh\n", "ops", "", testKey, "pw")
	f.Add("#cloud-config\nusers: ops\n", "", "", "", "ops", "", "", "")
	f.Add("#cloud-config\nusers:\n  - default\n  - {name: evil, sudo: ALL}\nssh_pwauth: false\n", "instance-id: theirs\nlocal-hostname: x\n", "", "", "ops", "", testKey, "")
	f.Add("#cloud-config\n# comment\n{}\n", "a: [\n", "just text", "hello", "Bad User", "plain", "hello", "")
	f.Add("#cloud-config \r\nx: &a [*a]\n", "a: 1\n---\nb: 2\n", "", "", "root", "$6$a$b", testKey+"\n"+testKey, "\x00")
	f.Add("", "", "", "", "ops", "", "ssh-ed25519 AAAA x\n  - ssh-rsa injected", "p\nw")
	f.Add("#cloud-config\nusers: !!seq [default]\n", "", "", "", "ops", "$1$\"x", "ssh-ed25519 \"AAAA: x", "")
	f.Fuzz(func(t *testing.T, userData, metaData, network, vendor, user, hash, key, password string) {
		ci := &persysv1.CloudInit{UserData: userData, MetaData: metaData, NetworkConfig: network, VendorData: vendor}
		login := &persysv1.VMLogin{User: user, PasswordHash: hash}
		if key != "" {
			login.SshAuthorizedKeys = []string{key}
		}
		if err := Validate(ci, login); err != nil {
			checkRefusal(t, err)
			return
		}
		seed, err := Render(Input{CloudInit: ci, Login: login, Password: password, InstanceID: "uid-r1", Hostname: "vm"})
		if err != nil {
			checkRefusal(t, err)
			return
		}
		var md map[string]any
		if err := yaml.Unmarshal([]byte(seed.MetaData), &md); err != nil || md["instance-id"] != "uid-r1" || md["local-hostname"] != "vm" {
			t.Fatalf("meta-data %q: %v; want our instance-id and hostname", seed.MetaData, err)
		}
		if user == "" || strings.HasPrefix(userData, "#!") {
			return // passed through, or a script part beside our login part
		}
		if hash != "" && password != "" {
			password = "" // the hash wins (userNode)
		}
		checkLogin(t, seed.UserData, user, hash, password, key)
	})
}

func checkRefusal(t *testing.T, err error) {
	t.Helper()
	if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), "spec.vm.") {
		t.Fatalf("refusal %v is not ErrInvalid naming a spec.vm field", err)
	}
}

// checkLogin checks that the last user of the rendered cloud-config is
// exactly the login, and that it is the only user carrying the login's
// key or password.
func checkLogin(t *testing.T, userData, user, hash, password, key string) {
	t.Helper()
	var doc struct {
		Users []any `yaml:"users"`
	}
	if !strings.HasPrefix(userData, "#cloud-config\n") {
		t.Fatalf("user-data does not start with #cloud-config:\n%s", userData)
	}
	if err := yaml.Unmarshal([]byte(userData), &doc); err != nil || len(doc.Users) == 0 {
		t.Fatalf("rendered user-data has no users (%v):\n%s", err, userData)
	}
	last, ok := doc.Users[len(doc.Users)-1].(map[string]any)
	if !ok || last["name"] != user {
		t.Fatalf("last user = %v, want %q:\n%s", doc.Users[len(doc.Users)-1], user, userData)
	}
	if hash != "" && last["passwd"] != hash {
		t.Fatalf("passwd = %v, want %q", last["passwd"], hash)
	}
	if password != "" && last["plain_text_passwd"] != password {
		t.Fatalf("plain_text_passwd = %v, want %q", last["plain_text_passwd"], password)
	}
	keys, _ := last["ssh_authorized_keys"].([]any)
	if key == "" && len(keys) != 0 || key != "" && (len(keys) != 1 || keys[0] != strings.TrimSpace(key)) {
		t.Fatalf("ssh_authorized_keys = %v, want [%q]", keys, strings.TrimSpace(key))
	}
}
