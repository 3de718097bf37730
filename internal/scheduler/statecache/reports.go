package statecache

import (
	persysv1 "github.com/persys-dev/compute/api/persys/v1"
	"github.com/persys-dev/compute/internal/reportdigest"
)

// The helpers below are the only writers of a node's reports once the
// node is in the cache: each keeps held, the list's digest, in step.

// setReports makes m the node's whole list.
func (ne *node) setReports(m map[string]report) {
	ne.reports, ne.held, ne.suspects, ne.checkAll = m, reportdigest.Digest{}, nil, false
	for _, r := range m {
		ne.held.Add(r.entry)
	}
}

// putReport adds or replaces the report of name.
func (ne *node) putReport(name string, r report) {
	if old, ok := ne.reports[name]; ok {
		ne.held.Remove(old.entry)
	}
	ne.reports[name] = r
	ne.held.Add(r.entry)
}

// dropReport removes the report of name, if any.
func (ne *node) dropReport(name string) bool {
	old, ok := ne.reports[name]
	if ok {
		ne.held.Remove(old.entry)
		delete(ne.reports, name)
	}
	return ok
}

// markSuspectsLocked notes, on the nodes e's assignment names, that their
// report of name may be an orphan: called before the assignment changes
// or the entry goes, and when another instance of the workload comes.
func (c *Cache) markSuspectsLocked(name string, e *workload) {
	for _, id := range [2]string{e.assignment.GetNodeId(), e.assignment.GetPreviousNodeId()} {
		if id == "" {
			continue
		}
		ne := c.nodes[id]
		if ne == nil {
			continue
		}
		if _, ok := ne.reports[name]; !ok {
			// A report that comes later is checked when it comes.
			continue
		}
		ne.suspect(name)
	}
}

// suspectOrphansLocked checks node id's suspects (every report when
// checkAll is set), skipping the names in checked, and returns the
// orphans among them. An orphan stays a suspect, so that the next
// heartbeat asks for its removal again if this one did not remove it.
func (c *Cache) suspectOrphansLocked(id string, ne *node, checked map[string]pending) (orphans []Orphan) {
	if ne.checkAll {
		ne.checkAll = false
		for name := range ne.reports {
			ne.suspect(name)
		}
	}
	for name := range ne.suspects {
		if _, ok := checked[name]; ok {
			continue
		}
		r, ok := ne.reports[name]
		if !ok || !c.isOrphanLocked(id, name, r.uid) {
			delete(ne.suspects, name)
			continue
		}
		orphans = append(orphans, Orphan{name, r.uid})
	}
	if len(ne.suspects) == 0 {
		ne.suspects = nil
	}
	return orphans
}

// suspect keeps name, an orphan found outside suspectOrphansLocked, among
// the node's suspects.
func (ne *node) suspect(name string) {
	if ne.suspects == nil {
		ne.suspects = map[string]struct{}{}
	}
	ne.suspects[name] = struct{}{}
}

// pending is one entry of a heartbeat's delta: a new report, or gone.
type pending struct {
	r    report
	st   *persysv1.WorkloadStatus
	gone bool
}
