package scheduler

import "sync"

// callLimits is how many applies and deletes each node gets at once: the
// scheduler's own bound (--agent-calls-per-node), or less when the node
// declared less at registration (max_concurrent_calls). The dispatcher
// and the agent pool both read it.
type callLimits struct {
	def int

	mu       sync.Mutex
	declared map[string]int
}

func newCallLimits(def int) *callLimits {
	return &callLimits{def: max(1, def), declared: map[string]int{}}
}

// declare records what node declared at its registration; 0 (an agent
// that predates the field) leaves the scheduler's bound.
func (l *callLimits) declare(node string, n uint32) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if n == 0 || int64(n) >= int64(l.def) {
		delete(l.declared, node)
		return
	}
	l.declared[node] = int(n)
}

// of is node's bound: min(declared, the scheduler's).
func (l *callLimits) of(node string) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	if n, ok := l.declared[node]; ok {
		return n
	}
	return l.def
}
