package rpcreason_test

import (
	"errors"
	"fmt"
	"testing"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/persys-dev/compute/api/persys/contract"
	"github.com/persys-dev/compute/api/persys/contract/rpcreason"
	persysv1 "github.com/persys-dev/compute/api/persys/v1"
)

func TestErrorCarriesItsReason(t *testing.T) {
	err := rpcreason.Error(codes.FailedPrecondition, persysv1.FailureReason_FAILURE_REASON_SECRET_NOT_FOUND, "secret db is missing")
	if status.Code(err) != codes.FailedPrecondition || status.Convert(err).Message() != "secret db is missing" {
		t.Fatalf("err = %v", err)
	}
	if got := rpcreason.Of(err); got != persysv1.FailureReason_FAILURE_REASON_SECRET_NOT_FOUND {
		t.Errorf("Of = %v, want SECRET_NOT_FOUND", got)
	}
	if got := rpcreason.Of(fmt.Errorf("apply: %w", err)); got != persysv1.FailureReason_FAILURE_REASON_SECRET_NOT_FOUND {
		t.Errorf("Of(wrapped) = %v, want SECRET_NOT_FOUND", got)
	}
	var info *errdetails.ErrorInfo
	for _, d := range status.Convert(err).Details() {
		info, _ = d.(*errdetails.ErrorInfo)
	}
	if info.GetReason() != "SECRET_NOT_FOUND" || info.GetDomain() != contract.ErrorDomain {
		t.Errorf("detail = %v, want reason SECRET_NOT_FOUND in %s", info, contract.ErrorDomain)
	}
}

func TestOfWithoutReason(t *testing.T) {
	for name, err := range map[string]error{
		"plain":         errors.New("plain"),
		"status alone":  status.Error(codes.Internal, "boom"),
		"nil":           nil,
		"other details": withInfo(&errdetails.ErrorInfo{Reason: "STORAGE", Domain: "example.com"}),
	} {
		if got := rpcreason.Of(err); got != persysv1.FailureReason_FAILURE_REASON_UNSPECIFIED {
			t.Errorf("%s: Of = %v, want UNSPECIFIED", name, got)
		}
	}
}

func withInfo(info *errdetails.ErrorInfo) error {
	st, err := status.New(codes.Internal, "x").WithDetails(info)
	if err != nil {
		panic(err)
	}
	return st.Err()
}
