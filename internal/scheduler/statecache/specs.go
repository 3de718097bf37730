package statecache

// Specs shared among workloads: a service's replicas, or the thousands of
// copies a bench applies, carry equal specs, and a decoded spec (the spec,
// its resources, its container, their strings) costs more than half of a
// cached workload. The cache keeps one of each while a workload holds it.
// A workload never updated holds one timestamp for both of its times.

import (
	"hash/maphash"
	"weak"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/known/timestamppb"

	persysv1 "github.com/persys-dev/compute/api/persys/v1"
)

// specPool finds a held spec equal to a new one. It holds its specs
// weakly: a spec no workload holds any more is collected, and its entry
// swept later. Guarded by the cache's mu.
type specPool struct {
	seed maphash.Seed
	// byHash maps the hash of a spec's deterministic encoding to the spec
	// held; on a collision the later spec is simply not shared.
	byHash map[uint64]weak.Pointer[persysv1.WorkloadSpec]
	// swept is len(byHash) after the last sweep.
	swept int
}

// share returns w, or a shallow copy of w (w itself is the caller's and
// is not changed) that holds an equal spec already held, and one
// timestamp for created_at and updated_at when they are equal (a workload
// never updated; decoded, it has two).
func (p *specPool) share(w *persysv1.Workload) *persysv1.Workload {
	spec := p.held(w.GetSpec())
	created, updated := w.GetCreatedAt(), w.GetUpdatedAt()
	sameTimes := created != updated && sameTimestamp(created, updated)
	if spec == w.GetSpec() && !sameTimes {
		return w
	}
	out := shallowCopy(w)
	out.Spec = spec
	if sameTimes {
		out.UpdatedAt = created
	}
	return out
}

// held returns a held spec equal to spec, or spec, now held.
func (p *specPool) held(spec *persysv1.WorkloadSpec) *persysv1.WorkloadSpec {
	if spec == nil {
		return nil
	}
	raw, err := proto.MarshalOptions{Deterministic: true}.Marshal(spec)
	if err != nil {
		return spec
	}
	if p.byHash == nil {
		p.seed, p.byHash = maphash.MakeSeed(), map[uint64]weak.Pointer[persysv1.WorkloadSpec]{}
	}
	h := maphash.Bytes(p.seed, raw)
	if held := p.byHash[h].Value(); held != nil {
		if proto.Equal(held, spec) {
			return held
		}
		return spec // a collision: not shared
	}
	p.byHash[h] = weak.Make(spec)
	if len(p.byHash) > 2*p.swept+1024 {
		p.sweep()
	}
	return spec
}

// sameTimestamp reports whether a and b are set and equal.
func sameTimestamp(a, b *timestamppb.Timestamp) bool {
	return a != nil && b != nil && a.GetSeconds() == b.GetSeconds() && a.GetNanos() == b.GetNanos() &&
		len(a.ProtoReflect().GetUnknown()) == 0 && len(b.ProtoReflect().GetUnknown()) == 0
}

// sweep drops the entries of specs collected since.
func (p *specPool) sweep() {
	for h, wp := range p.byHash {
		if wp.Value() == nil {
			delete(p.byHash, h)
		}
	}
	p.swept = len(p.byHash)
}

// shallowCopy is a shallow copy of w: every field (those added later
// too) shared with w.
func shallowCopy(w *persysv1.Workload) *persysv1.Workload {
	out := &persysv1.Workload{}
	src, dst := w.ProtoReflect(), out.ProtoReflect()
	src.Range(func(fd protoreflect.FieldDescriptor, v protoreflect.Value) bool {
		dst.Set(fd, v)
		return true
	})
	dst.SetUnknown(src.GetUnknown())
	return out
}
