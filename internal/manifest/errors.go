package manifest

import (
	"errors"
	"fmt"
	"strings"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
)

// ErrInvalid matches every *Error through errors.Is, so boundaries can map
// an invalid manifest to InvalidArgument or 400 without knowing the fields.
var ErrInvalid = errors.New("invalid manifest")

// FieldError is one problem with one field. Field is a path such as
// "spec.resources.memory", "spec.container.ports[1].protocol" or
// `spec.container.labels["persys.x"]`; it is empty when the problem concerns
// the whole document (empty input, oversized body, broken YAML).
type FieldError struct {
	Field  string
	Reason string
}

func (f FieldError) String() string {
	if f.Field == "" {
		return f.Reason
	}
	return f.Field + ": " + f.Reason
}

// Error lists every field problem found in a manifest or a spec.
type Error struct {
	Fields []FieldError
}

// Error reads "invalid manifest: spec.x: reason; spec.y: reason".
func (e *Error) Error() string {
	parts := make([]string, len(e.Fields))
	for i, f := range e.Fields {
		parts[i] = f.String()
	}
	if len(parts) == 0 {
		return ErrInvalid.Error()
	}
	return ErrInvalid.Error() + ": " + strings.Join(parts, "; ")
}

// Is reports whether target is ErrInvalid.
func (e *Error) Is(target error) bool { return target == ErrInvalid }

// BadRequest carries the field errors as gRPC error details.
func (e *Error) BadRequest() *errdetails.BadRequest {
	br := &errdetails.BadRequest{}
	for _, f := range e.Fields {
		br.FieldViolations = append(br.FieldViolations, &errdetails.BadRequest_FieldViolation{
			Field:       f.Field,
			Description: f.Reason,
		})
	}
	return br
}

// FromBadRequest rebuilds an *Error from gRPC error details. When br holds no
// violations, msg (a status message, with or without the "invalid manifest: "
// prefix) becomes the single, field-less reason.
func FromBadRequest(msg string, br *errdetails.BadRequest) *Error {
	e := &Error{}
	for _, v := range br.GetFieldViolations() {
		e.Fields = append(e.Fields, FieldError{Field: v.GetField(), Reason: v.GetDescription()})
	}
	if len(e.Fields) == 0 {
		reason := strings.TrimPrefix(msg, ErrInvalid.Error()+": ")
		if reason == "" {
			reason = ErrInvalid.Error()
		}
		e.Fields = []FieldError{{Reason: reason}}
	}
	return e
}

// collector gathers field errors in the order they are found.
type collector struct {
	fields []FieldError
}

func (c *collector) add(field, format string, args ...any) {
	c.fields = append(c.fields, FieldError{Field: field, Reason: fmt.Sprintf(format, args...)})
}

// err returns nil when nothing was collected, so callers never get a typed
// nil inside an error interface.
func (c *collector) err() error {
	if len(c.fields) == 0 {
		return nil
	}
	return &Error{Fields: c.fields}
}

// join appends a struct field name to a path.
func join(path, name string) string {
	if path == "" {
		return name
	}
	return path + "." + name
}

// keyPath appends a map key to a path: plain identifiers with a dot,
// anything else quoted in brackets, so the path stays unambiguous.
func keyPath(path, key string) string {
	if isIdent(key) {
		return join(path, key)
	}
	return path + "[" + fmt.Sprintf("%q", key) + "]"
}

func index(path string, i int) string {
	return fmt.Sprintf("%s[%d]", path, i)
}

func isIdent(s string) bool {
	if s == "" {
		return false
	}
	for i, r := range s {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r == '_':
		case (r >= '0' && r <= '9') || r == '-':
			if i == 0 {
				return false
			}
		default:
			return false
		}
	}
	return true
}
