// Package secrets owns the encryption of secrets at rest: a Keyring of
// AES-256 keys loaded from a key file, sealing a secret's values with
// AES-256-GCM under the primary key, opening them with the key the sealed
// secret names, and the validation of secret names, key names, types and
// sizes. The store keeps only SealedSecret values; the scheduler opens them
// only to deliver values to the agent that runs a workload referencing them.
//
// The key file is JSON, mode 0600:
//
//	{"keys":[{"id":"k-...","key":"<base64 of 32 bytes>"}, ...]}
//
// The first key is the primary: new writes are sealed with it. Older keys
// stay so that what was sealed with them still opens. GenerateKeyFile
// writes a new file with one key; AddKey rotates (a new primary in front).
// A Keyring reads its file once at Load and again on Reload (the scheduler
// calls Reload on SIGHUP); nothing is cached elsewhere. Callers must never
// log values or keys; errors of this package never contain either.
package secrets

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"time"

	"google.golang.org/protobuf/proto"

	persysv1 "github.com/persys-dev/compute/api/persys/v1"
)

// Sentinel errors; wrapped with context.
var (
	// ErrInvalid: an argument failed validation; the message names the
	// field and the reason.
	ErrInvalid = errors.New("invalid secret")
	// ErrUnknownKey: a sealed secret names a key the keyring does not hold.
	ErrUnknownKey = errors.New("unknown encryption key")
	// ErrDecrypt: the ciphertext does not open (wrong key, tampered, or
	// sealed under another name).
	ErrDecrypt = errors.New("secret does not decrypt")
	// ErrKeyFile: the key file is missing, unreadable or malformed.
	ErrKeyFile = errors.New("bad secrets key file")
)

const (
	keySize = 32
	// maxKeys bounds a key file (rotations keep old keys).
	maxKeys = 1000
	// maxKeyFileSize bounds the key file read into memory.
	maxKeyFileSize = 1 << 20
)

type keyFile struct {
	Keys []keyEntry `json:"keys"`
}

type keyEntry struct {
	ID      string    `json:"id"`
	Key     string    `json:"key"`
	Created time.Time `json:"created,omitzero"`
}

// Keyring holds the AES-256 keys of a key file. It is safe for concurrent
// use; Reload swaps the keys atomically.
type Keyring struct {
	path string

	mu      sync.RWMutex
	keys    map[string]cipher.AEAD
	order   []string
	primary string
}

// Load reads the key file at path. The file must not be readable by group
// or others.
func Load(path string) (*Keyring, error) {
	k := &Keyring{path: path}
	if err := k.Reload(); err != nil {
		return nil, err
	}
	return k, nil
}

// NewKeyring builds a keyring from raw keys, the first one primary; for
// tests and tools that hold keys in memory.
func NewKeyring(ids []string, keys [][]byte) (*Keyring, error) {
	if len(ids) != len(keys) || len(ids) == 0 {
		return nil, fmt.Errorf("secrets: keyring: %w: need as many ids as keys, at least one", ErrKeyFile)
	}
	entries := make([]keyEntry, len(ids))
	for i := range ids {
		entries[i] = keyEntry{ID: ids[i], Key: base64.StdEncoding.EncodeToString(keys[i])}
	}
	k := &Keyring{}
	if err := k.set(entries, "keyring"); err != nil {
		return nil, err
	}
	return k, nil
}

// Path is the key file the keyring was loaded from ("" when built in
// memory).
func (k *Keyring) Path() string { return k.path }

// Reload reads the key file again (after a rotation). On error the keys
// in use stay.
func (k *Keyring) Reload() error {
	if k.path == "" {
		return nil
	}
	kf, err := readKeyFile(k.path)
	if err != nil {
		return err
	}
	return k.set(kf.Keys, k.path)
}

func (k *Keyring) set(entries []keyEntry, where string) error {
	if len(entries) == 0 {
		return fmt.Errorf("secrets: %s: %w: no keys", where, ErrKeyFile)
	}
	if len(entries) > maxKeys {
		return fmt.Errorf("secrets: %s: %w: more than %d keys", where, ErrKeyFile, maxKeys)
	}
	keys := make(map[string]cipher.AEAD, len(entries))
	order := make([]string, 0, len(entries))
	for i, e := range entries {
		if err := validateKeyID(e.ID); err != nil {
			return fmt.Errorf("secrets: %s: keys[%d].id: %w", where, i, err)
		}
		if _, dup := keys[e.ID]; dup {
			return fmt.Errorf("secrets: %s: keys[%d].id %q: %w: duplicate", where, i, e.ID, ErrKeyFile)
		}
		raw, err := base64.StdEncoding.DecodeString(e.Key)
		if err != nil {
			return fmt.Errorf("secrets: %s: keys[%d].key: %w: not base64", where, i, ErrKeyFile)
		}
		if len(raw) != keySize {
			return fmt.Errorf("secrets: %s: keys[%d].key: %w: %d bytes, want %d", where, i, ErrKeyFile, len(raw), keySize)
		}
		aead, err := newAEAD(raw)
		if err != nil {
			return fmt.Errorf("secrets: %s: keys[%d].key: %w", where, i, err)
		}
		keys[e.ID] = aead
		order = append(order, e.ID)
	}
	k.mu.Lock()
	k.keys, k.order, k.primary = keys, order, order[0]
	k.mu.Unlock()
	return nil
}

