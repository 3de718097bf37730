package manifest

import (
	"errors"
	"fmt"
	"strings"

	persysv1 "github.com/persys-dev/compute/api/persys/v1"
)

// MaxApplyItems is the most workloads one ApplyWorkloads call carries: as
// many as a stream holds documents, so a stream is always one call.
const MaxApplyItems = MaxDocuments

// ValidateApplyItems checks an ApplyWorkloads request at the gRPC boundary
// with the rules of ValidateApplyRequest: at least one item, at most
// MaxApplyItems, each valid, no name twice. Every problem is reported in
// one *Error, its fields under items[i].
func ValidateApplyItems(items []*persysv1.ApplyRequest) error {
	switch {
	case len(items) == 0:
		return &Error{Fields: []FieldError{{Field: "items", Reason: "at least one workload is required"}}}
	case len(items) > MaxApplyItems:
		return &Error{Fields: []FieldError{{Field: "items",
			Reason: fmt.Sprintf("%d workloads, more than the limit of %d in one call", len(items), MaxApplyItems)}}}
	}
	var fields []FieldError
	first := make(map[string]int, len(items))
	for i, it := range items {
		if err := ValidateApplyRequest(it); err != nil {
			var e *Error
			if !errors.As(err, &e) {
				return err
			}
			fields = append(fields, e.Within(fmt.Sprintf("items[%d]", i), fmt.Sprintf("workload %q", it.GetName())).Fields...)
			continue
		}
		if j, dup := first[it.GetName()]; dup {
			fields = append(fields, FieldError{Field: fmt.Sprintf("items[%d].metadata.name", i),
				Reason: fmt.Sprintf("%q is also items[%d]; each workload may appear once in a call", it.GetName(), j)})
			continue
		}
		first[it.GetName()] = i
	}
	if len(fields) > 0 {
		return &Error{Fields: fields}
	}
	return nil
}

// Within places e's fields under prefix (documents[i], items[i]); a
// problem of the whole document, which names no field, gets whole added
// to its reason, in parentheses, so the user can find it.
func (e *Error) Within(prefix, whole string) *Error {
	out := &Error{Fields: make([]FieldError, len(e.Fields))}
	for k, f := range e.Fields {
		field, reason := prefix, f.Reason
		switch {
		case f.Field == "":
			if whole != "" {
				reason += " (" + whole + ")"
			}
		case strings.HasPrefix(f.Field, "["):
			field += f.Field // documents[0]["odd key"]
		default:
			field += "." + f.Field
		}
		out.Fields[k] = FieldError{Field: field, Reason: reason}
	}
	return out
}
