package secrets_test

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"google.golang.org/protobuf/proto"

	persysv1 "github.com/persys-dev/compute/api/persys/v1"
	"github.com/persys-dev/compute/internal/secrets"
)

const opaque = persysv1.SecretType_SECRET_TYPE_OPAQUE

func newKeyFile(t *testing.T) (string, *secrets.Keyring) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "secrets.key")
	if _, err := secrets.GenerateKeyFile(path); err != nil {
		t.Fatal(err)
	}
	k, err := secrets.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	return path, k
}

func TestSealOpenRoundTrip(t *testing.T) {
	_, k := newKeyFile(t)
	data := map[string][]byte{"password": []byte("hunter2-very-secret"), "user": []byte("admin")}
	sealed, err := k.Seal(&persysv1.SecretInfo{Name: "db", Type: opaque, Version: 3}, data)
	if err != nil {
		t.Fatal(err)
	}
	if sealed.GetKeyId() != k.PrimaryID() {
		t.Fatalf("key_id = %q, want primary %q", sealed.GetKeyId(), k.PrimaryID())
	}
	if got := sealed.GetInfo().GetKeys(); strings.Join(got, ",") != "password,user" {
		t.Fatalf("info.keys = %v, want [password user]", got)
	}
	raw, _ := proto.Marshal(sealed)
	if bytes.Contains(raw, []byte("hunter2-very-secret")) {
		t.Fatal("sealed secret contains the plaintext value")
	}
	got, err := k.Open(sealed)
	if err != nil {
		t.Fatal(err)
	}
	if string(got["password"]) != "hunter2-very-secret" || string(got["user"]) != "admin" || len(got) != 2 {
		t.Fatalf("Open returned other data (%d keys)", len(got))
	}

	// Two seals of the same data differ (random nonce).
	again, err := k.Seal(&persysv1.SecretInfo{Name: "db", Type: opaque}, data)
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Equal(again.GetNonce(), sealed.GetNonce()) || bytes.Equal(again.GetCiphertext(), sealed.GetCiphertext()) {
		t.Fatal("two seals share nonce or ciphertext")
	}
}

func TestOpenRefusesSwappedOrTampered(t *testing.T) {
	_, k := newKeyFile(t)
	a, err := k.Seal(&persysv1.SecretInfo{Name: "a", Type: opaque}, map[string][]byte{"v": []byte("A")})
	if err != nil {
		t.Fatal(err)
	}
	// The ciphertext of a stored under the name b does not open.
	swapped := proto.Clone(a).(*persysv1.SealedSecret)
	swapped.Info.Name = "b"
	if _, err := k.Open(swapped); !errors.Is(err, secrets.ErrDecrypt) {
		t.Fatalf("Open of a renamed ciphertext = %v, want ErrDecrypt", err)
	}
	tampered := proto.Clone(a).(*persysv1.SealedSecret)
	tampered.Ciphertext[0] ^= 1
	if _, err := k.Open(tampered); !errors.Is(err, secrets.ErrDecrypt) {
		t.Fatalf("Open of a tampered ciphertext = %v, want ErrDecrypt", err)
	}
	unknown := proto.Clone(a).(*persysv1.SealedSecret)
	unknown.KeyId = "nope"
	if _, err := k.Open(unknown); !errors.Is(err, secrets.ErrUnknownKey) {
		t.Fatalf("Open with an unknown key id = %v, want ErrUnknownKey", err)
	}
	// Another keyring (other key, same id) does not open it either.
	other, err := secrets.NewKeyring([]string{k.PrimaryID()}, [][]byte{bytes.Repeat([]byte{7}, 32)})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := other.Open(a); !errors.Is(err, secrets.ErrDecrypt) {
		t.Fatalf("Open with another key of the same id = %v, want ErrDecrypt", err)
	}
}

