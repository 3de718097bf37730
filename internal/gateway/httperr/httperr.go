// Package httperr owns the gateway's error answers: the JSON error body
// every route writes, the errors the gateway raises itself with their HTTP
// code, and the one mapping of gRPC status codes (and manifest errors) to
// HTTP. Handlers return errors; the gateway writes them once, with Write,
// at the boundary.
package httperr

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/persys-dev/compute/api/persys/contract"
	persysv1 "github.com/persys-dev/compute/api/persys/v1"
	"github.com/persys-dev/compute/internal/manifest"
)

// FieldError names one invalid input field and why it is invalid.
type FieldError struct {
	Field  string `json:"field"`
	Reason string `json:"reason"`
}

// ErrorBody is the JSON body of every error answer:
// {"error":{"code":400,"message":"...","fields":[...]}}.
type ErrorBody struct {
	Error ErrorDetail `json:"error"`
}

// ErrorDetail is the content of ErrorBody.
type ErrorDetail struct {
	Code    int          `json:"code"`
	Message string       `json:"message"`
	Fields  []FieldError `json:"fields,omitempty"`
	// Reason is the failure enum when there is one, in the canonical
	// spelling of package contract: INVALID_SPEC, GIT_FETCH_FAILED.
	Reason string `json:"reason,omitempty"`
}

// Error is an error the gateway raises itself, with its HTTP code.
type Error struct {
	Code    int
	Message string
	Fields  []FieldError
}

func (e *Error) Error() string { return e.Message }

// New returns an Error answering code with msg.
func New(code int, msg string) *Error { return &Error{Code: code, Message: msg} }

// Field returns a 400 naming one invalid field and why.
func Field(field, reason string) error {
	return &Error{
		Code:    http.StatusBadRequest,
		Message: "invalid " + field + ": " + reason,
		Fields:  []FieldError{{Field: field, Reason: reason}},
	}
}

// CodeOf returns the HTTP code of an Error in err's chain, 0 when none.
func CodeOf(err error) int {
	var e *Error
	if errors.As(err, &e) {
		return e.Code
	}
	return 0
}

// FromManifest turns a manifest.Parse error into a 400 with its fields;
// the message stays short because the fields carry the detail.
func FromManifest(err error) error {
	e := &Error{Code: http.StatusBadRequest, Message: err.Error()}
	var me *manifest.Error
	if errors.As(err, &me) && len(me.Fields) > 0 {
		e.Message = manifest.ErrInvalid.Error()
		for _, f := range me.Fields {
			e.Fields = append(e.Fields, FieldError{Field: f.Field, Reason: f.Reason})
		}
	}
	return e
}

// HTTPStatus maps a gRPC code to the HTTP status the gateway answers with.
func HTTPStatus(c codes.Code) int {
	switch c {
	case codes.OK:
		return http.StatusOK
	case codes.InvalidArgument, codes.OutOfRange:
		return http.StatusBadRequest
	case codes.NotFound:
		return http.StatusNotFound
	case codes.AlreadyExists, codes.Aborted, codes.FailedPrecondition:
		return http.StatusConflict
	case codes.Unavailable:
		return http.StatusServiceUnavailable
	case codes.DeadlineExceeded:
		return http.StatusGatewayTimeout
	case codes.PermissionDenied:
		return http.StatusForbidden
	case codes.Unauthenticated:
		return http.StatusUnauthorized
	case codes.ResourceExhausted:
		return http.StatusTooManyRequests
	case codes.Canceled:
		return 499 // client closed request, as nginx names it
	default:
		return http.StatusInternalServerError
	}
}

// Detail converts any error into the error body's content.
func Detail(err error) ErrorDetail {
	var he *Error
	if errors.As(err, &he) {
		return ErrorDetail{Code: he.Code, Message: he.Message, Fields: he.Fields}
	}
	if errors.Is(err, context.DeadlineExceeded) {
		return ErrorDetail{Code: http.StatusGatewayTimeout, Message: "the scheduler did not answer in time"}
	}
	if errors.Is(err, context.Canceled) {
		return ErrorDetail{Code: 499, Message: "request canceled"}
	}
	st, ok := status.FromError(err)
	if !ok {
		return ErrorDetail{Code: http.StatusInternalServerError, Message: err.Error()}
	}
	d := ErrorDetail{Code: HTTPStatus(st.Code()), Message: st.Message()}
	if st.Code() == codes.Unavailable {
		d.Message = "scheduler unavailable: " + st.Message()
	}
	for _, det := range st.Details() {
		switch det := det.(type) {
		case *errdetails.BadRequest:
			for _, v := range det.GetFieldViolations() {
				d.Fields = append(d.Fields, FieldError{Field: v.GetField(), Reason: v.GetDescription()})
			}
			if d.Reason == "" {
				d.Reason = contract.Name(persysv1.FailureReason_FAILURE_REASON_INVALID_SPEC)
			}
		case *errdetails.ErrorInfo:
			if r, ok := contract.ReasonFromInfo(det); ok {
				d.Reason = contract.Name(r)
			} else {
				d.Reason = det.GetReason()
			}
		}
	}
	return d
}

// Write writes err as the JSON error body and returns the status code.
func Write(w http.ResponseWriter, err error) int {
	d := Detail(err)
	b, _ := json.Marshal(ErrorBody{Error: d})
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(d.Code)
	_, _ = w.Write(append(b, '\n'))
	return d.Code
}
