package scheduler

import (
	"fmt"
	"sync"
	"testing"
	"time"
)

// TestDispatcherBounds: every handed-off call runs once; no node ever runs
// more than perNode at once, all nodes together never more than maxTotal;
// each node's calls are taken in the order handed off; a node starved of the
// global slots gets one when another node's call ends.
func TestDispatcherBounds(t *testing.T) {
	const perNode, maxTotal, nodes, perNodeCalls = 2, 3, 5, 40
	d := newDispatcher(newCallLimits(perNode), maxTotal)
	var (
		mu             sync.Mutex
		byNode         = map[string]int{}
		total, maxSeen int
		maxNode        = map[string]int{}
		started        = map[string][]int{}
		ran            int
		done           sync.WaitGroup
	)
	for i := range perNodeCalls {
		for n := range nodes {
			node := fmt.Sprintf("n%d", n)
			done.Add(1)
			d.submit(node, func() {
				defer done.Done()
				mu.Lock()
				started[node] = append(started[node], i)
				byNode[node]++
				total++
				maxNode[node] = max(maxNode[node], byNode[node])
				maxSeen = max(maxSeen, total)
				mu.Unlock()
				time.Sleep(100 * time.Microsecond) // let calls overlap; nothing is timed
				mu.Lock()
				byNode[node]--
				total--
				ran++
				mu.Unlock()
			})
		}
	}
	done.Wait()
	d.wait()
	if ran != nodes*perNodeCalls {
		t.Fatalf("%d calls ran, want %d", ran, nodes*perNodeCalls)
	}
	if maxSeen > maxTotal {
		t.Errorf("%d calls ran at once, want at most %d", maxSeen, maxTotal)
	}
	for node, m := range maxNode {
		if m > perNode {
			t.Errorf("node %s ran %d calls at once, want at most %d", node, m, perNode)
		}
		// Handed to goroutines in order; with perNode running at once, two
		// may note their start in either order, never further apart.
		for pos, i := range started[node] {
			if i-pos >= perNode || pos-i >= perNode {
				t.Errorf("node %s started call %d as its %dth: out of the order handed off: %v", node, i, pos, started[node])
				break
			}
		}
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if len(d.nodes) != 0 || d.total != 0 {
		t.Errorf("after the last call: %d outboxes, %d running, want none", len(d.nodes), d.total)
	}
}

// TestDispatcherDeclaredLimits: a node runs at most min(what it declared
// at registration, the scheduler's bound) at once; a node that declared
// nothing gets the scheduler's bound.
func TestDispatcherDeclaredLimits(t *testing.T) {
	limits := newCallLimits(4)
	limits.declare("one", 1)
	limits.declare("many", 1000)
	d := newDispatcher(limits, 100)
	release := make(chan struct{})
	var done sync.WaitGroup
	for _, node := range []string{"one", "many", "silent"} {
		for range 8 {
			done.Add(1)
			d.submit(node, func() {
				defer done.Done()
				<-release
			})
		}
	}
	// submit starts a call's goroutine before it returns: what runs now
	// is what the bounds let run.
	d.mu.Lock()
	got := map[string]int{}
	for node, o := range d.nodes {
		got[node] = o.running
	}
	d.mu.Unlock()
	for node, want := range map[string]int{"one": 1, "many": 4, "silent": 4} {
		if got[node] != want {
			t.Errorf("node %s runs %d calls at once, want %d", node, got[node], want)
		}
	}
	close(release)
	done.Wait()
	d.wait()
}

// TestDispatcherReusesRunners: a call handed off after another ended runs
// on the goroutine that ran the first (its stack already grown), and wait
// ends the runners left idle.
func TestDispatcherReusesRunners(t *testing.T) {
	d := newDispatcher(newCallLimits(1), 4)
	idle := func() int {
		d.mu.Lock()
		defer d.mu.Unlock()
		return len(d.idle)
	}
	for i := range 3 {
		ran := make(chan struct{})
		d.submit(fmt.Sprintf("n%d", i), func() { close(ran) })
		<-ran
		deadline := time.Now().Add(10 * time.Second)
		for idle() != 1 {
			if time.Now().After(deadline) {
				t.Fatalf("call %d: %d runners idle after it ended, want 1", i, idle())
			}
			time.Sleep(time.Millisecond)
		}
	}
	d.mu.Lock()
	runners := d.runners
	d.mu.Unlock()
	if runners != 1 {
		t.Fatalf("%d runners started for 3 calls one after the other, want 1", runners)
	}
	d.wait()
	if n := idle(); n != 0 {
		t.Fatalf("%d runners idle after wait, want 0", n)
	}
}
