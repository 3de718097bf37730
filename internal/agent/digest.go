package agent

import (
	"slices"
	"time"

	"google.golang.org/protobuf/proto"

	persysv1 "github.com/persys-dev/compute/api/persys/v1"
	"github.com/persys-dev/compute/internal/nodechannel"
	"github.com/persys-dev/compute/internal/reportdigest"
)

// portScanEvery bounds how often the host's ports are scanned for
// heartbeats: the scan reads every socket table of the host, and the ports
// go only when they changed.
const portScanEvery = 60 * time.Second

// sentList is the last workload list the scheduler acknowledged
// (digest_kept) on the current control stream, with the host ports sent
// with it. The loop goroutine owns it; the zero value means none, and the
// next heartbeat then carries the full list: the first one on each stream,
// and the one after any error or request for it.
type sentList struct {
	link   *nodechannel.Link
	digest uint64
	byName map[string]*persysv1.WorkloadStatus
	// entries are the statuses' terms of the digest, by name, and held
	// their sum: the next digest is computed from what changed alone.
	entries map[string]uint64
	held    reportdigest.Digest
	ports   []*persysv1.HostPort
	// portsAt is when ports were scanned.
	portsAt time.Time
	// seen is delta's set of names, kept for the next delta (a new one
	// per heartbeat was a sixth of telling what changed).
	seen map[string]bool
}

// fullList is a list with its digest (0: a status cannot be encoded) and
// each status's term of it, to be sent whole.
type fullList struct {
	digest  uint64
	entries map[string]uint64
	held    reportdigest.Digest
}

func digestWhole(ws []*persysv1.WorkloadStatus) fullList {
	f := fullList{entries: make(map[string]uint64, len(ws))}
	for _, st := range ws {
		h, ok := reportdigest.EntryOf(st)
		if !ok {
			return fullList{}
		}
		f.entries[st.GetName()] = h
		f.held.Add(h)
	}
	f.digest = f.held.Sum()
	if len(f.entries) != len(ws) {
		// Two statuses of one name: the list is sent whole each time, and
		// its digest is the list's, not the one kept by name.
		f.digest, f.entries = reportdigest.Of(ws), nil
	}
	return f
}

// acked makes the full list f of ws that went on link the one the
// scheduler holds.
func acked(link *nodechannel.Link, f fullList, ws []*persysv1.WorkloadStatus, ports []*persysv1.HostPort, portsAt time.Time) sentList {
	if f.entries == nil {
		return sentList{}
	}
	s := sentList{link: link, digest: f.digest, byName: make(map[string]*persysv1.WorkloadStatus, len(ws)),
		entries: f.entries, held: f.held, ports: ports, portsAt: portsAt}
	for _, st := range ws {
		s.byName[st.GetName()] = st
	}
	return s
}

// base reports whether a heartbeat on link may be told against s.
func (s sentList) base(link *nodechannel.Link) bool { return s.digest != 0 && s.link == link }

// change is what changed from a sentList to the list now: the statuses
// that differ or are new (with their terms of the digest), the names
// gone, and the new list's digest (0: it must go whole).
type change struct {
	changed []*persysv1.WorkloadStatus
	entries []uint64
	removed []string
	digest  uint64
	held    reportdigest.Digest
}

// delta is what changed from s to ws.
func (s *sentList) delta(ws []*persysv1.WorkloadStatus) change {
	var c change
	if s.seen == nil {
		s.seen = make(map[string]bool, len(ws))
	}
	seen := s.seen
	clear(seen)
	sum := s.held
	whole := false
	for _, st := range ws {
		name := st.GetName()
		if seen[name] {
			whole = true
		}
		seen[name] = true
		// The same status (a listing that found nothing changed hands the
		// same ones out again), or an equal one.
		if old, ok := s.byName[name]; ok && (old == st || proto.Equal(old, st)) {
			continue
		}
		h, ok := reportdigest.EntryOf(st)
		if !ok {
			whole = true
		}
		if e, had := s.entries[name]; had {
			sum.Remove(e)
		}
		sum.Add(h)
		c.changed, c.entries = append(c.changed, st), append(c.entries, h)
	}
	for name := range s.byName {
		if !seen[name] {
			c.removed = append(c.removed, name)
			sum.Remove(s.entries[name])
		}
	}
	slices.Sort(c.removed)
	if !whole {
		c.digest, c.held = sum.Sum(), sum
	}
	return c
}

// apply makes s the list c made of it, acknowledged with ports.
func (s *sentList) apply(c change, ports []*persysv1.HostPort, portsAt time.Time) {
	for _, name := range c.removed {
		delete(s.byName, name)
		delete(s.entries, name)
	}
	for i, st := range c.changed {
		s.byName[st.GetName()], s.entries[st.GetName()] = st, c.entries[i]
	}
	s.digest, s.held, s.ports, s.portsAt = c.digest, c.held, ports, portsAt
}

func samePorts(a, b []*persysv1.HostPort) bool {
	return slices.EqualFunc(a, b, func(x, y *persysv1.HostPort) bool { return proto.Equal(x, y) })
}
