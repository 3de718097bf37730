package agent

import (
	"fmt"
	"strings"
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
