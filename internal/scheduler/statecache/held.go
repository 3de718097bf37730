package statecache

// Statuses and assignments kept encoded: every cached workload has one of
// each, and a decoded one (its fields, its timestamps, their strings)
// costs about twice its encoding. The fields read on hot paths stay
// decoded beside it; the name and uid, its workload's, are left out.

import (
	"unicode/utf8"

	"google.golang.org/protobuf/encoding/protowire"
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
	// raw is the encoding, without the name and uid when they are those
	// of the workload that holds it (omitted says which).
	raw      []byte
	nodeID   string
	revision uint64
	state    persysv1.ActualState
	reason   persysv1.FailureReason
	attempts int32
	omitted  omitted
}

// holdStatus encodes st (nil: nil), the status of w.
func holdStatus(st *persysv1.WorkloadStatus, w *persysv1.Workload) *heldStatus {
	if st == nil {
		return nil
	}
	h := &heldStatus{nodeID: st.GetNodeId(), revision: st.GetRevision(), state: st.GetState(),
		reason: st.GetReason(), attempts: st.GetAttempts()}
	h.raw, h.omitted = encodeOwned(st, st.GetName(), st.GetUid(), w)
	if h.raw == nil {
		// Not encodable (an invalid string; nothing written to or read
		// from the store is): what the cache reads of it is kept.
		h.raw, _ = proto.Marshal(&persysv1.WorkloadStatus{NodeId: validOrEmpty(h.nodeID), Revision: h.revision,
			State: h.state, Reason: h.reason, Attempts: h.attempts})
	}
	return h
}