func TestKeyRotation(t *testing.T) {
	path, k := newKeyFile(t)
	oldID := k.PrimaryID()
	sealedA, err := k.Seal(&persysv1.SecretInfo{Name: "s", Type: opaque}, map[string][]byte{"v": []byte("under-A")})
	if err != nil {
		t.Fatal(err)
	}
	newID, err := secrets.AddKey(path)
	if err != nil {
		t.Fatal(err)
	}
	if newID == oldID {
		t.Fatal("AddKey returned the old key id")
	}
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Fatalf("rotated key file mode = %04o, want 0600", fi.Mode().Perm())
	}
	// Before Reload the keyring still seals with A.
	if k.PrimaryID() != oldID {
		t.Fatalf("primary before reload = %q, want %q", k.PrimaryID(), oldID)
	}
	if err := k.Reload(); err != nil {
		t.Fatal(err)
	}
	if k.PrimaryID() != newID {
		t.Fatalf("primary after reload = %q, want %q", k.PrimaryID(), newID)
	}
	if ids := k.KeyIDs(); len(ids) != 2 || ids[0] != newID || ids[1] != oldID {
		t.Fatalf("KeyIDs = %v, want [%s %s]", ids, newID, oldID)
	}
	got, err := k.Open(sealedA)
	if err != nil || string(got["v"]) != "under-A" {
		t.Fatalf("Open of a value sealed with the old key after rotation: %v", err)
	}
	sealedB, err := k.Seal(&persysv1.SecretInfo{Name: "s", Type: opaque}, map[string][]byte{"v": []byte("under-B")})
	if err != nil {
		t.Fatal(err)
	}
	if sealedB.GetKeyId() != newID {
		t.Fatalf("new write sealed with %q, want the new primary %q", sealedB.GetKeyId(), newID)
	}
	// A fresh load (a restarted scheduler) opens both.
	k2, err := secrets.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range []*persysv1.SealedSecret{sealedA, sealedB} {
		if _, err := k2.Open(s); err != nil {
			t.Fatalf("reloaded keyring: Open(key %s): %v", s.GetKeyId(), err)
		}
	}
}

func TestKeyFileChecks(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "k.json")
	if _, err := secrets.GenerateKeyFile(path); err != nil {
		t.Fatal(err)
	}
	if _, err := secrets.GenerateKeyFile(path); !errors.Is(err, os.ErrExist) {
		t.Fatalf("GenerateKeyFile over an existing file = %v, want os.ErrExist", err)
	}
	if err := os.Chmod(path, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := secrets.Load(path); !errors.Is(err, secrets.ErrKeyFile) || !strings.Contains(err.Error(), "chmod 600") {
		t.Fatalf("Load of a world-readable key file = %v, want ErrKeyFile naming chmod 600", err)
	}
	if _, err := secrets.Load(filepath.Join(dir, "missing")); !errors.Is(err, secrets.ErrKeyFile) {
		t.Fatalf("Load of a missing file = %v, want ErrKeyFile", err)
	}
	cases := map[string]string{
		"not json":  "id:abc",
		"no keys":   `{"keys":[]}`,
		"short key": `{"keys":[{"id":"a","key":"AAAA"}]}`,
		"bad id":    `{"keys":[{"id":"a/b","key":"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA="}]}`,
		"dup id":    `{"keys":[{"id":"a","key":"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA="},{"id":"a","key":"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA="}]}`,
	}
	for name, content := range cases {
		t.Run(name, func(t *testing.T) {
			p := filepath.Join(t.TempDir(), "k")
			if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
				t.Fatal(err)
			}
			if _, err := secrets.Load(p); !errors.Is(err, secrets.ErrKeyFile) {
				t.Fatalf("Load = %v, want ErrKeyFile", err)
			}
		})
	}
}

