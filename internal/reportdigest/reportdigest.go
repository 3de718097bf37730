// Package reportdigest owns the digest of a node's workload list that
// agents send with heartbeats and the scheduler checks: both sides must
// compute it the same way, so it is defined here once. Callers pass the
// full list a node runs; the order of the list does not matter.
package reportdigest

import (
	"cmp"
	"encoding/binary"
	"hash"
	"hash/fnv"
	"slices"

	"google.golang.org/protobuf/proto"

	persysv1 "github.com/persys-dev/compute/api/persys/v1"
)

// Of is a digest of a full workload list that does not depend on the order
// of the list: FNV-1a 64 over the statuses sorted by name (then uid and
// runtime id), each marshaled deterministically and prefixed with its
// length. It is 0 ("no digest" on the wire) only when a status cannot be
// encoded.
func Of(ws []*persysv1.WorkloadStatus) uint64 {
	sorted := slices.Clone(ws)
	slices.SortFunc(sorted, func(a, b *persysv1.WorkloadStatus) int {
		return cmp.Or(cmp.Compare(a.GetName(), b.GetName()), cmp.Compare(a.GetUid(), b.GetUid()),
			cmp.Compare(a.GetRuntimeId(), b.GetRuntimeId()))
	})
	opts := proto.MarshalOptions{Deterministic: true}
	var d Digest
	var buf []byte
	for _, st := range sorted {
		var err error
		if buf, err = opts.MarshalAppend(buf[:0], st); err != nil {
			// The list could not be sent either; without a digest it
			// goes full, and the heartbeat reports the error.
			return 0
		}
		d.Add(buf)
	}
	return d.Sum()
}

// Digest computes Of incrementally from statuses already marshaled
// deterministically, added in Of's order (by name, then uid and runtime
// id), for a holder that keeps them encoded. The zero value is empty.
type Digest struct{ h hash.Hash64 }

// Add adds one encoded status.
func (d *Digest) Add(encoded []byte) {
	if d.h == nil {
		d.h = fnv.New64a()
	}
	var n [8]byte
	binary.BigEndian.PutUint64(n[:], uint64(len(encoded)))
	_, _ = d.h.Write(n[:])
	_, _ = d.h.Write(encoded)
}

// Sum is the digest of what was added (never 0).
func (d *Digest) Sum() uint64 {
	if d.h == nil {
		d.h = fnv.New64a()
	}
	if s := d.h.Sum64(); s != 0 {
		return s
	}
	return 1
}

// OfMap is Of over the values of a list held by name.
func OfMap(ws map[string]*persysv1.WorkloadStatus) uint64 {
	list := make([]*persysv1.WorkloadStatus, 0, len(ws))
	for _, st := range ws {
		list = append(list, st)
	}
	return Of(list)
}
