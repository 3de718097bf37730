package agent

import (
	"cmp"
	"encoding/binary"
	"hash/fnv"
	"slices"
	"time"

	"google.golang.org/protobuf/proto"

	persysv1 "github.com/persys-dev/compute/api/persys/v1"
)

// fullListEvery bounds how long heartbeats may carry only a digest: a full
// list goes at least this often, whatever the scheduler holds.
const fullListEvery = 60 * time.Second

// sentList is the last full workload list the scheduler kept on the
// current registration, by digest. The loop goroutine owns it; the zero
// value means none, and every heartbeat then carries the full list.
type sentList struct {
	digest uint64
	at     time.Time // when that full list was sent
}

// digestOnly reports whether a list with digest d may go as its digest
// alone at now.
func (s sentList) digestOnly(d uint64, now time.Time) bool {
	return s.digest != 0 && s.digest == d && now.Sub(s.at) < fullListEvery
}

// reportDigest is a digest of a full workload list that does not depend on
// the order of the list: FNV-1a 64 over the statuses sorted by name (then
// uid and runtime id), each marshaled deterministically and prefixed with
// its length. It is 0 ("no digest" on the wire) only when a status cannot
// be encoded.
func reportDigest(ws []*persysv1.WorkloadStatus) uint64 {
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
