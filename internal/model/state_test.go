package model_test

import (
	"testing"

	"google.golang.org/protobuf/reflect/protoreflect"

	persysv1 "github.com/persys-dev/compute/api/persys/v1"
	"github.com/persys-dev/compute/internal/testutil/enummirror"
)

// The enums convert to and from protobuf by value: the values and their
// names agree, read from this package's source, so a value added on one
// side only fails.
func TestEnumsMirrorProtobuf(t *testing.T) {
	tests := []struct {
		goType, prefix string
		proto          protoreflect.EnumDescriptor
		mode           enummirror.Mode
	}{
		{"ActualState", "State", persysv1.ActualState(0).Descriptor(), enummirror.Full},
		{"DesiredState", "Desired", persysv1.DesiredState(0).Descriptor(), enummirror.Full},
		{"WorkloadType", "Workload", persysv1.WorkloadType(0).Descriptor(), enummirror.Full},
		// Pure code names only the failure reasons it decides itself.
		{"FailureReason", "Reason", persysv1.FailureReason(0).Descriptor(), enummirror.Subset},
	}
	for _, tt := range tests {
		t.Run(tt.goType, func(t *testing.T) {
			enummirror.Check(t, enummirror.Consts(t, ".", tt.goType), tt.prefix, tt.proto, tt.mode)
		})
	}
}
