package contract

import (
	"google.golang.org/genproto/googleapis/rpc/errdetails"

	persysv1 "github.com/persys-dev/compute/api/persys/v1"
)

// ReasonInfo is the error detail that names reason in ErrorDomain, in the
// canonical spelling (IMAGE_NOT_FOUND).
func ReasonInfo(reason persysv1.FailureReason) *errdetails.ErrorInfo {
	return &errdetails.ErrorInfo{Reason: Name(reason), Domain: ErrorDomain}
}

// ReasonFromInfo returns the failure reason info names, and false when
// info is of another domain or names no reason this build knows. Both
// spellings are read, so a peer of an older build is understood.
func ReasonFromInfo(info *errdetails.ErrorInfo) (persysv1.FailureReason, bool) {
	if info.GetDomain() != ErrorDomain {
		return persysv1.FailureReason_FAILURE_REASON_UNSPECIFIED, false
	}
	n, ok := Parse(persysv1.FailureReason(0).Descriptor(), info.GetReason())
	return persysv1.FailureReason(n), ok
}

// ReasonFromDetails returns the failure reason of the first ErrorInfo of
// ErrorDomain among details (a gRPC status's Details()), or UNSPECIFIED.
func ReasonFromDetails(details []any) persysv1.FailureReason {
	for _, d := range details {
		if info, ok := d.(*errdetails.ErrorInfo); ok {
			if r, ok := ReasonFromInfo(info); ok {
				return r
			}
		}
	}
	return persysv1.FailureReason_FAILURE_REASON_UNSPECIFIED
}
