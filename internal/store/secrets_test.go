package store_test

import (
	"bytes"
	"context"
	"errors"
	"path/filepath"
	"testing"

	persysv1 "github.com/persys-dev/compute/api/persys/v1"
	"github.com/persys-dev/compute/internal/secrets"
	"github.com/persys-dev/compute/internal/store"
	"github.com/persys-dev/compute/internal/store/storetest"
)

func testKeyring(t *testing.T) (string, *secrets.Keyring) {
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

func TestSecretsCRUD(t *testing.T) {
	s, _ := storetest.New(t)
	ctx := context.Background()
	_, k := testKeyring(t)
	seal := func(name string, version uint64, v string) *persysv1.SealedSecret {
		t.Helper()
		sec, err := k.Seal(&persysv1.SecretInfo{Name: name, Type: persysv1.SecretType_SECRET_TYPE_OPAQUE, Version: version},
			map[string][]byte{"v": []byte(v)})
		if err != nil {
			t.Fatal(err)
		}
		return sec
	}

	if _, _, err := s.GetSecret(ctx, "db"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("GetSecret of nothing = %v, want ErrNotFound", err)
	}
	rev, err := s.PutSecret(ctx, seal("db", 1, "one"), 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.PutSecret(ctx, seal("db", 1, "again"), 0); !errors.Is(err, store.ErrExists) {
		t.Fatalf("second create = %v, want ErrExists", err)
	}
	got, grev, err := s.GetSecret(ctx, "db")
	if err != nil || grev != rev || got.GetInfo().GetVersion() != 1 {
		t.Fatalf("GetSecret = %v rev %d, %v; want version 1 at rev %d", got.GetInfo(), grev, err, rev)
	}
	rev2, err := s.PutSecret(ctx, seal("db", 2, "two"), rev)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.PutSecret(ctx, seal("db", 3, "three"), rev); !errors.Is(err, store.ErrConflict) {
		t.Fatalf("update at a stale revision = %v, want ErrConflict", err)
	}
	got, _, err = s.GetSecret(ctx, "db")
	if err != nil {
		t.Fatal(err)
	}
	data, err := k.Open(got)
	if err != nil || string(data["v"]) != "two" || got.GetInfo().GetVersion() != 2 {
		t.Fatalf("after update: version %d, open err %v", got.GetInfo().GetVersion(), err)
	}
	if _, err := s.PutSecret(ctx, seal("api", 1, "x"), 0); err != nil {
		t.Fatal(err)
	}
	list, err := s.ListSecrets(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(list) != 2 || list[0].GetInfo().GetName() != "api" || list[1].GetInfo().GetName() != "db" {
		t.Fatalf("ListSecrets = %v, want api, db", list)
	}
	if err := s.DeleteSecret(ctx, "db"); err != nil {
		t.Fatal(err)
	}
	if err := s.DeleteSecret(ctx, "db"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("second delete = %v, want ErrNotFound", err)
	}
	if _, err := s.PutSecret(ctx, seal("db", 3, "three"), rev2); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("update of a deleted secret = %v, want ErrNotFound", err)
	}

	// Unsealed or badly named values are refused.
	for name, bad := range map[string]*persysv1.SealedSecret{
		"nil":      nil,
		"unsealed": {Info: &persysv1.SecretInfo{Name: "x"}},
		"slash":    {Info: &persysv1.SecretInfo{Name: "a/b"}, KeyId: "k", Nonce: []byte{1}, Ciphertext: []byte{1}},
	} {
		if _, err := s.PutSecret(ctx, bad, 0); !errors.Is(err, store.ErrInvalid) {
			t.Errorf("PutSecret(%s) = %v, want ErrInvalid", name, err)
		}
	}
}

// TestSecretRawValueIsNotPlaintext reads the etcd key itself and checks
// that neither the value nor anything of it is stored in clear.
func TestSecretRawValueIsNotPlaintext(t *testing.T) {
	s, cli := storetest.New(t)
	ctx := context.Background()
	_, k := testKeyring(t)
	const value = "correct-horse-battery-staple-4711"
	sec, err := k.Seal(&persysv1.SecretInfo{Name: "db", Type: persysv1.SecretType_SECRET_TYPE_OPAQUE, Version: 1},
		map[string][]byte{"password": []byte(value)})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.PutSecret(ctx, sec, 0); err != nil {
		t.Fatal(err)
	}
	resp, err := cli.Get(ctx, s.Prefix()+"/secrets/db")
	if err != nil {
		t.Fatal(err)
	}
	if len(resp.Kvs) != 1 {
		t.Fatalf("raw read of %s/secrets/db found %d keys, want 1", s.Prefix(), len(resp.Kvs))
	}
	raw := resp.Kvs[0].Value
	if bytes.Contains(raw, []byte(value)) {
		t.Fatal("the raw etcd value contains the secret value in clear")
	}
	// A distinctive 8-byte slice of the value is absent too.
	if bytes.Contains(raw, []byte(value[8:16])) {
		t.Fatal("the raw etcd value contains part of the secret value in clear")
	}
	// The key names are metadata and stay readable (the API lists them).
	if !bytes.Contains(raw, []byte("password")) {
		t.Fatal("the raw value lost the key names of the secret info")
	}
}

// TestSecretKeyRotation seals with key A, rotates to B: what was stored
// under A still opens, and new writes use B.
func TestSecretKeyRotation(t *testing.T) {
	s, _ := storetest.New(t)
	ctx := context.Background()
	path, k := testKeyring(t)
	keyA := k.PrimaryID()
	secA, err := k.Seal(&persysv1.SecretInfo{Name: "a", Type: persysv1.SecretType_SECRET_TYPE_OPAQUE, Version: 1},
		map[string][]byte{"v": []byte("value-a")})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.PutSecret(ctx, secA, 0); err != nil {
		t.Fatal(err)
	}
	keyB, err := secrets.AddKey(path)
	if err != nil {
		t.Fatal(err)
	}
	k2, err := secrets.Load(path) // a restarted scheduler
	if err != nil {
		t.Fatal(err)
	}
	stored, _, err := s.GetSecret(ctx, "a")
	if err != nil {
		t.Fatal(err)
	}
	if stored.GetKeyId() != keyA {
		t.Fatalf("stored key_id = %q, want %q", stored.GetKeyId(), keyA)
	}
	if data, err := k2.Open(stored); err != nil || string(data["v"]) != "value-a" {
		t.Fatalf("open after rotation: %v", err)
	}
	secB, err := k2.Seal(&persysv1.SecretInfo{Name: "b", Type: persysv1.SecretType_SECRET_TYPE_OPAQUE, Version: 1},
		map[string][]byte{"v": []byte("value-b")})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.PutSecret(ctx, secB, 0); err != nil {
		t.Fatal(err)
	}
	storedB, _, err := s.GetSecret(ctx, "b")
	if err != nil {
		t.Fatal(err)
	}
	if storedB.GetKeyId() != keyB {
		t.Fatalf("new write sealed with %q, want %q", storedB.GetKeyId(), keyB)
	}
	if data, err := k2.Open(storedB); err != nil || string(data["v"]) != "value-b" {
		t.Fatalf("open of the new write: %v", err)
	}
}
