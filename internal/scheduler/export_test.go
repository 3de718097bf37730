package scheduler

// NodeIndexDrift compares the cache's by-node index with a walk over it
// and describes the first difference ("" when they agree). Tests call it
// when a scheduler stops.
func (s *Scheduler) NodeIndexDrift() string { return s.cache.IndexDrift() }

// CallLimit is how many applies and deletes node gets at once.
func (s *Scheduler) CallLimit(node string) int { return s.callLimits.of(node) }
