package agent

import (
	"context"
	"sync"
)

// nameLocks serializes operations per workload name; different names
// proceed in parallel. Entries live only while someone holds or waits.
type nameLocks struct {
	mu    sync.Mutex
	locks map[string]*nameLock
}

type nameLock struct {
	ch   chan struct{} // holds one token while locked
	refs int
}

func newNameLocks() *nameLocks { return &nameLocks{locks: map[string]*nameLock{}} }

// lock takes the lock of name, or fails when ctx ends first. The returned
// function releases it.
func (n *nameLocks) lock(ctx context.Context, name string) (func(), error) {
	n.mu.Lock()
	l, ok := n.locks[name]
	if !ok {
		l = &nameLock{ch: make(chan struct{}, 1)}
		n.locks[name] = l
	}
	l.refs++
	n.mu.Unlock()

	release := func() {
		<-l.ch
		n.release(name, l)
	}
	// Uncontended, as nearly always: no select on ctx.
	select {
	case l.ch <- struct{}{}:
		return release, nil
	default:
	}
	select {
	case l.ch <- struct{}{}:
		return release, nil
	case <-ctx.Done():
		n.release(name, l)
		return nil, ctx.Err()
	}
}

func (n *nameLocks) release(name string, l *nameLock) {
	n.mu.Lock()
	defer n.mu.Unlock()
	l.refs--
	if l.refs == 0 {
		delete(n.locks, name)
	}
}
