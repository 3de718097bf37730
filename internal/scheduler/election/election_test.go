package election_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/persys-dev/compute/internal/scheduler/election"
	"github.com/persys-dev/compute/internal/store/storetest"
	"github.com/persys-dev/compute/internal/testutil/eventually"
)

func TestNewNamesWhatIsMissing(t *testing.T) {
	_, err := election.New(election.Config{})
	if err == nil || !strings.Contains(err.Error(), "Config.Address") {
		t.Fatalf("New without a store or address: %v, want an error naming Config.Address", err)
	}
	if _, err := election.New(election.Config{Alone: true}); err != nil {
		t.Fatalf("New alone: %v", err)
	}
}

// Two replicas on one etcd: one leads and the other names it; when the
// leader's term ends (its Run stops), the other takes over, runs its term
// and names itself.
func TestTheFollowerTakesOver(t *testing.T) {
	st, _ := storetest.New(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	type replica struct {
		e       *election.Elector
		elected chan struct{}
		stop    context.CancelFunc
		done    chan struct{}
	}
	start := func(addr string) *replica {
		r := &replica{elected: make(chan struct{}, 4), done: make(chan struct{})}
		var err error
		r.e, err = election.New(election.Config{Store: st, Address: addr, TTL: time.Second,
			Elected: func() { r.elected <- struct{}{} }})
		if err != nil {
			t.Fatal(err)
		}
		rctx, stop := context.WithCancel(ctx)
		r.stop = stop
		go func() {
			defer close(r.done)
			_ = r.e.Run(rctx, func(ctx context.Context) error { <-ctx.Done(); return nil })
		}()
		return r
	}
	// A bound so that a replica never elected fails the test instead of
	// hanging it, not a timing assertion.
	wait := func(ch <-chan struct{}, what string) {
		t.Helper()
		select {
		case <-ch:
		case <-time.After(30 * time.Second):
			t.Fatalf("%s: not within 30s", what)
		}
	}
	a := start("a:1")
	wait(a.elected, "a elected")
	b := start("b:1")
	eventually.Eventually(t, "b names a as the leader", 10*time.Second, func() (bool, string) {
		return b.e.Leader() == "a:1" && !b.e.Leading() && a.e.Leading(), "b sees " + b.e.Leader()
	})
	a.stop()
	wait(a.done, "a's Run returns")
	if a.e.Leading() {
		t.Error("a still leads after its Run returned")
	}
	wait(b.elected, "b elected")
	eventually.Eventually(t, "b leads and names itself", 10*time.Second, func() (bool, string) {
		return b.e.Leading() && b.e.Leader() == "b:1", "b sees " + b.e.Leader()
	})
	b.stop()
	wait(b.done, "b's Run returns")
}
