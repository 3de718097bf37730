package statecache

// Specs shared among workloads: a service's replicas, or the thousands of
// copies a bench applies, carry equal specs, and a decoded spec (the spec,
// its resources, its container, their strings) costs more than half of a
// cached workload. The cache keeps one of each while a workload holds it.

import (
	"hash/maphash"
	"weak"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"

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
// is not changed) that holds an equal spec already held.
func (p *specPool) share(w *persysv1.Workload) *persysv1.Workload {
	spec := w.GetSpec()
	if spec == nil {
		return w
	}
	raw, err := proto.MarshalOptions{Deterministic: true}.Marshal(spec)
	if err != nil {
		return w
	}
	if p.byHash == nil {
		p.seed, p.byHash = maphash.MakeSeed(), map[uint64]weak.Pointer[persysv1.WorkloadSpec]{}
	}
	h := maphash.Bytes(p.seed, raw)
	if held := p.byHash[h].Value(); held != nil {
		if held != spec && proto.Equal(held, spec) {
			return withSpec(w, held)
		}
		return w
	}
	p.byHash[h] = weak.Make(spec)
	if len(p.byHash) > 2*p.swept+1024 {
		p.sweep()
	}
	return w
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

// withSpec is a shallow copy of w with spec: every other field (those
// added later too) shared with w.
func withSpec(w *persysv1.Workload, spec *persysv1.WorkloadSpec) *persysv1.Workload {
	out := &persysv1.Workload{}
	src, dst := w.ProtoReflect(), out.ProtoReflect()
	src.Range(func(fd protoreflect.FieldDescriptor, v protoreflect.Value) bool {
		dst.Set(fd, v)
		return true
	})
	dst.SetUnknown(src.GetUnknown())
	out.Spec = spec
	return out
}
