package model

import (
	"fmt"
	"unicode"
)

// MaxNameLen is the longest name of a workload or node: the name is one
// segment of a store key and of a URL path.
const MaxNameLen = 253

// NameProblem says why v cannot name a workload or node ("" when it can):
// empty, longer than MaxNameLen bytes, "." or "..", or holding a '/',
// space, control character or invalid UTF-8. The store refuses such
// names (as keys) and the gateway refuses them in paths, with one rule.
func NameProblem(v string) string {
	switch {
	case v == "":
		return "empty"
	case len(v) > MaxNameLen:
		return fmt.Sprintf("longer than %d bytes", MaxNameLen)
	case v == "." || v == "..":
		return "reserved name"
	}
	for _, r := range v {
		if r == '/' || r == unicode.ReplacementChar || unicode.IsSpace(r) || unicode.IsControl(r) {
			return fmt.Sprintf("contains %q", r)
		}
	}
	return ""
}
