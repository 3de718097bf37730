package scheduler

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"
)

// TestAgentCallSlots: a node gets at most perNode calls at once; another
// node is not held up by it; a wait ends with the caller's context and
// names the node.
func TestAgentCallSlots(t *testing.T) {
	p := &agentPool{perNode: 2, conns: map[string]agentConn{}, slots: map[string]chan struct{}{}}
	ctx := context.Background()
	r1, err := p.slot(ctx, "n1")
	if err != nil {
		t.Fatal(err)
	}
	r2, err := p.slot(ctx, "n1")
	if err != nil {
		t.Fatal(err)
	}
	other, err := p.slot(ctx, "n2")
	if err != nil {
		t.Fatalf("node n2 waited for n1's slots: %v", err)
	}
	other()

	third := make(chan error, 1)
	go func() {
		release, err := p.slot(ctx, "n1")
		if err == nil {
			release()
		}
		third <- err
	}()
	select {
	case err := <-third:
		t.Fatalf("a third call on n1 got a slot while two were held (err %v)", err)
	case <-time.After(100 * time.Millisecond):
	}
	r1()
	select {
	case err := <-third:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(queueWait):
		t.Fatal("a released slot was not handed to the waiting call")
	}
	r2()

	// Full again: a wait that outlives its context fails with it.
	a, _ := p.slot(ctx, "n1")
	b, _ := p.slot(ctx, "n1")
	defer a()
	defer b()
	cctx, cancel := context.WithTimeout(ctx, 20*time.Millisecond)
	defer cancel()
	_, err = p.slot(cctx, "n1")
	if !errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), "n1") {
		t.Fatalf("err = %v, want a deadline error naming node n1", err)
	}
}