// PrimaryID names the key new writes are sealed with.
func (k *Keyring) PrimaryID() string {
	k.mu.RLock()
	defer k.mu.RUnlock()
	return k.primary
}

// KeyIDs lists the key ids, primary first.
func (k *Keyring) KeyIDs() []string {
	k.mu.RLock()
	defer k.mu.RUnlock()
	return append([]string(nil), k.order...)
}

func newAEAD(key []byte) (cipher.AEAD, error) {
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, err
	}
	return cipher.NewGCM(block)
}

func validateKeyID(id string) error {
	if id == "" || len(id) > 64 {
		return fmt.Errorf("%w: must be 1 to 64 characters", ErrKeyFile)
	}
	for _, r := range id {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_' || r == '.') {
			return fmt.Errorf("%w: %q contains %q", ErrKeyFile, id, r)
		}
	}
	return nil
}

func readKeyFile(path string) (*keyFile, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("secrets: key file: %w: %v", ErrKeyFile, err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("secrets: key file %s: %w: %v", path, ErrKeyFile, err)
	}
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("secrets: key file %s: %w: not a regular file", path, ErrKeyFile)
	}
	if fi.Mode().Perm()&0o077 != 0 {
		return nil, fmt.Errorf("secrets: key file %s: %w: mode %04o is readable by group or others; chmod 600 it", path, ErrKeyFile, fi.Mode().Perm())
	}
	if fi.Size() > maxKeyFileSize {
		return nil, fmt.Errorf("secrets: key file %s: %w: larger than %d bytes", path, ErrKeyFile, maxKeyFileSize)
	}
	var kf keyFile
	dec := json.NewDecoder(f)
	dec.DisallowUnknownFields()
	if err := dec.Decode(&kf); err != nil {
		// The JSON decoder's message may quote input; keep it out.
		return nil, fmt.Errorf("secrets: key file %s: %w: not a JSON key file", path, ErrKeyFile)
	}
	return &kf, nil
}

func newEntry() (keyEntry, error) {
	raw := make([]byte, keySize)
	if _, err := rand.Read(raw); err != nil {
		return keyEntry{}, fmt.Errorf("secrets: generate key: %w", err)
	}
	suffix := make([]byte, 4)
	if _, err := rand.Read(suffix); err != nil {
		return keyEntry{}, fmt.Errorf("secrets: generate key id: %w", err)
	}
	now := time.Now().UTC()
	return keyEntry{
		ID:      "k" + now.Format("20060102T150405Z") + "-" + hex.EncodeToString(suffix),
		Key:     base64.StdEncoding.EncodeToString(raw),
		Created: now,
	}, nil
}

// GenerateKeyFile writes a new key file with one random key at path (mode
// 0600) and returns the key's id. It fails with an error matching
// os.ErrExist when the file is already there: keys are never overwritten.
func GenerateKeyFile(path string) (string, error) {
	e, err := newEntry()
	if err != nil {
		return "", err
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return "", fmt.Errorf("secrets: key file dir: %w", err)
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return "", fmt.Errorf("secrets: create key file: %w", err)
	}
	b, _ := json.MarshalIndent(keyFile{Keys: []keyEntry{e}}, "", "  ")
	if _, err := f.Write(append(b, '\n')); err != nil {
		_ = f.Close()
		_ = os.Remove(path)
		return "", fmt.Errorf("secrets: write key file: %w", err)
	}
	if err := f.Close(); err != nil {
		_ = os.Remove(path)
		return "", fmt.Errorf("secrets: write key file: %w", err)
	}
	return e.ID, nil
}

