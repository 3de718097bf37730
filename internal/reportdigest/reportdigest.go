// Package reportdigest owns the digest of a node's workload list that
// agents send with heartbeats and the scheduler checks: both sides must
// compute it the same way, so it is defined here once. Callers pass the
// full list a node runs; the order of the list does not matter.
package reportdigest

import (
	"cmp"
	"encoding/binary"
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
	h := fnv.New64a()
	opts := proto.MarshalOptions{Deterministic: true}
	var buf []byte
	for _, st := range sorted {
		var err error
		if buf, err = opts.MarshalAppend(buf[:0], st); err != nil {
			// The list could not be sent either; without a digest it
			// goes full, and the heartbeat reports the error.
			return 0
		}
		var n [8]byte
		binary.BigEndian.PutUint64(n[:], uint64(len(buf)))
		_, _ = h.Write(n[:])
		_, _ = h.Write(buf)
	}
	if d := h.Sum64(); d != 0 {
		return d
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
