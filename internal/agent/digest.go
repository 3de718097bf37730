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
	ports  []*persysv1.HostPort
	// portsAt is when ports were scanned.
	portsAt time.Time
}

// acked makes the list with digest d that went on link the one the
// scheduler holds.
func acked(link *nodechannel.Link, d uint64, ws []*persysv1.WorkloadStatus, ports []*persysv1.HostPort, portsAt time.Time) sentList {
	s := sentList{link: link, digest: d, byName: make(map[string]*persysv1.WorkloadStatus, len(ws)), ports: ports, portsAt: portsAt}
	for _, st := range ws {
		s.byName[st.GetName()] = st
	}
	return s
}

// base reports whether a heartbeat on link may be told against s.
func (s sentList) base(link *nodechannel.Link) bool { return s.digest != 0 && s.link == link }

// delta is what changed from s to ws: the statuses that differ or are new,
// and the names gone.
func (s sentList) delta(ws []*persysv1.WorkloadStatus) (changed []*persysv1.WorkloadStatus, removed []string) {
	seen := make(map[string]bool, len(ws))
	for _, st := range ws {
		seen[st.GetName()] = true
		if old, ok := s.byName[st.GetName()]; !ok || !proto.Equal(old, st) {
			changed = append(changed, st)
		}
	}
	for name := range s.byName {
		if !seen[name] {
			removed = append(removed, name)
		}
	}
	slices.Sort(removed)
	return changed, removed
}

func samePorts(a, b []*persysv1.HostPort) bool {
	return slices.EqualFunc(a, b, func(x, y *persysv1.HostPort) bool { return proto.Equal(x, y) })
}

// reportDigest is the digest of a full workload list (reportdigest.Of).
func reportDigest(ws []*persysv1.WorkloadStatus) uint64 { return reportdigest.Of(ws) }
