package statecache

// Statuses kept encoded: every cached workload has one, and a decoded
// status (its fields, its timestamps, their strings) costs about twice
// its encoding. The fields read on hot paths stay decoded beside it.

import (
	"google.golang.org/protobuf/proto"

	persysv1 "github.com/persys-dev/compute/api/persys/v1"
)

// statusLike is what gaveUp and the counts read of a status, held or not.
type statusLike interface {
	GetState() persysv1.ActualState
	GetAttempts() int32
	GetRevision() uint64
}

// heldStatus is a status the cache holds; nil: none. Its methods read it
// as persysv1.WorkloadStatus's getters would.
type heldStatus struct {
	// raw is the encoding; nil only for a status that could not be
	// encoded (none that was written to or read from the store), of
	// which the fields below are kept.
	raw      []byte
	nodeID   string
	revision uint64
	state    persysv1.ActualState
	reason   persysv1.FailureReason
	attempts int32
}

// holdStatus encodes st (nil: nil).
func holdStatus(st *persysv1.WorkloadStatus) *heldStatus {
	if st == nil {
		return nil
	}
	raw, _ := proto.Marshal(st)
	return &heldStatus{raw: raw, nodeID: st.GetNodeId(), revision: st.GetRevision(), state: st.GetState(),
		reason: st.GetReason(), attempts: st.GetAttempts()}
}

// proto decodes h (nil: nil): a copy the caller may keep.
func (h *heldStatus) proto() *persysv1.WorkloadStatus {
	if h == nil {
		return nil
	}
	if h.raw == nil {
		return &persysv1.WorkloadStatus{NodeId: h.nodeID, Revision: h.revision, State: h.state, Reason: h.reason, Attempts: h.attempts}
	}
	st := &persysv1.WorkloadStatus{}
	_ = proto.Unmarshal(h.raw, st) // encoded by holdStatus
	return st
}

func (h *heldStatus) GetState() persysv1.ActualState {
	if h == nil {
		return persysv1.ActualState_ACTUAL_STATE_UNSPECIFIED
	}
	return h.state
}

func (h *heldStatus) GetAttempts() int32 {
	if h == nil {
		return 0
	}
	return h.attempts
}

func (h *heldStatus) GetRevision() uint64 {
	if h == nil {
		return 0
	}
	return h.revision
}

func (h *heldStatus) GetNodeId() string {
	if h == nil {
		return ""
	}
	return h.nodeID
}

func (h *heldStatus) GetReason() persysv1.FailureReason {
	if h == nil {
		return persysv1.FailureReason_FAILURE_REASON_UNSPECIFIED
	}
	return h.reason
}

// GetMessage decodes h's message.
func (h *heldStatus) GetMessage() string { return h.proto().GetMessage() }

// heldAssignment is an assignment the cache holds, encoded like statuses;
// nil: none. Its methods read it as persysv1.Assignment's getters would.
type heldAssignment struct {
	// raw is the encoding; nil only for an assignment that could not be
	// encoded (none written to or read from the store), of which the
	// nodes are kept.
	raw                    []byte
	nodeID, previousNodeID string
	// dynamic says whether it holds dynamic host ports (few do: those
	// are decoded when read).
	dynamic bool
}

// holdAssignment encodes a (nil: nil).
func holdAssignment(a *persysv1.Assignment) *heldAssignment {
	if a == nil {
		return nil
	}
	raw, _ := proto.Marshal(a)
	return &heldAssignment{raw: raw, nodeID: a.GetNodeId(), previousNodeID: a.GetPreviousNodeId(),
		dynamic: len(a.GetDynamicHostPorts()) > 0 || len(a.GetPreviousDynamicHostPorts()) > 0}
}

// proto decodes h (nil: nil): a copy the caller may keep.
func (h *heldAssignment) proto() *persysv1.Assignment {
	if h == nil {
		return nil
	}
	if h.raw == nil {
		return &persysv1.Assignment{NodeId: h.nodeID, PreviousNodeId: h.previousNodeID}
	}
	a := &persysv1.Assignment{}
	_ = proto.Unmarshal(h.raw, a) // encoded by holdAssignment
	return a
}

func (h *heldAssignment) GetNodeId() string {
	if h == nil {
		return ""
	}
	return h.nodeID
}

func (h *heldAssignment) GetPreviousNodeId() string {
	if h == nil {
		return ""
	}
	return h.previousNodeID
}

func (h *heldAssignment) GetDynamicHostPorts() []uint32 {
	if h == nil || !h.dynamic {
		return nil
	}
	return h.proto().GetDynamicHostPorts()
}

func (h *heldAssignment) GetPreviousDynamicHostPorts() []uint32 {
	if h == nil || !h.dynamic {
		return nil
	}
	return h.proto().GetPreviousDynamicHostPorts()
}