// proto decodes h (nil: nil), the status of w: a copy the caller may
// keep.
func (h *heldStatus) proto(w *persysv1.Workload) *persysv1.WorkloadStatus {
	if h == nil {
		return nil
	}
	st := &persysv1.WorkloadStatus{}
	_ = proto.Unmarshal(h.raw, st) // encoded by holdStatus
	st.Name, st.Uid = h.omitted.restore(st.GetName(), st.GetUid(), w)
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
func (h *heldStatus) GetMessage() string { return h.proto(nil).GetMessage() }

// heldAssignment is an assignment the cache holds, encoded like statuses;
// nil: none. Its methods read it as persysv1.Assignment's getters would.
type heldAssignment struct {
	// raw is the encoding, without the name and uid when they are those
	// of the workload that holds it (omitted says which).
	raw                    []byte
	nodeID, previousNodeID string
	// dynamic says whether it holds dynamic host ports (few do: those
	// are decoded when read).
	dynamic bool
	omitted omitted
}

// holdAssignment encodes a (nil: nil), the assignment of w.
func holdAssignment(a *persysv1.Assignment, w *persysv1.Workload) *heldAssignment {
	if a == nil {
		return nil
	}
	h := &heldAssignment{nodeID: a.GetNodeId(), previousNodeID: a.GetPreviousNodeId(),
		dynamic: len(a.GetDynamicHostPorts()) > 0 || len(a.GetPreviousDynamicHostPorts()) > 0}
	h.raw, h.omitted = encodeOwned(a, a.GetName(), a.GetUid(), w)
	if h.raw == nil {
		// Not encodable, as in holdStatus: its nodes are kept.
		h.raw, _ = proto.Marshal(&persysv1.Assignment{NodeId: validOrEmpty(h.nodeID), PreviousNodeId: validOrEmpty(h.previousNodeID),
			DynamicHostPorts: a.GetDynamicHostPorts(), PreviousDynamicHostPorts: a.GetPreviousDynamicHostPorts()})
	}
	return h
}

// proto decodes h (nil: nil), the assignment of w: a copy the caller may
// keep.
func (h *heldAssignment) proto(w *persysv1.Workload) *persysv1.Assignment {
	if h == nil {
		return nil
	}
	a := &persysv1.Assignment{}
	_ = proto.Unmarshal(h.raw, a) // encoded by holdAssignment
	a.Name, a.Uid = h.omitted.restore(a.GetName(), a.GetUid(), w)
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
	return h.proto(nil).GetDynamicHostPorts()
}

func (h *heldAssignment) GetPreviousDynamicHostPorts() []uint32 {
	if h == nil || !h.dynamic {
		return nil
	}
	return h.proto(nil).GetPreviousDynamicHostPorts()
}

// Assignment is a workload's assignment as the cache holds it, read
// without decoding: a reconcile reads its node, its previous node and its
// dynamic ports, and decoded copies (Proto) were 2.5 % of the scheduler's
// allocations at a million. It may be kept: a held assignment is replaced,
// never changed. The zero value is none.
type Assignment struct {
	h *heldAssignment
	w *persysv1.Workload
}

// Exists reports whether there is an assignment.
func (a Assignment) Exists() bool { return a.h != nil }

func (a Assignment) GetNodeId() string             { return a.h.GetNodeId() }
func (a Assignment) GetPreviousNodeId() string     { return a.h.GetPreviousNodeId() }
func (a Assignment) GetDynamicHostPorts() []uint32 { return a.h.GetDynamicHostPorts() }

// Proto decodes a copy the caller may change (nil: none).
func (a Assignment) Proto() *persysv1.Assignment { return a.h.proto(a.w) }

// omitted says which of its name and uid an encoding left out: they are
// its workload's, which every cached workload holds anyway.
type omitted uint8

const (
	omitName omitted = 1 << iota
	omitUID
)

// Both WorkloadStatus and Assignment number their name 1 and uid 2.
const (
	nameField protowire.Number = 1
	uidField  protowire.Number = 2
)

// encodeOwned encodes m, a status or an assignment with name and uid,
// leaving those out that are w's; nil when m cannot be encoded.
func encodeOwned(m proto.Message, name, uid string, w *persysv1.Workload) ([]byte, omitted) {
	raw, err := proto.Marshal(m)
	if err != nil {
		return nil, 0
	}
	if raw == nil {
		raw = []byte{}
	}
	var o omitted
	if name != "" && name == w.GetName() {
		o |= omitName
	}
	if uid != "" && uid == w.GetUid() {
		o |= omitUID
	}
	if o == 0 {
		return raw, 0
	}
	drop := func(num protowire.Number) bool {
		return (num == nameField && o&omitName != 0) || (num == uidField && o&omitUID != 0)
	}
	size := 0
	for b := raw; len(b) > 0; {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return raw, 0
		}
		m := protowire.ConsumeFieldValue(num, typ, b[n:])
		if m < 0 {
			return raw, 0
		}
		if !drop(num) {
			size += n + m
		}
		b = b[n+m:]
	}
	out := make([]byte, 0, size)
	for b := raw; len(b) > 0; {
		num, typ, n := protowire.ConsumeTag(b)
		m := protowire.ConsumeFieldValue(num, typ, b[n:])
		if !drop(num) {
			out = append(out, b[:n+m]...)
		}
		b = b[n+m:]
	}
	return out, o
}

// restore puts back the name and uid o left out, w's.
func (o omitted) restore(name, uid string, w *persysv1.Workload) (string, string) {
	if o&omitName != 0 {
		name = w.GetName()
	}
	if o&omitUID != 0 {
		uid = w.GetUid()
	}
	return name, uid
}

// validOrEmpty is s when it is valid UTF-8 (encodable), else "".
func validOrEmpty(s string) string {
	if utf8.ValidString(s) {
		return s
	}
	return ""
}

// setWorkload makes w e's workload. A status or an assignment that left
// out the name or uid of the one before is encoded again, with them, when
// w's differ (a workload of the same name created again).
func (e *workload) setWorkload(w *persysv1.Workload) {
	if old := e.w; old != nil && (old.GetName() != w.GetName() || old.GetUid() != w.GetUid()) {
		e.status = holdStatus(e.status.proto(old), w)
		e.assignment = holdAssignment(e.assignment.proto(old), w)
	}
	e.w = w
}
