package agent

import (
	"sync"

	persysv1 "github.com/persys-dev/compute/api/persys/v1"
)

// maxRepairNotes bounds the repairs waiting for a heartbeat: an agent that
// cannot reach its scheduler keeps the newest, and says in its log how
// many older ones it dropped (its metric counts them all).
const maxRepairNotes = 256

// repairNotes holds the repairs made since the last heartbeat that reached
// the scheduler, which records each as a Repaired event.
type repairNotes struct {
	mu      sync.Mutex
	pending []*persysv1.AgentRepair
	dropped int
}

func (n *repairNotes) add(r *persysv1.AgentRepair) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if len(n.pending) == maxRepairNotes {
		n.pending = n.pending[1:]
		n.dropped++
	}
	n.pending = append(n.pending, r)
}

// peek returns the repairs to send now.
func (n *repairNotes) peek() []*persysv1.AgentRepair {
	n.mu.Lock()
	defer n.mu.Unlock()
	return append([]*persysv1.AgentRepair(nil), n.pending...)
}

// sent forgets the repairs a heartbeat delivered (those peek gave it;
// newer ones stay) and returns how many were dropped unsent before.
func (n *repairNotes) sent(sent []*persysv1.AgentRepair) (dropped int) {
	n.mu.Lock()
	defer n.mu.Unlock()
	told := make(map[*persysv1.AgentRepair]bool, len(sent))
	for _, r := range sent {
		told[r] = true
	}
	kept := n.pending[:0]
	for _, r := range n.pending {
		if !told[r] {
			kept = append(kept, r)
		}
	}
	clear(n.pending[len(kept):])
	n.pending = kept
	dropped, n.dropped = n.dropped, 0
	return dropped
}