func TestValidate(t *testing.T) {
	reg := persysv1.SecretType_SECRET_TYPE_REGISTRY
	git := persysv1.SecretType_SECRET_TYPE_GIT
	b := func(kv ...string) map[string][]byte {
		m := map[string][]byte{}
		for i := 0; i+1 < len(kv); i += 2 {
			m[kv[i]] = []byte(kv[i+1])
		}
		return m
	}
	cases := []struct {
		name    string
		secret  string
		typ     persysv1.SecretType
		data    map[string][]byte
		wantErr string // substring; "" means valid
	}{
		{"opaque ok", "db-pass", opaque, b("PASSWORD", "x"), ""},
		{"dotted name ok", "team.db", opaque, b("a.txt", "x"), ""},
		{"empty name", "", opaque, b("k", "v"), "name"},
		{"uppercase name", "DB", opaque, b("k", "v"), "name"},
		{"slash in name", "a/b", opaque, b("k", "v"), "name"},
		{"leading dash", "-a", opaque, b("k", "v"), "start and end"},
		{"long label", strings.Repeat("a", 64), opaque, b("k", "v"), "longer than 63"},
		{"long name", strings.Repeat("a.", 127) + "a", opaque, b("k", "v"), "longer than 253"},
		{"no type", "x", persysv1.SecretType_SECRET_TYPE_UNSPECIFIED, b("k", "v"), "type"},
		{"no data", "x", opaque, nil, "at least one key"},
		{"slash in key", "x", opaque, b("a/b", "v"), `data["a/b"]`},
		{"dotdot key", "x", opaque, b("..", "v"), "reserved"},
		{"too big", "x", opaque, map[string][]byte{"k": make([]byte, secrets.MaxDataSize)}, "at most"},
		{"registry ok", "r", reg, b("server", "reg.local:5000", "username", "u", "password", "p"), ""},
		{"registry no password", "r", reg, b("server", "reg.local", "username", "u"), `data["password"]`},
		{"git token ok", "g", git, b("token", "t"), ""},
		{"git basic ok", "g", git, b("username", "u", "password", "p"), ""},
		{"git username only", "g", git, b("username", "u"), "token"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			err := secrets.Validate(tc.secret, tc.typ, tc.data)
			if tc.wantErr == "" {
				if err != nil {
					t.Fatalf("Validate = %v, want nil", err)
				}
				return
			}
			if !errors.Is(err, secrets.ErrInvalid) || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("Validate = %v, want ErrInvalid mentioning %q", err, tc.wantErr)
			}
		})
	}
}

func TestValidateErrorsCarryNoValue(t *testing.T) {
	const value = "TOPSECRET-value-123"
	for _, data := range []map[string][]byte{
		{"bad/key": []byte(value)},
		{"server": []byte(value + " x"), "username": []byte(value), "password": []byte(value)},
	} {
		err := secrets.Validate("x", persysv1.SecretType_SECRET_TYPE_REGISTRY, data)
		if err == nil || strings.Contains(err.Error(), value) {
			t.Fatalf("Validate = %v; want an error without the value", err)
		}
	}
}

func TestParseTypeAndPassword(t *testing.T) {
	for in, want := range map[string]persysv1.SecretType{
		"": opaque, "opaque": opaque, "Registry": persysv1.SecretType_SECRET_TYPE_REGISTRY,
		"git": persysv1.SecretType_SECRET_TYPE_GIT, "SECRET_TYPE_GIT": persysv1.SecretType_SECRET_TYPE_GIT,
	} {
		got, err := secrets.ParseType(in)
		if err != nil || got != want {
			t.Errorf("ParseType(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	if _, err := secrets.ParseType("tls"); !errors.Is(err, secrets.ErrInvalid) {
		t.Errorf("ParseType(tls) = %v, want ErrInvalid", err)
	}
	seen := map[string]bool{}
	for range 20 {
		p, err := secrets.GeneratePassword()
		if err != nil {
			t.Fatal(err)
		}
		if len(p) != 24 || seen[p] {
			t.Fatalf("GeneratePassword gave %d characters or a repeat", len(p))
		}
		seen[p] = true
	}
}
