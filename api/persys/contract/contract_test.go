package contract_test

import (
	"bytes"
	"strings"
	"testing"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/persys-dev/compute/api/persys/contract"
	persysv1 "github.com/persys-dev/compute/api/persys/v1"
)

func TestName(t *testing.T) {
	tests := []struct {
		name string
		in   protoreflect.Enum
		want string
	}{
		{"failure reason", persysv1.FailureReason_FAILURE_REASON_IMAGE_NOT_FOUND, "IMAGE_NOT_FOUND"},
		{"zero value", persysv1.FailureReason_FAILURE_REASON_UNSPECIFIED, "UNSPECIFIED"},
		{"reject reason", persysv1.RejectReason_REJECT_REASON_INSUFFICIENT_CPU, "INSUFFICIENT_CPU"},
		{"actual state", persysv1.ActualState_ACTUAL_STATE_RUNNING, "RUNNING"},
		{"node state of two words", persysv1.NodeState_NODE_STATE_NOT_READY, "NOT_READY"},
		{"workload type", persysv1.WorkloadType_WORKLOAD_TYPE_VM, "VM"},
		{"undefined number", persysv1.FailureReason(999), "999"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := contract.Name(tt.in); got != tt.want {
				t.Errorf("Name(%v) = %q, want %q", tt.in, got, tt.want)
			}
		})
	}
}

func TestParse(t *testing.T) {
	ed := persysv1.FailureReason(0).Descriptor()
	tests := []struct {
		in     string
		want   persysv1.FailureReason
		wantOK bool
	}{
		{"IMAGE_NOT_FOUND", persysv1.FailureReason_FAILURE_REASON_IMAGE_NOT_FOUND, true},
		{"FAILURE_REASON_IMAGE_NOT_FOUND", persysv1.FailureReason_FAILURE_REASON_IMAGE_NOT_FOUND, true},
		{"UNSPECIFIED", persysv1.FailureReason_FAILURE_REASON_UNSPECIFIED, true},
		{"image_not_found", 0, false},
		{"REJECT_REASON_PORT_CONFLICT", 0, false},
		{"", 0, false},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, ok := contract.Parse(ed, tt.in)
			if ok != tt.wantOK || persysv1.FailureReason(got) != tt.want {
				t.Errorf("Parse(%q) = %v, %v; want %v, %v", tt.in, got, ok, tt.want, tt.wantOK)
			}
		})
	}
}

func TestUpperSnake(t *testing.T) {
	for in, want := range map[string]string{
		"NodeNotReady":    "NODE_NOT_READY",
		"InsufficientCPU": "INSUFFICIENT_CPU",
		"VMBootFailed":    "VM_BOOT_FAILED",
		"FailureReason":   "FAILURE_REASON",
		"Vm":              "VM",
	} {
		if got := contract.UpperSnake(in); got != want {
			t.Errorf("UpperSnake(%q) = %q, want %q", in, got, want)
		}
	}
}

// Every value of every enum of the API starts with its enum's prefix, so
// Name never hands out a full protobuf name and Parse can add the prefix.
func TestEveryEnumValueHasItsPrefix(t *testing.T) {
	n := 0
	protoregistry.GlobalTypes.RangeEnums(func(et protoreflect.EnumType) bool {
		ed := et.Descriptor()
		if ed.ParentFile().Package() != "persys.v1" {
			return true
		}
		n++
		p := contract.Prefix(ed)
		vals := ed.Values()
		for i := 0; i < vals.Len(); i++ {
			if name := string(vals.Get(i).Name()); !strings.HasPrefix(name, p) || name == p {
				t.Errorf("%s: value %s does not start with %s", ed.FullName(), name, p)
			}
		}
		if vals.ByNumber(0) == nil || contract.ValueName(ed, 0) != "UNSPECIFIED" {
			t.Errorf("%s: zero value is not %sUNSPECIFIED", ed.FullName(), p)
		}
		return true
	})
	if n == 0 {
		t.Fatal("no enums of persys.v1 are registered")
	}
}

func TestReasonInfo(t *testing.T) {
	info := contract.ReasonInfo(persysv1.FailureReason_FAILURE_REASON_GIT_FETCH_FAILED)
	if info.GetReason() != "GIT_FETCH_FAILED" || info.GetDomain() != contract.ErrorDomain {
		t.Fatalf("ReasonInfo = %v", info)
	}
	tests := []struct {
		name string
		in   []any
		want persysv1.FailureReason
	}{
		{"own", []any{info}, persysv1.FailureReason_FAILURE_REASON_GIT_FETCH_FAILED},
		{"full name of an older peer", []any{&errdetails.ErrorInfo{Reason: "FAILURE_REASON_STORAGE", Domain: contract.ErrorDomain}},
			persysv1.FailureReason_FAILURE_REASON_STORAGE},
		{"other domain", []any{&errdetails.ErrorInfo{Reason: "STORAGE", Domain: "example.com"}}, 0},
		{"unknown reason", []any{&errdetails.ErrorInfo{Reason: "NEW_IN_A_LATER_BUILD", Domain: contract.ErrorDomain}}, 0},
		{"after other details", []any{&errdetails.BadRequest{}, info}, persysv1.FailureReason_FAILURE_REASON_GIT_FETCH_FAILED},
		{"none", nil, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := contract.ReasonFromDetails(tt.in); got != tt.want {
				t.Errorf("ReasonFromDetails = %v, want %v", got, tt.want)
			}
		})
	}
}

