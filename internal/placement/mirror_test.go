package placement_test

import (
	"testing"

	"google.golang.org/protobuf/reflect/protoreflect"

	"github.com/persys-dev/compute/api/persys/contract"
	persysv1 "github.com/persys-dev/compute/api/persys/v1"
	"github.com/persys-dev/compute/internal/placement"
	"github.com/persys-dev/compute/internal/testutil/enummirror"
)

// RejectReason converts to the wire's RejectReason by value: the two
// enums have the same values under the same names, and String spells
// each as the wire's JSON does. A reason added on one side only fails.
func TestRejectReasonMirrorsProtobuf(t *testing.T) {
	ed := persysv1.RejectReason(0).Descriptor()
	consts := enummirror.Consts(t, ".", "RejectReason")
	enummirror.Check(t, consts, "", ed, enummirror.Full)
	for name, v := range consts {
		if got, want := placement.RejectReason(v).String(), contract.ValueName(ed, protoreflect.EnumNumber(v)); got != want {
			t.Errorf("%s.String() = %q, want %q", name, got, want)
		}
	}
}
