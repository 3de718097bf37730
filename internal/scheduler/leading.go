package scheduler

// Leading reports whether this replica is the leader now; the
// persys_scheduler_leader gauge (internal/opsmetrics) reads it at scrape
// time so that the "no leader" alert has a series to watch.
func (s *Scheduler) Leading() bool { return s.elector.Leading() }
