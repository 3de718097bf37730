package gateway

import "github.com/persys-dev/compute/internal/gateway/httperr"

// The error body's types are the REST API's contract; package httperr
// defines them and maps errors to HTTP.
type (
	// FieldError names one invalid input field and why it is invalid.
	FieldError = httperr.FieldError
	// ErrorBody is the JSON body of every error answer.
	ErrorBody = httperr.ErrorBody
	// ErrorDetail is the content of ErrorBody.
	ErrorDetail = httperr.ErrorDetail
)
