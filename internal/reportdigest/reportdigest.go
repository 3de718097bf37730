// Package reportdigest owns the digest of a node's workload list that
// agents send with heartbeats and the scheduler checks: both sides must
// compute it the same way, so it is defined here once. Callers pass the
// full list a node runs; the order of the list does not matter.
//
// The digest is a sum of one hash per status, so that either side can
// update it from what changed alone (subtract the hash of a status that
// went or changed, add the new one) instead of hashing the whole list
// again: at 100 workloads a node and 1,000 heartbeats a second that full
// pass was a sixth of the scheduler's CPU. It detects drift between two
// honest copies of a list; it is not a defence against a node that lies
// about its own workloads (it could do that with a valid digest anyway).
package reportdigest

import (
	"encoding/binary"
	"hash/fnv"

	"google.golang.org/protobuf/proto"

	persysv1 "github.com/persys-dev/compute/api/persys/v1"
)

// Of is the digest of a full workload list, each status marshaled
// deterministically. It is 0 ("no digest" on the wire) only when a status
// cannot be encoded.
func Of(ws []*persysv1.WorkloadStatus) uint64 {
	opts := proto.MarshalOptions{Deterministic: true}
	var d Digest
	var buf []byte
	for _, st := range ws {
		var err error
		if buf, err = opts.MarshalAppend(buf[:0], st); err != nil {
			return 0
		}
		d.Add(Entry(buf))
	}
	return d.Sum()
}

// EntryOf is Entry of st marshaled deterministically; ok is false when st
// cannot be encoded.
func EntryOf(st *persysv1.WorkloadStatus) (h uint64, ok bool) {
	raw, err := proto.MarshalOptions{Deterministic: true}.Marshal(st)
	if err != nil {
		return 0, false
	}
	return Entry(raw), true
}

// Entry is the hash of one encoded status: FNV-1a 64 over its length and
// bytes, then mixed (the splitmix64 finalizer) so that the sum of many
// spreads over all 64 bits.
func Entry(encoded []byte) uint64 {
	h := fnv.New64a()
	var n [8]byte
	binary.BigEndian.PutUint64(n[:], uint64(len(encoded)))
	_, _ = h.Write(n[:])
	_, _ = h.Write(encoded)
	x := h.Sum64()
	x ^= x >> 30
	x *= 0xbf58476d1ce4e5b9
	x ^= x >> 27
	x *= 0x94d049bb133111eb
	x ^= x >> 31
	return x
}

// Digest accumulates the entries of a list; the zero value is the empty
// list's.
type Digest struct{ sum uint64 }

// Add adds one status's entry (see Entry).
func (d *Digest) Add(entry uint64) { d.sum += entry }

// Remove takes out an entry added before.
func (d *Digest) Remove(entry uint64) { d.sum -= entry }

// Sum is the digest, never 0 (which means "none" on the wire).
func (d Digest) Sum() uint64 {
	if d.sum != 0 {
		return d.sum
	}
	return 1
}
