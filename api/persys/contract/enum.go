package contract

import (
	"strconv"
	"strings"
	"sync"

	"google.golang.org/protobuf/reflect/protoreflect"
)

// prefixes caches the value prefix of each enum by full name.
var prefixes sync.Map // protoreflect.FullName -> string

// Prefix returns the prefix every value name of ed starts with: the
// enum's name in upper snake case and "_" (FailureReason ->
// "FAILURE_REASON_"), the protobuf style rule.
func Prefix(ed protoreflect.EnumDescriptor) string {
	if p, ok := prefixes.Load(ed.FullName()); ok {
		return p.(string)
	}
	p := upperSnake(string(ed.Name())) + "_"
	prefixes.Store(ed.FullName(), p)
	return p
}

// upperSnake turns CamelCase into UPPER_SNAKE_CASE, keeping acronyms
// together (NodeState -> NODE_STATE, InsufficientCPU -> INSUFFICIENT_CPU,
// VMSpec -> VM_SPEC).
func upperSnake(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		if i > 0 && isUpper(c) {
			prevLower := !isUpper(s[i-1])
			nextLower := i+1 < len(s) && !isUpper(s[i+1])
			if prevLower || nextLower {
				b.WriteByte('_')
			}
		}
		if c >= 'a' && c <= 'z' {
			c -= 'a' - 'A'
		}
		b.WriteByte(c)
	}
	return b.String()
}

func isUpper(c byte) bool { return c >= 'A' && c <= 'Z' }

// UpperSnake is the canonical spelling built from a Go identifier in
// CamelCase (NodeNotReady -> NODE_NOT_READY), for enums mirrored in Go.
func UpperSnake(ident string) string { return upperSnake(ident) }

// Name returns the canonical spelling of e: its value name without the
// enum's prefix, the zero value included (UNSPECIFIED). A number the enum
// does not define prints as the number, as protojson prints it.
func Name(e protoreflect.Enum) string {
	return ValueName(e.Descriptor(), e.Number())
}

// ValueName is Name for a number of the enum ed.
func ValueName(ed protoreflect.EnumDescriptor, n protoreflect.EnumNumber) string {
	v := ed.Values().ByNumber(n)
	if v == nil {
		return strconv.Itoa(int(n))
	}
	return strings.TrimPrefix(string(v.Name()), Prefix(ed))
}

// Parse returns the number of the value of ed that s names, in the
// canonical spelling (IMAGE_NOT_FOUND) or as the full protobuf name
// (FAILURE_REASON_IMAGE_NOT_FOUND). Case matters, as in protojson.
func Parse(ed protoreflect.EnumDescriptor, s string) (protoreflect.EnumNumber, bool) {
	vals := ed.Values()
	if v := vals.ByName(protoreflect.Name(s)); v != nil {
		return v.Number(), true
	}
	if v := vals.ByName(protoreflect.Name(Prefix(ed) + s)); v != nil {
		return v.Number(), true
	}
	return 0, false
}
