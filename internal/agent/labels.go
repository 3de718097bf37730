package agent

import (
	"fmt"
	"path/filepath"
	"regexp"
	"strings"

	"github.com/persys-dev/compute/internal/manifest"
)

const maxLabelKeyLen = 253

// validLabelKey accepts keys of letters, digits, '.', '_', '-' and '/'.
func validLabelKey(k string) error {
	if k == "" {
		return fmt.Errorf("label key is empty")
	}
	if len(k) > maxLabelKeyLen {
		return fmt.Errorf("label key %q is longer than %d characters", k, maxLabelKeyLen)
	}
	for _, r := range k {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9', r == '.', r == '_', r == '-', r == '/':
		default:
			return fmt.Errorf("label key %q has the character %q", k, r)
		}
	}
	return nil
}

// ParseLabels parses "k=v,k2=v2" (the --labels flag). Blank input gives
// an empty map; a key may appear once.
func ParseLabels(s string) (map[string]string, error) {
	out := map[string]string{}
	if strings.TrimSpace(s) == "" {
		return out, nil
	}
	for i, part := range strings.Split(s, ",") {
		part = strings.TrimSpace(part)
		k, v, ok := strings.Cut(part, "=")
		if !ok {
			return nil, fmt.Errorf("labels: item %d %q is not key=value", i+1, part)
		}
		k = strings.TrimSpace(k)
		if err := validLabelKey(k); err != nil {
			return nil, fmt.Errorf("labels: item %d: %w", i+1, err)
		}
		if _, dup := out[k]; dup {
			return nil, fmt.Errorf("labels: item %d: key %q given twice", i+1, k)
		}
		out[k] = strings.TrimSpace(v)
	}
	return out, nil
}

// ParseStoragePool parses a --storage-pool flag: NAME=PATH, or
// NAME=PATH:SIZE to declare a capacity (for example default=/var/lib/persys/pool:100Gi);
// without a size the pool's capacity is its file system's.
func ParseStoragePool(s string) (StoragePool, error) {
	name, rest, ok := strings.Cut(s, "=")
	if !ok || name == "" || rest == "" {
		return StoragePool{}, fmt.Errorf("storage pool %q: want NAME=PATH or NAME=PATH:SIZE", s)
	}
	if !poolNameRE.MatchString(name) {
		return StoragePool{}, fmt.Errorf("storage pool %q: name must be lowercase letters, digits and '-', at most 63", s)
	}
	p := StoragePool{Name: name, Path: rest}
	if i := strings.LastIndexByte(rest, ':'); i > 0 {
		size, err := manifest.ParseBytes(rest[i+1:])
		if err != nil {
			return StoragePool{}, fmt.Errorf("storage pool %q: size: %w", s, err)
		}
		if size <= 0 {
			return StoragePool{}, fmt.Errorf("storage pool %q: size must be positive", s)
		}
		p.Path, p.Capacity = rest[:i], size
	}
	if !filepath.IsAbs(p.Path) {
		return StoragePool{}, fmt.Errorf("storage pool %q: path %q must be absolute", s, p.Path)
	}
	p.Path = filepath.Clean(p.Path)
	return p, nil
}

var poolNameRE = regexp.MustCompile(`^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$`)
