package scheduler

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	persysv1 "github.com/persys-dev/compute/api/persys/v1"
	"github.com/persys-dev/compute/api/persys/v1/persysv1grpc"
	"github.com/persys-dev/compute/internal/nodechannel"
	"github.com/persys-dev/compute/internal/testutil/eventually"
)

// TestAgentCallSlots: a node gets at most perNode calls at once; another
// node is not held up by it; a wait ends with the caller's context and
// names the node.
func TestAgentCallSlots(t *testing.T) {
	p := &agentPool{limits: newCallLimits(2), slots: map[string]chan struct{}{}, inflight: map[string]map[*inflightCall]struct{}{}}
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

	// A node that declared fewer calls at registration gets as many; one
	// that declared more gets the scheduler's bound; a new registration
	// changes it.
	p.limits.declare("n3", 1)
	p.limits.declare("n4", 100)
	for _, tc := range []struct {
		node string
		want int
	}{{"n3", 1}, {"n4", 2}} {
		var held []func()
		for range tc.want {
			r, err := p.slot(ctx, tc.node)
			if err != nil {
				t.Fatalf("%s: slot %d of %d: %v", tc.node, len(held)+1, tc.want, err)
			}
			held = append(held, r)
		}
		cctx, cancel := context.WithTimeout(ctx, 20*time.Millisecond)
		if _, err := p.slot(cctx, tc.node); !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("%s: a call beyond its %d got a slot (err %v)", tc.node, tc.want, err)
		}
		cancel()
		for _, r := range held {
			r()
		}
	}
	p.limits.declare("n3", 0)
	if got := p.limits.of("n3"); got != 2 {
		t.Fatalf("n3 registered again without a declaration: limit %d, want the scheduler's 2", got)
	}
}

// TestHeartbeatInterval: the configured interval until the nodes together
// would exceed the rate target, then longer, but never past a third of the
// lease TTL (unless the configured interval is).
func TestHeartbeatInterval(t *testing.T) {
	const s = time.Second
	for _, tc := range []struct {
		nodes     int
		base, ttl time.Duration
		rate      float64
		want      time.Duration
	}{
		{1, 2 * s, 10 * s, 1000, 2 * s},
		{2000, 2 * s, 10 * s, 1000, 2 * s},
		{2500, 2 * s, 10 * s, 1000, 2500 * time.Millisecond},
		{5000, 2 * s, 10 * s, 1000, 3333 * time.Millisecond},
		{10000, 2 * s, 10 * s, 1000, 3333 * time.Millisecond},
		{10000, 2 * s, 60 * s, 1000, 10 * s},
		{10000, 5 * s, 10 * s, 1000, 5 * s},
		{0, 2 * s, 10 * s, 1000, 2 * s},
	} {
		if got := HeartbeatInterval(tc.nodes, tc.base, tc.ttl, tc.rate); got != tc.want {
			t.Errorf("HeartbeatInterval(%d nodes, base %s, ttl %s, %v/s) = %s, want %s", tc.nodes, tc.base, tc.ttl, tc.rate, got, tc.want)
		}
	}
}

// TestNodeLostEndsCallsInFlight: a call to a node whose agent does not
// answer (here: whose control stream is not there, and the call waits for
// it) ends when the node is lost, saying so, instead of holding its worker
// until it gives up; calls to other nodes go on.
func TestNodeLostEndsCallsInFlight(t *testing.T) {
	p := &agentPool{hub: nodechannel.NewHub(nodechannel.HubConfig{}), grace: time.Hour, limits: newCallLimits(4),
		slots: map[string]chan struct{}{}, inflight: map[string]map[*inflightCall]struct{}{}}
	call := func(node string) chan error {
		done := make(chan error, 1)
		go func() {
			done <- p.call(context.Background(), node, 0, func(ctx context.Context, cli persysv1grpc.AgentServiceClient) error {
				_, err := cli.ListWorkloads(ctx, &persysv1.ListAgentWorkloadsRequest{})
				return err
			})
		}()
		return done
	}
	lost, other := call("n1"), call("n2")
	eventually.Eventually(t, "the call to n1 in flight", queueWait, func() (bool, string) {
		p.mu.Lock()
		defer p.mu.Unlock()
		return len(p.inflight["n1"]) == 1, "not yet"
	})
	p.nodeLost("n1")
	select {
	case err := <-lost:
		if !errors.Is(err, errNodeLost) || !strings.Contains(err.Error(), "n1") {
			t.Fatalf("call to the lost node ended with %v, want errNodeLost naming n1", err)
		}
	case <-time.After(queueWait):
		t.Fatal("the call to the lost node did not end")
	}
	select {
	case err := <-other:
		t.Fatalf("the call to n2 ended with n1's loss: %v", err)
	default:
	}
	p.nodeLost("n2")
	if err := <-other; !errors.Is(err, errNodeLost) {
		t.Fatalf("n2: %v", err)
	}
}
