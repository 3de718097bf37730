package model

import (
	"strings"
	"testing"
)

func TestNameProblem(t *testing.T) {
	tests := []struct {
		name, v, want string
	}{
		{"plain", "web-1", ""},
		{"dots inside", "a.b..c", ""},
		{"longest", strings.Repeat("a", MaxNameLen), ""},
		{"empty", "", "empty"},
		{"too long", strings.Repeat("a", MaxNameLen+1), "longer than 253 bytes"},
		{"dot", ".", "reserved name"},
		{"dot dot", "..", "reserved name"},
		{"slash", "a/b", `contains '/'`},
		{"space", "a b", `contains ' '`},
		{"newline", "a\nb", `contains '\n'`},
		{"not utf-8", "a\xffb", `contains '�'`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := NameProblem(tt.v); got != tt.want {
				t.Errorf("NameProblem(%q) = %q, want %q", tt.v, got, tt.want)
			}
		})
	}
}