// AddKey rotates the key file at path: a new random key becomes the
// primary, the old keys stay after it so that existing secrets still open.
// The file is replaced atomically (write to a temporary file, rename).
// Running schedulers pick the new key up on SIGHUP or restart; secrets are
// re-sealed with it on their next write.
func AddKey(path string) (string, error) {
	kf, err := readKeyFile(path)
	if err != nil {
		return "", err
	}
	if len(kf.Keys) >= maxKeys {
		return "", fmt.Errorf("secrets: key file %s: %w: already %d keys", path, ErrKeyFile, len(kf.Keys))
	}
	e, err := newEntry()
	if err != nil {
		return "", err
	}
	kf.Keys = append([]keyEntry{e}, kf.Keys...)
	b, _ := json.MarshalIndent(kf, "", "  ")
	tmp, err := os.CreateTemp(filepath.Dir(path), ".secrets-key-*")
	if err != nil {
		return "", fmt.Errorf("secrets: rotate key file: %w", err)
	}
	defer os.Remove(tmp.Name())
	if err := tmp.Chmod(0o600); err != nil {
		_ = tmp.Close()
		return "", fmt.Errorf("secrets: rotate key file: %w", err)
	}
	if _, err := tmp.Write(append(b, '\n')); err != nil {
		_ = tmp.Close()
		return "", fmt.Errorf("secrets: rotate key file: %w", err)
	}
	if err := tmp.Sync(); err != nil {
		_ = tmp.Close()
		return "", fmt.Errorf("secrets: rotate key file: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return "", fmt.Errorf("secrets: rotate key file: %w", err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return "", fmt.Errorf("secrets: rotate key file: %w", err)
	}
	return e.ID, nil
}

// additionalData binds a ciphertext to its secret's name and key id, so a
// sealed value copied under another name (or relabelled with another key)
// does not open.
func additionalData(name, keyID string) []byte {
	return []byte("persys/secret/v1\x00" + name + "\x00" + keyID)
}

// Seal encrypts data under the primary key. info names the secret; the
// returned SealedSecret carries a copy of info with keys filled in (sorted),
// its version and timestamps as given. data is validated first (Validate).
func (k *Keyring) Seal(info *persysv1.SecretInfo, data map[string][]byte) (*persysv1.SealedSecret, error) {
	if info == nil {
		return nil, fmt.Errorf("secrets: info: %w: nil", ErrInvalid)
	}
	if err := Validate(info.GetName(), info.GetType(), data); err != nil {
		return nil, err
	}
	plain, err := proto.MarshalOptions{Deterministic: true}.Marshal(&persysv1.SecretValue{
		Name: info.GetName(), Type: info.GetType(), Data: data})
	if err != nil {
		return nil, fmt.Errorf("secrets: encode %q: %w", info.GetName(), err)
	}
	k.mu.RLock()
	id := k.primary
	aead := k.keys[id]
	k.mu.RUnlock()
	nonce := make([]byte, aead.NonceSize())
	if _, err := rand.Read(nonce); err != nil {
		return nil, fmt.Errorf("secrets: nonce: %w", err)
	}
	out := &persysv1.SealedSecret{
		Info:       proto.Clone(info).(*persysv1.SecretInfo),
		KeyId:      id,
		Nonce:      nonce,
		Ciphertext: aead.Seal(nil, nonce, plain, additionalData(info.GetName(), id)),
	}
	out.Info.Keys = SortedKeys(data)
	clear(plain)
	return out, nil
}

// Open decrypts a sealed secret with the key it names.
func (k *Keyring) Open(s *persysv1.SealedSecret) (map[string][]byte, error) {
	if s == nil {
		return nil, fmt.Errorf("secrets: sealed secret: %w: nil", ErrInvalid)
	}
	name := s.GetInfo().GetName()
	k.mu.RLock()
	aead, ok := k.keys[s.GetKeyId()]
	k.mu.RUnlock()
	if !ok {
		return nil, fmt.Errorf("secrets: open %q: key %q: %w (add it back to the key file)", name, s.GetKeyId(), ErrUnknownKey)
	}
	if len(s.GetNonce()) != aead.NonceSize() {
		return nil, fmt.Errorf("secrets: open %q: nonce: %w: %d bytes, want %d", name, ErrDecrypt, len(s.GetNonce()), aead.NonceSize())
	}
	plain, err := aead.Open(nil, s.GetNonce(), s.GetCiphertext(), additionalData(name, s.GetKeyId()))
	if err != nil {
		return nil, fmt.Errorf("secrets: open %q with key %q: %w", name, s.GetKeyId(), ErrDecrypt)
	}
	var v persysv1.SecretValue
	err = proto.Unmarshal(plain, &v)
	clear(plain)
	if err != nil {
		return nil, fmt.Errorf("secrets: open %q: %w: undecodable plaintext", name, ErrDecrypt)
	}
	if v.GetName() != name {
		return nil, fmt.Errorf("secrets: open %q: %w: sealed for another name", name, ErrDecrypt)
	}
	if v.Data == nil {
		v.Data = map[string][]byte{}
	}
	return v.Data, nil
}
