package model_test

import (
	"testing"

	persysv1 "github.com/persys-dev/compute/api/persys/v1"
	"github.com/persys-dev/compute/internal/model"
)

// The enums convert to and from protobuf by value: every name agrees.
func TestStatesMatchProtobuf(t *testing.T) {
	actual := map[model.ActualState]persysv1.ActualState{
		model.StateUnspecified: persysv1.ActualState_ACTUAL_STATE_UNSPECIFIED,
		model.StatePending:     persysv1.ActualState_ACTUAL_STATE_PENDING,
		model.StateScheduled:   persysv1.ActualState_ACTUAL_STATE_SCHEDULED,
		model.StateCreating:    persysv1.ActualState_ACTUAL_STATE_CREATING,
		model.StateRunning:     persysv1.ActualState_ACTUAL_STATE_RUNNING,
		model.StateStopped:     persysv1.ActualState_ACTUAL_STATE_STOPPED,
		model.StateFailed:      persysv1.ActualState_ACTUAL_STATE_FAILED,
		model.StateUnknown:     persysv1.ActualState_ACTUAL_STATE_UNKNOWN,
		model.StateDeleting:    persysv1.ActualState_ACTUAL_STATE_DELETING,
		model.StateMissing:     persysv1.ActualState_ACTUAL_STATE_MISSING,
	}
	if len(actual) != len(persysv1.ActualState_name) {
		t.Errorf("model has %d actual states, protobuf %d", len(actual), len(persysv1.ActualState_name))
	}
	for m, p := range actual {
		if int32(m) != int32(p) {
			t.Errorf("%v: model %d, protobuf %d", p, m, p)
		}
	}
	desired := map[model.DesiredState]persysv1.DesiredState{
		model.DesiredUnspecified: persysv1.DesiredState_DESIRED_STATE_UNSPECIFIED,
		model.DesiredRunning:     persysv1.DesiredState_DESIRED_STATE_RUNNING,
		model.DesiredStopped:     persysv1.DesiredState_DESIRED_STATE_STOPPED,
	}
	if len(desired) != len(persysv1.DesiredState_name) {
		t.Errorf("model has %d desired states, protobuf %d", len(desired), len(persysv1.DesiredState_name))
	}
	for m, p := range desired {
		if int32(m) != int32(p) {
			t.Errorf("%v: model %d, protobuf %d", p, m, p)
		}
	}
	if int32(model.ReasonNodeLost) != int32(persysv1.FailureReason_FAILURE_REASON_NODE_LOST) {
		t.Error("ReasonNodeLost differs from protobuf")
	}
}