func sampleView() *persysv1.WorkloadView {
	return &persysv1.WorkloadView{
		Workload: &persysv1.Workload{Name: "web", Spec: &persysv1.WorkloadSpec{
			Type: persysv1.WorkloadType_WORKLOAD_TYPE_CONTAINER, DesiredState: persysv1.DesiredState_DESIRED_STATE_RUNNING,
			NodeSelector: map[string]string{"zone": "FAILURE_REASON_STORAGE"},
		}},
		Status: &persysv1.WorkloadStatus{
			State: persysv1.ActualState_ACTUAL_STATE_FAILED, Reason: persysv1.FailureReason_FAILURE_REASON_IMAGE_NOT_FOUND,
			Message: "ACTUAL_STATE_RUNNING <is> a message", UpdatedAt: timestamppb.New(timestamppb.Now().AsTime()),
		},
		Events: []*persysv1.Event{{Type: "AttemptFailed", Reason: persysv1.FailureReason_FAILURE_REASON_IMAGE_NOT_FOUND}},
	}
}

func TestMarshalJSON(t *testing.T) {
	b, err := contract.MarshalJSON(protojson.MarshalOptions{}, sampleView())
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{`"type":"CONTAINER"`, `"desiredState":"RUNNING"`, `"state":"FAILED"`,
		`"reason":"IMAGE_NOT_FOUND"`, `"zone":"FAILURE_REASON_STORAGE"`, `"message":"ACTUAL_STATE_RUNNING <is> a message"`} {
		if !bytes.Contains(b, []byte(want)) {
			t.Errorf("JSON lacks %s:\n%s", want, b)
		}
	}
	if bytes.Contains(b, []byte(`"FAILURE_REASON_IMAGE_NOT_FOUND"`)) {
		t.Errorf("JSON keeps a full enum name:\n%s", b)
	}
	// protojson's field order (workload, status, events) is kept.
	if !bytes.HasPrefix(b, []byte(`{"workload":{"name":"web"`)) {
		t.Errorf("field order changed:\n%s", b)
	}
	d := &persysv1.PlacementDecision{Rejections: []*persysv1.NodeRejection{{NodeId: "n1",
		Reason: persysv1.RejectReason_REJECT_REASON_NODE_CORDONED,
		Also:   []persysv1.RejectReason{persysv1.RejectReason_REJECT_REASON_INSUFFICIENT_CPU, persysv1.RejectReason_REJECT_REASON_PORT_CONFLICT}}}}
	b, err = contract.MarshalJSON(protojson.MarshalOptions{Multiline: true}, d)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(b, []byte(`"NODE_CORDONED"`)) || !bytes.Contains(b, []byte(`"INSUFFICIENT_CPU",`)) ||
		!bytes.Contains(b, []byte("\n")) {
		t.Errorf("repeated enums or indentation:\n%s", b)
	}
}

func TestUnmarshalJSONReadsBothSpellings(t *testing.T) {
	want := sampleView()
	short, err := contract.MarshalJSON(protojson.MarshalOptions{}, want)
	if err != nil {
		t.Fatal(err)
	}
	full, err := protojson.Marshal(want)
	if err != nil {
		t.Fatal(err)
	}
	snake, err := protojson.MarshalOptions{UseProtoNames: true}.Marshal(want)
	if err != nil {
		t.Fatal(err)
	}
	multiline, err := contract.MarshalJSON(protojson.MarshalOptions{Multiline: true, UseProtoNames: true}, want)
	if err != nil {
		t.Fatal(err)
	}
	for name, b := range map[string][]byte{"canonical": short, "protojson": full, "proto field names": snake, "indented": multiline} {
		got := &persysv1.WorkloadView{}
		if err := contract.UnmarshalJSON(protojson.UnmarshalOptions{}, b, got); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if !proto.Equal(got, want) {
			t.Errorf("%s: round trip differs:\n got %v\nwant %v", name, got, want)
		}
	}
	err = contract.UnmarshalJSON(protojson.UnmarshalOptions{}, []byte(`{"status":{"state":"SLEEPING"}}`), &persysv1.WorkloadView{})
	if err == nil || !strings.Contains(err.Error(), "SLEEPING") {
		t.Errorf("unknown value: err = %v, want one naming SLEEPING", err)
	}
	if err := contract.UnmarshalJSON(protojson.UnmarshalOptions{}, []byte(`{"status":`), &persysv1.WorkloadView{}); err == nil {
		t.Error("truncated JSON: no error")
	}
}
