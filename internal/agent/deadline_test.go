package agent

import (
	"context"
	"testing"
	"time"
)

// TestSharedDeadline checks that calls share a deadline while at least
// half of the timeout is left, then get a fresh one, and that the one
// replaced is cancelled.
func TestSharedDeadline(t *testing.T) {
	long := sharedDeadline{parent: t.Context(), timeout: time.Hour}
	first := long.next()
	if long.next() != first {
		t.Fatal("a call with most of the timeout left got a new context")
	}
	if d, ok := first.Deadline(); !ok || time.Until(d) < 30*time.Minute {
		t.Fatalf("deadline %v (%v), want about an hour from now", d, ok)
	}
	long.stop()
	if first.Err() == nil {
		t.Fatal("stop left the context running")
	}

	short := sharedDeadline{parent: t.Context(), timeout: 40 * time.Millisecond}
	old := short.next()
	time.Sleep(25 * time.Millisecond) // less than half of the 40 ms is left
	fresh := short.next()
	if fresh == old {
		t.Fatal("a call with less than half of the timeout left shared the old deadline")
	}
	if old.Err() == nil {
		t.Fatal("the replaced context was not cancelled")
	}
	if od, _ := old.Deadline(); !func() bool { d, _ := fresh.Deadline(); return d.After(od) }() {
		t.Fatal("the fresh deadline is not later than the replaced one")
	}
	short.stop()

	parent, cancel := context.WithCancel(t.Context())
	child := sharedDeadline{parent: parent, timeout: time.Hour}
	c := child.next()
	cancel()
	if c.Err() == nil {
		t.Fatal("the parent's end did not end the call's context")
	}
	child.stop()
}
