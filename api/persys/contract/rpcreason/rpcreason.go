// Package rpcreason attaches a failure reason to a gRPC error and reads
// it back, as an errdetails.ErrorInfo of contract.ErrorDomain whose reason
// is in the canonical spelling (IMAGE_NOT_FOUND). It is the gRPC half of
// package contract, kept apart so that contract links no gRPC.
package rpcreason

import (
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/persys-dev/compute/api/persys/contract"
	persysv1 "github.com/persys-dev/compute/api/persys/v1"
)

// Error is a gRPC error of code with msg that carries reason.
func Error(code codes.Code, reason persysv1.FailureReason, msg string) error {
	st := status.New(code, msg)
	if d, err := st.WithDetails(contract.ReasonInfo(reason)); err == nil {
		st = d
	}
	return st.Err()
}

// Of returns the failure reason carried by a gRPC error, or UNSPECIFIED
// when it carries none (or err is not a gRPC error).
func Of(err error) persysv1.FailureReason {
	st, ok := status.FromError(err)
	if !ok {
		return persysv1.FailureReason_FAILURE_REASON_UNSPECIFIED
	}
	return contract.ReasonFromDetails(st.Details())
}
