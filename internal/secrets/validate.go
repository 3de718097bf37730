package secrets

import (
	"crypto/rand"
	"fmt"
	"sort"
	"strings"

	persysv1 "github.com/persys-dev/compute/api/persys/v1"
)

// Limits of one secret.
const (
	// MaxNameLen bounds a secret name (a DNS subdomain); each dot-separated
	// label is at most MaxLabelLen.
	MaxNameLen  = 253
	MaxLabelLen = 63
	// MaxKeyLen bounds a key name.
	MaxKeyLen = 253
	// MaxKeys bounds the number of keys of one secret.
	MaxKeys = 256
	// MaxDataSize bounds the sum of the sizes of a secret's key names and
	// values.
	MaxDataSize = 1 << 20
)

// ValidateName checks a secret name: a DNS subdomain (lowercase letters,
// digits, '-' and '.', labels of 1 to 63 characters that start and end
// with a letter or digit), at most 253 characters. The error names the
// field "name".
func ValidateName(name string) error {
	return validateDNSName("name", name)
}

func validateDNSName(field, name string) error {
	if name == "" {
		return fmt.Errorf("secrets: %s: %w: empty", field, ErrInvalid)
	}
	if len(name) > MaxNameLen {
		return fmt.Errorf("secrets: %s: %w: longer than %d characters", field, ErrInvalid, MaxNameLen)
	}
	for _, label := range strings.Split(name, ".") {
		if label == "" {
			return fmt.Errorf("secrets: %s %q: %w: empty label (leading, trailing or double dot)", field, name, ErrInvalid)
		}
		if len(label) > MaxLabelLen {
			return fmt.Errorf("secrets: %s %q: %w: label %q is longer than %d characters", field, name, ErrInvalid, label, MaxLabelLen)
		}
		for i, r := range label {
			alnum := r >= 'a' && r <= 'z' || r >= '0' && r <= '9'
			if !alnum && r != '-' {
				return fmt.Errorf("secrets: %s %q: %w: contains %q (lowercase letters, digits, '-' and '.' only)", field, name, ErrInvalid, r)
			}
			if !alnum && (i == 0 || i == len(label)-1) {
				return fmt.Errorf("secrets: %s %q: %w: label %q must start and end with a letter or digit", field, name, ErrInvalid, label)
			}
		}
	}
	return nil
}

// ValidateKey checks a key name: letters, digits, '.', '_' and '-' (so it
// is both an environment-variable-like and a file-name-like word), at most
// 253 characters, not "." or "..". The error names the field data[key].
func ValidateKey(key string) error {
	if key == "" {
		return fmt.Errorf("secrets: data: %w: empty key name", ErrInvalid)
	}
	if len(key) > MaxKeyLen {
		return fmt.Errorf("secrets: data key: %w: longer than %d characters", ErrInvalid, MaxKeyLen)
	}
	if key == "." || key == ".." {
		return fmt.Errorf("secrets: data[%q]: %w: reserved key name", key, ErrInvalid)
	}
	for _, r := range key {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '.' || r == '_' || r == '-') {
			return fmt.Errorf("secrets: data[%q]: %w: key name contains %q (letters, digits, '.', '_' and '-' only)", key, ErrInvalid, r)
		}
	}
	return nil
}

// Validate checks a whole secret before it is sealed: name, type, key
// names, sizes and the keys its type requires (REGISTRY: server, username
// and password; GIT: token, or username and password). Errors name the
// field and never contain a value.
func Validate(name string, typ persysv1.SecretType, data map[string][]byte) error {
	if err := ValidateName(name); err != nil {
		return err
	}
	switch typ {
	case persysv1.SecretType_SECRET_TYPE_OPAQUE, persysv1.SecretType_SECRET_TYPE_REGISTRY, persysv1.SecretType_SECRET_TYPE_GIT:
	case persysv1.SecretType_SECRET_TYPE_UNSPECIFIED:
		return fmt.Errorf("secrets: type: %w: required (opaque, registry or git)", ErrInvalid)
	default:
		return fmt.Errorf("secrets: type: %w: unknown type %d", ErrInvalid, typ)
	}
	if len(data) == 0 {
		return fmt.Errorf("secrets: data: %w: at least one key is required", ErrInvalid)
	}
	if len(data) > MaxKeys {
		return fmt.Errorf("secrets: data: %w: %d keys, at most %d", ErrInvalid, len(data), MaxKeys)
	}
	total := 0
	for k, v := range data {
		if err := ValidateKey(k); err != nil {
			return err
		}
		total += len(k) + len(v)
	}
	if total > MaxDataSize {
		return fmt.Errorf("secrets: data: %w: %d bytes in all, at most %d", ErrInvalid, total, MaxDataSize)
	}
	has := func(k string) bool { return len(data[k]) > 0 }
	switch typ {
	case persysv1.SecretType_SECRET_TYPE_REGISTRY:
		for _, k := range []string{"server", "username", "password"} {
			if !has(k) {
				return fmt.Errorf("secrets: data[%q]: %w: required and non-empty for a registry secret", k, ErrInvalid)
			}
		}
		if strings.ContainsAny(string(data["server"]), " \t\r\n") {
			return fmt.Errorf("secrets: data[\"server\"]: %w: must be a registry host[:port] or URL, without spaces", ErrInvalid)
		}
	case persysv1.SecretType_SECRET_TYPE_GIT:
		if !has("token") && !(has("username") && has("password")) {
			return fmt.Errorf("secrets: data: %w: a git secret needs \"token\", or \"username\" and \"password\"", ErrInvalid)
		}
	}
	return nil
}

// ParseType turns "opaque", "registry" or "git" (any case, or the enum
// name) into a SecretType; "" is OPAQUE.
func ParseType(s string) (persysv1.SecretType, error) {
	switch strings.ToLower(strings.TrimPrefix(strings.ToUpper(s), "SECRET_TYPE_")) {
	case "", "opaque":
		return persysv1.SecretType_SECRET_TYPE_OPAQUE, nil
	case "registry":
		return persysv1.SecretType_SECRET_TYPE_REGISTRY, nil
	case "git":
		return persysv1.SecretType_SECRET_TYPE_GIT, nil
	}
	return 0, fmt.Errorf("secrets: type %q: %w: must be opaque, registry or git", s, ErrInvalid)
}

// TypeName is the short lowercase name of a type ("opaque", "registry",
// "git").
func TypeName(t persysv1.SecretType) string {
	return strings.ToLower(strings.TrimPrefix(t.String(), "SECRET_TYPE_"))
}

// SortedKeys returns the key names of data, sorted.
func SortedKeys(data map[string][]byte) []string {
	keys := make([]string, 0, len(data))
	for k := range data {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// passwordAlphabet avoids characters that need quoting in shells and YAML.
const passwordAlphabet = "ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz23456789"

// GeneratePassword returns a random password of 24 characters from a
// 57-character alphabet (about 140 bits), drawn without modulo bias.
func GeneratePassword() (string, error) {
	const n = 24
	out := make([]byte, 0, n)
	buf := make([]byte, 64)
	limit := byte(256 - 256%len(passwordAlphabet))
	for len(out) < n {
		if _, err := rand.Read(buf); err != nil {
			return "", fmt.Errorf("secrets: generate password: %w", err)
		}
		for _, b := range buf {
			if b < limit && len(out) < n {
				out = append(out, passwordAlphabet[int(b)%len(passwordAlphabet)])
			}
		}
	}
	return string(out), nil
}
