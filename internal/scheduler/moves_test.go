package scheduler_test

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/moby/moby/client"

	"github.com/moby/moby/api/types/container"

	persysv1 "github.com/persys-dev/compute/api/persys/v1"
	"github.com/persys-dev/compute/internal/runtime"
	"github.com/persys-dev/compute/internal/scheduler"
)

// grace is the reschedule grace of these tests.
const grace = 1500 * time.Millisecond

// fastConfig is the scheduler configuration of these tests: short leases,
// grace and backoff, so that node loss, moves and retries settle in
// seconds.
func fastConfig(cfg *scheduler.Config) {
	cfg.HeartbeatInterval = 400 * time.Millisecond
	cfg.LeaseTTL = 2 * time.Second
	cfg.RescheduleGrace = grace
	cfg.RetryBase = 200 * time.Millisecond
	cfg.RetryMax = time.Second
	cfg.MaxAttempts = 3
}

func (c *cluster) cordon(id string) *persysv1.Node {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	n, err := c.control.CordonNode(ctx, &persysv1.CordonRequest{Id: id})
	if err != nil {
		c.t.Fatalf("cordon %s: %v", id, err)
	}
	return n
}

func (c *cluster) uncordon(id string) *persysv1.Node {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	n, err := c.control.UncordonNode(ctx, &persysv1.CordonRequest{Id: id})
	if err != nil {
		c.t.Fatalf("uncordon %s: %v", id, err)
	}
	return n
}

// placeOn applies the workloads while every other node is cordoned, waits
// until each runs on node, and uncordons the others again.
func (c *cluster) placeOn(node string, specs map[string]*persysv1.WorkloadSpec) {
	c.t.Helper()
	var others []string
	for _, id := range c.nodeIDs {
		if id != node {
			others = append(others, id)
			c.cordon(id)
		}
	}
	names := make([]string, 0, len(specs))
	for name := range specs {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		c.apply(name, specs[name])
	}
	for _, name := range names {
		c.waitRunningOn(name, node)
	}
	for _, id := range others {
		if n := c.uncordon(id); n.GetCordoned() || n.GetDraining() {
			c.t.Fatalf("uncordon %s answered cordoned=%v draining=%v", id, n.GetCordoned(), n.GetDraining())
		}
	}
}

// runningOn returns the one running container of workload name on node,
// failing when there is none or more than one.
func (c *cluster) runningOn(name, node string) container.Summary {
	c.t.Helper()
	var found []container.Summary
	for _, ct := range c.containers(name) {
		if ct.Labels[runtime.LabelNode] == node && ct.State == container.StateRunning {
			found = append(found, ct)
		}
	}
	if len(found) != 1 {
		c.t.Fatalf("%s: want one running container on %s, have %d (all copies: %s)", name, node, len(found), c.describeCopies(name))
	}
	return found[0]
}

func (c *cluster) describeCopies(name string) string {
	var parts []string
	for _, ct := range c.containers(name) {
		parts = append(parts, fmt.Sprintf("%s %s on %s", ct.ID[:12], ct.State, ct.Labels[runtime.LabelNode]))
	}
	return "[" + strings.Join(parts, ", ") + "]"
}

// eventTypes lists the types of the workload's events, oldest first.
func (c *cluster) eventTypes(name string) []string {
	c.t.Helper()
	var out []string
	for _, ev := range c.events(name) {
		out = append(out, ev.GetType())
	}
	return out
}

func indexOf(list []string, v string) int {
	for i, s := range list {
		if s == v {
			return i
		}
	}
	return -1
}

// TestRescheduleAfterNodeLoss loses a node that runs two workloads: the
// one with the default policy runs on the other node after the lease TTL
// and the grace, and its old copy is fenced (removed as an orphan) when the
// lost node reports again; the one with NodeLossPolicy WAIT stays assigned
// to the lost node and runs there again when it returns.
func TestRescheduleAfterNodeLoss(t *testing.T) {
	c := newClusterWith(t, clusterOptions{nodes: 2, config: fastConfig})
	a, b := c.nodeIDs[0], c.nodeIDs[1]
	moved, waiter := c.name("moved"), c.name("waiter")
	waitSpec := c.spec(64*mib, nil)
	waitSpec.NodeLossPolicy = persysv1.NodeLossPolicy_NODE_LOSS_POLICY_WAIT
	c.placeOn(a, map[string]*persysv1.WorkloadSpec{moved: c.spec(64*mib, nil), waiter: waitSpec})
	oldMoved := c.runningOn(moved, a)
	oldWaiter := c.runningOn(waiter, a)
	const orphans = "persys_scheduler_orphans_removed_total"
	orphansBefore := c.metric(orphans, nil)

	t.Run("rescheduled after the grace", func(t *testing.T) {
		c.t = t
		c.agents[a].stop(t)
		v := c.waitRunningOn(moved, b)
		if got := v.GetAssignment().GetCause(); got != "node-lost" {
			t.Errorf("%s: assignment cause %q, want node-lost", moved, got)
		}
		if got := v.GetAssignment().GetPreviousNodeId(); got != "" {
			t.Errorf("%s: a rescheduled workload keeps previous node %q; a lost node's copy is fenced, not waited for", moved, got)
		}
		onB := c.runningOn(moved, b)
		if onB.ID == oldMoved.ID {
			t.Fatalf("%s: the copy on %s is the old container", moved, b)
		}
		// The lost node's agent is gone, its container is not: it is the
		// fenced copy.
		if got := c.runningOn(moved, a); got.ID != oldMoved.ID {
			t.Fatalf("%s: the copy on the lost node changed: %s, was %s", moved, got.ID[:12], oldMoved.ID[:12])
		}
		// It was first seen lost and waited out the grace before moving.
		var lostAt, movedAt time.Time
		for _, ev := range c.events(moved) {
			switch {
			case ev.GetType() == "Unknown" && ev.GetReason() == persysv1.FailureReason_FAILURE_REASON_NODE_LOST && lostAt.IsZero():
				lostAt = ev.GetTime().AsTime()
			case ev.GetType() == "Rescheduled" && movedAt.IsZero():
				movedAt = ev.GetTime().AsTime()
			}
		}
		if lostAt.IsZero() || movedAt.IsZero() || movedAt.Before(lostAt) {
			t.Errorf("%s: want an Unknown (NODE_LOST) event and then a Rescheduled one, have %v", moved, c.eventTypes(moved))
		} else if gap := movedAt.Sub(lostAt); gap < grace/2 {
			// Half the grace: the Unknown event is written a moment after
			// the loss is noticed, so the gap is slightly under the grace.
			t.Errorf("%s: rescheduled %s after it was seen lost; the grace is %s", moved, gap, grace)
		}

		// The grace has passed for both: the WAIT one is still where it was.
		w, err := c.get(waiter)
		if err != nil {
			t.Fatal(err)
		}
		if st := w.GetStatus(); st.GetState() != persysv1.ActualState_ACTUAL_STATE_UNKNOWN ||
			st.GetReason() != persysv1.FailureReason_FAILURE_REASON_NODE_LOST {
			t.Errorf("%s: status %s/%s (%s), want UNKNOWN/NODE_LOST", waiter, st.GetState(), st.GetReason(), st.GetMessage())
		}
		if got := w.GetAssignment().GetNodeId(); got != a {
			t.Errorf("%s (policy WAIT) assigned to %q, want %s", waiter, got, a)
		}
	})
	if t.Failed() {
		t.FailNow()
	}

	t.Run("the lost node returns", func(t *testing.T) {
		c.t = t
		c.startAgentOn(a, []string{c.schedAddr})
		c.waitNodeState(a, persysv1.NodeState_NODE_STATE_READY)
		waitFor(t, "the fenced copy of "+moved+" to be removed", waitLong, func() (bool, string) {
			all, running := c.copies(moved)
			return len(c.containers(moved)) == 1 && running[b] == 1 && all[a] == 0, c.describeCopies(moved)
		})
		if got := c.runningOn(moved, b); got.ID == oldMoved.ID {
			t.Fatalf("%s: the surviving copy is the fenced one", moved)
		}
		c.waitRunningOn(moved, b)
		if got := c.metric(orphans, nil); got <= orphansBefore {
			t.Errorf("%s: %v, was %v: the fenced copy was not removed as an orphan", orphans, got, orphansBefore)
		}

		c.waitRunningOn(waiter, a)
		if got := c.onlyContainer(waiter); got.ID != oldWaiter.ID || !got.State.Running {
			t.Fatalf("%s: container %s (running %v), want the one that ran before the loss, %s",
				waiter, got.ID[:12], got.State.Running, oldWaiter.ID[:12])
		}
		types := c.eventTypes(waiter)
		for _, bad := range []string{"Rescheduled", "Moving"} {
			if indexOf(types, bad) >= 0 {
				t.Errorf("%s (policy WAIT) has a %s event: %v", waiter, bad, types)
			}
		}
		if _, running := c.copies(waiter); running[b] != 0 {
			t.Errorf("%s (policy WAIT) runs on %s: %s", waiter, b, c.describeCopies(waiter))
		}
	})
}

// sampler counts the running copies of workloads every few milliseconds
// and keeps, per workload, the fewest seen once a first copy ran.
type sampler struct {
	c      *cluster
	names  []string
	mu     sync.Mutex
	seen   map[string]bool
	min    map[string]int
	max    map[string]int
	where  map[string]string
	errs   []string
	cancel func()
	done   chan struct{}
}

func (c *cluster) startSampler(names ...string) *sampler {
	ctx, cancel := context.WithCancel(context.Background())
	s := &sampler{c: c, names: names, seen: map[string]bool{}, min: map[string]int{}, max: map[string]int{}, where: map[string]string{},
		cancel: cancel, done: make(chan struct{})}
	go func() {
		defer close(s.done)
		for ctx.Err() == nil {
			s.sample(ctx)
			select {
			case <-ctx.Done():
			case <-time.After(20 * time.Millisecond):
			}
		}
	}()
	return s
}

func (s *sampler) sample(ctx context.Context) {
	f := make(client.Filters).Add("label", runLabel+"="+s.c.prefix).Add("status", "running")
	listRes, err := s.c.docker.ContainerList(ctx, client.ContainerListOptions{Filters: f})
	list := listRes.Items
	if err != nil {
		if ctx.Err() == nil {
			s.mu.Lock()
			s.errs = append(s.errs, err.Error())
			s.mu.Unlock()
		}
		return
	}
	count := map[string]int{}
	for _, ct := range list {
		count[ct.Labels[runtime.LabelWorkload]]++
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, n := range s.names {
		if count[n] > 0 {
			s.seen[n] = true
		}
		if !s.seen[n] {
			continue
		}
		s.max[n] = max(s.max[n], count[n])
		if m, ok := s.min[n]; !ok || count[n] < m {
			s.min[n] = count[n]
			s.where[n] = time.Now().Format("15:04:05.000")
		}
	}
}

// stop ends the sampling and returns the fewest running copies seen per
// workload (and when), the most, and any sampling errors.
func (s *sampler) stop() (mins map[string]int, when map[string]string, maxes map[string]int, errs []string) {
	s.cancel()
	<-s.done
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.min, s.where, s.max, s.errs
}

func (c *cluster) drain(id string, timeout time.Duration) *persysv1.DrainResponse {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout+30*time.Second)
	defer cancel()
	resp, err := c.control.DrainNode(ctx, &persysv1.DrainRequest{Id: id, TimeoutSeconds: int64(timeout / time.Second)})
	if err != nil {
		c.t.Fatalf("drain %s: %v", id, err)
	}
	return resp
}

// TestDrain drains a node: every workload is placed on the other node, the
// old copy is removed only once the new one runs (never zero running
// copies), and the node stays cordoned and draining. A drain with nowhere
// to go leaves the workload where it runs and says why.
func TestDrain(t *testing.T) {
	c := newClusterWith(t, clusterOptions{nodes: 2, config: fastConfig})
	a, b := c.nodeIDs[0], c.nodeIDs[1]
	d1, d2 := c.name("d1"), c.name("d2")

	t.Run("moves every workload", func(t *testing.T) { drainMovesEveryWorkload(t, c, a, b, d1, d2) })
	if t.Failed() {
		t.FailNow()
	}

	t.Run("uncordon clears cordon and drain", func(t *testing.T) { drainUncordonClears(t, c, a) })

	t.Run("no feasible node", func(t *testing.T) { drainNoFeasibleNode(t, c, a, b) })
}

// drainMovesEveryWorkload drains a, where d1 and d2 run, onto b.
func drainMovesEveryWorkload(t *testing.T, c *cluster, a, b, d1, d2 string) {
	c.t = t
	c.placeOn(a, map[string]*persysv1.WorkloadSpec{d1: c.spec(64*mib, nil), d2: c.spec(64*mib, nil)})
	old := map[string]string{d1: c.runningOn(d1, a).ID, d2: c.runningOn(d2, a).ID}

	s := c.startSampler(d1, d2)
	resp := c.drain(a, 60*time.Second)
	mins, when, maxes, errs := s.stop()
	if len(errs) > 0 {
		t.Fatalf("sampling containers: %v", errs)
	}

	if !resp.GetComplete() {
		t.Errorf("drain of %s not complete: %v", a, resp)
	}
	got := map[string]*persysv1.DrainResult{}
	for _, r := range resp.GetWorkloads() {
		got[r.GetWorkload()] = r
	}
	if len(got) != 2 {
		t.Errorf("drain results for %d workloads, want 2: %v", len(got), resp.GetWorkloads())
	}
	for _, n := range []string{d1, d2} {
		r := got[n]
		if r.GetResult() != "moved" || r.GetToNode() != b {
			t.Errorf("%s: drain result %q to %q (%s), want moved to %s", n, r.GetResult(), r.GetToNode(), r.GetMessage(), b)
		}
	}
	if n := resp.GetNode(); !n.GetCordoned() || !n.GetDraining() {
		t.Errorf("drain response: node %s cordoned=%v draining=%v, want both", a, n.GetCordoned(), n.GetDraining())
	}
	n, err := c.nodeByID(a)
	if err != nil {
		t.Fatal(err)
	}
	if !n.GetCordoned() || !n.GetDraining() {
		t.Errorf("ListNodes: %s cordoned=%v draining=%v, want both", a, n.GetCordoned(), n.GetDraining())
	}

	for _, name := range []string{d1, d2} {
		v := c.waitRunningOn(name, b)
		if cause := v.GetAssignment().GetCause(); cause != "drain" {
			t.Errorf("%s: assignment cause %q, want drain", name, cause)
		}
		if prev := v.GetAssignment().GetPreviousNodeId(); prev != "" {
			t.Errorf("%s: previous node %q still set after the drain answered", name, prev)
		}
		all, _ := c.copies(name)
		if all[a] != 0 || len(c.containers(name)) != 1 {
			t.Errorf("%s: want exactly one copy, on %s: %s", name, b, c.describeCopies(name))
		}
		if ct := c.runningOn(name, b); ct.ID == old[name] {
			t.Errorf("%s: the copy on %s is the old container", name, b)
		}
		t.Logf("%s: running copies during the drain: at least %d, at most %d", name, mins[name], maxes[name])
		if m, ok := mins[name]; !ok || m < 1 {
			t.Errorf("%s: %d running copies seen at %s during the drain (sampled: %v); the old copy must run until the new one does",
				name, m, when[name], ok)
		}
		types := c.eventTypes(name)
		moving, movedAt := indexOf(types, "Moving"), indexOf(types, "Moved")
		if moving < 0 || movedAt < 0 || moving > movedAt {
			t.Errorf("%s: want a Moving event before a Moved event, have %v", name, types)
		}
	}
}

// drainUncordonClears uncordons the drained node a.
func drainUncordonClears(t *testing.T, c *cluster, a string) {
	c.t = t
	n := c.uncordon(a)
	if n.GetCordoned() || n.GetDraining() {
		t.Fatalf("uncordon answered cordoned=%v draining=%v", n.GetCordoned(), n.GetDraining())
	}
	listed, err := c.nodeByID(a)
	if err != nil {
		t.Fatal(err)
	}
	if listed.GetCordoned() || listed.GetDraining() {
		t.Fatalf("ListNodes after uncordon: cordoned=%v draining=%v", listed.GetCordoned(), listed.GetDraining())
	}
	stored, err := c.store.GetNode(context.Background(), a)
	if err != nil {
		t.Fatal(err)
	}
	if stored.GetCordoned() || stored.GetDraining() {
		t.Fatalf("etcd after uncordon: cordoned=%v draining=%v", stored.GetCordoned(), stored.GetDraining())
	}
}

// drainNoFeasibleNode drains a while b is cordoned: the workload stays.
func drainNoFeasibleNode(t *testing.T, c *cluster, a, b string) {
	c.t = t
	stuck := c.name("stuck")
	c.placeOn(a, map[string]*persysv1.WorkloadSpec{stuck: c.spec(64*mib, nil)})
	before := c.runningOn(stuck, a)
	if n := c.cordon(b); !n.GetCordoned() || n.GetDraining() {
		t.Fatalf("cordon %s answered cordoned=%v draining=%v", b, n.GetCordoned(), n.GetDraining())
	}

	resp := c.drain(a, 10*time.Second)
	if resp.GetComplete() {
		t.Errorf("drain with nowhere to go answered complete: %v", resp)
	}
	var r *persysv1.DrainResult
	for _, x := range resp.GetWorkloads() {
		if x.GetWorkload() == stuck {
			r = x
		} else if x.GetResult() != "moved" {
			t.Errorf("drain result for %s: %v", x.GetWorkload(), x)
		}
	}
	if r.GetResult() != "unmoved" || r.GetReason() != persysv1.FailureReason_FAILURE_REASON_NO_FEASIBLE_NODE {
		t.Errorf("%s: drain result %q reason %s (%s), want unmoved NO_FEASIBLE_NODE", stuck, r.GetResult(), r.GetReason(), r.GetMessage())
	}
	v := c.waitRunningOn(stuck, a)
	if got := c.runningOn(stuck, a); got.ID != before.ID {
		t.Errorf("%s: container replaced by the blocked drain", stuck)
	}
	if got := len(c.containers(stuck)); got != 1 {
		t.Errorf("%s: %d copies after the blocked drain: %s", stuck, got, c.describeCopies(stuck))
	}
	if v.GetAssignment().GetPreviousNodeId() != "" {
		t.Errorf("%s: previous node %q set although it did not move", stuck, v.GetAssignment().GetPreviousNodeId())
	}
	if types := c.eventTypes(stuck); indexOf(types, "MoveBlocked") < 0 {
		t.Errorf("%s: no MoveBlocked event: %v", stuck, types)
	}

	// The node's agent restarts: registering again keeps what the
	// operator set on the node.
	prev, err := c.nodeByID(a)
	if err != nil {
		t.Fatal(err)
	}
	c.agents[a].stop(t)
	c.startAgentOn(a, []string{c.schedAddr})
	waitFor(t, "the restarted agent of "+a+" to register", waitLong, func() (bool, string) {
		n, err := c.nodeByID(a)
		if err != nil {
			return false, err.Error()
		}
		return n.GetRegisteredAt().AsTime().After(prev.GetRegisteredAt().AsTime()) && n.GetState() == persysv1.NodeState_NODE_STATE_READY,
			n.GetRegisteredAt().AsTime().String() + " " + n.GetState().String()
	})
	if n, err := c.nodeByID(a); err != nil || !n.GetCordoned() || !n.GetDraining() {
		t.Errorf("after its agent registered again, %s: %v (err %v); want cordoned and draining", a, n, err)
	}
	if stored, err := c.store.GetNode(context.Background(), a); err != nil || !stored.GetCordoned() || !stored.GetDraining() {
		t.Errorf("etcd after %s registered again: %v (err %v); want cordoned and draining", a, stored, err)
	}
	c.waitRunningOn(stuck, a)
	if got := c.runningOn(stuck, a); got.ID != before.ID {
		t.Errorf("%s: container replaced over the agent restart", stuck)
	}

	for _, id := range []string{a, b} {
		if n := c.uncordon(id); n.GetCordoned() || n.GetDraining() {
			t.Errorf("uncordon %s answered cordoned=%v draining=%v", id, n.GetCordoned(), n.GetDraining())
		}
	}
	for _, id := range []string{a, b} {
		n, err := c.nodeByID(id)
		if err != nil {
			t.Fatal(err)
		}
		if n.GetCordoned() || n.GetDraining() {
			t.Errorf("ListNodes: %s cordoned=%v draining=%v after uncordon", id, n.GetCordoned(), n.GetDraining())
		}
	}
	// Uncordoning does not move it: it runs where it ran.
	c.waitHeartbeats(3)
	if got := c.runningOn(stuck, a); got.ID != before.ID {
		t.Errorf("%s: container replaced after the uncordon", stuck)
	}
}

// attemptMessages lists the messages of the workload's AttemptFailed
// events, oldest first.
func (c *cluster) attemptMessages(name string) []string {
	c.t.Helper()
	var out []string
	for _, ev := range c.events(name) {
		if ev.GetType() == "AttemptFailed" {
			out = append(out, ev.GetMessage())
		}
	}
	return out
}

// waitAttempts waits until the workload has n AttemptFailed events.
func (c *cluster) waitAttempts(name string, n int) []string {
	c.t.Helper()
	var msgs []string
	waitFor(c.t, fmt.Sprintf("%d AttemptFailed events of %s", n, name), waitLong, func() (bool, string) {
		msgs = c.attemptMessages(name)
		return len(msgs) >= n, fmt.Sprintf("%d: %q", len(msgs), msgs)
	})
	if len(msgs) != n {
		c.t.Fatalf("%s: %d AttemptFailed events, want %d: %q", name, len(msgs), n, msgs)
	}
	return msgs
}

// waitGaveUp waits until the workload is FAILED for good (the retry engine
// gave up), and returns its view.
func (c *cluster) waitGaveUp(name string) *persysv1.WorkloadView {
	c.t.Helper()
	var v *persysv1.WorkloadView
	waitFor(c.t, name+" to be FAILED for good", waitLong, func() (bool, string) {
		var err error
		v, err = c.get(name)
		if err != nil {
			return false, err.Error()
		}
		st := v.GetStatus()
		return st.GetState() == persysv1.ActualState_ACTUAL_STATE_FAILED && strings.HasPrefix(st.GetMessage(), "gave up after"),
			fmt.Sprintf("%s/%s attempts %d: %s", st.GetState(), st.GetReason(), st.GetAttempts(), st.GetMessage())
	})
	return v
}

func (c *cluster) retryRecord(name string) (*persysv1.RetryState, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	return c.store.GetRetry(ctx, name)
}

// checkAttemptOrder checks that msgs count attempts first, first+1, …
func checkAttemptOrder(t *testing.T, name string, msgs []string, first int) {
	t.Helper()
	for i, m := range msgs {
		if want := fmt.Sprintf("attempt %d failed", first+i); !strings.HasPrefix(m, want) {
			t.Errorf("%s: AttemptFailed event %d is %q, want it to start with %q (all: %q)", name, i+1, m, want, msgs)
		}
	}
}

// What TestRetryEngine expects: fastConfig's MaxAttempts, and the metric
// that counts applies.
const (
	retryMaxAttempts = 3
	appliesMetric    = "persys_scheduler_applies_total"
)

// TestRetryEngine applies a workload whose image cannot be had: each
// attempt is an event and is persisted under retries/, the last allowed one
// turns it FAILED for good and nothing is applied after that; a retry
// request starts over; a scheduler restarted in the middle of a backoff
// continues the count from etcd.
func TestRetryEngine(t *testing.T) {
	c := newClusterWith(t, clusterOptions{config: fastConfig})
	bad := c.name("bad")
	badSpec := func() *persysv1.WorkloadSpec {
		s := c.spec(64*mib, nil)
		s.Container.Image = "persys-does-not-exist:v0"
		return s
	}

	t.Run("gives up after MaxAttempts", func(t *testing.T) { retryGivesUp(t, c, bad, badSpec) })
	if t.Failed() {
		t.FailNow()
	}

	t.Run("retry starts over", func(t *testing.T) { retryStartsOver(t, c, bad) })

	t.Run("scheduler restart keeps the count", func(t *testing.T) { retryCountSurvivesRestart(t, c, badSpec) })
}

// retryGivesUp applies bad until the retry engine gives up.
func retryGivesUp(t *testing.T, c *cluster, bad string, badSpec func() *persysv1.WorkloadSpec) {
	c.t = t
	c.apply(bad, badSpec())
	v := c.waitGaveUp(bad)
	st := v.GetStatus()
	if st.GetReason() != persysv1.FailureReason_FAILURE_REASON_IMAGE_PULL_FAILED {
		t.Errorf("%s: reason %s (%s), want IMAGE_PULL_FAILED (no registry is reachable)", bad, st.GetReason(), st.GetMessage())
	}
	if !strings.HasPrefix(st.GetMessage(), fmt.Sprintf("gave up after %d attempts", retryMaxAttempts)) {
		t.Errorf("%s: message %q, want it to start with %q", bad, st.GetMessage(), fmt.Sprintf("gave up after %d attempts", retryMaxAttempts))
	}
	if st.GetAttempts() != retryMaxAttempts {
		t.Errorf("%s: status attempts %d, want %d", bad, st.GetAttempts(), retryMaxAttempts)
	}
	if st.GetNextAttemptAt() != nil {
		t.Errorf("%s: a next attempt is announced after the last one: %v", bad, st.GetNextAttemptAt().AsTime())
	}
	msgs := c.waitAttempts(bad, retryMaxAttempts)
	checkAttemptOrder(t, bad, msgs, 1)
	r, err := c.retryRecord(bad)
	if err != nil {
		t.Fatalf("retries/%s: %v", bad, err)
	}
	if r.GetAttempts() != retryMaxAttempts || r.GetLastReason() != persysv1.FailureReason_FAILURE_REASON_IMAGE_PULL_FAILED ||
		r.GetUid() != v.GetWorkload().GetUid() || r.GetRevision() != v.GetWorkload().GetRevision() {
		t.Errorf("retries/%s = %v, want %d attempts of uid %s revision %d with IMAGE_PULL_FAILED", bad, r, retryMaxAttempts,
			v.GetWorkload().GetUid(), v.GetWorkload().GetRevision())
	}
	if r.GetNextAttemptAt() != nil {
		t.Errorf("retries/%s announces a next attempt after the last one", bad)
	}
	if got := c.metricSum(appliesMetric); got != retryMaxAttempts {
		t.Errorf("%s = %v, want one apply per attempt (%d)", appliesMetric, got, retryMaxAttempts)
	}

	// Given up means given up: nothing is applied any more, while the
	// node keeps reporting.
	c.waitHeartbeats(5)
	if got := c.metricSum(appliesMetric); got != retryMaxAttempts {
		t.Errorf("%s grew to %v after the retry engine gave up at %d", appliesMetric, got, retryMaxAttempts)
	}
	if msgs := c.attemptMessages(bad); len(msgs) != retryMaxAttempts {
		t.Errorf("%s: %d AttemptFailed events after giving up, want %d: %q", bad, len(msgs), retryMaxAttempts, msgs)
	}
	c.waitGaveUp(bad)
}

// retryStartsOver asks to retry bad, which failed for good.
func retryStartsOver(t *testing.T, c *cluster, bad string) {
	c.t = t
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := c.control.RetryWorkload(ctx, &persysv1.RetryRequest{Name: bad}); err != nil {
		t.Fatalf("retry %s: %v", bad, err)
	}
	// The record is reset at once: gone, or already the first attempt
	// of the new series.
	if r, err := c.retryRecord(bad); err == nil && r.GetAttempts() >= retryMaxAttempts {
		t.Errorf("retries/%s still has %d attempts after the retry request", bad, r.GetAttempts())
	}
	msgs := c.waitAttempts(bad, 2*retryMaxAttempts)
	checkAttemptOrder(t, bad, msgs[retryMaxAttempts:], 1)
	types := c.eventTypes(bad)
	retried := indexOf(types, "RetryRequested")
	if retried < 0 {
		t.Fatalf("%s: no RetryRequested event: %v", bad, types)
	}
	failedAfter := 0
	for _, ty := range types[retried:] {
		if ty == "AttemptFailed" {
			failedAfter++
		}
	}
	if failedAfter != retryMaxAttempts {
		t.Errorf("%s: %d AttemptFailed events after RetryRequested, want %d: %v", bad, failedAfter, retryMaxAttempts, types)
	}
	v := c.waitGaveUp(bad)
	if v.GetStatus().GetAttempts() != retryMaxAttempts {
		t.Errorf("%s: attempts %d after the second series, want %d", bad, v.GetStatus().GetAttempts(), retryMaxAttempts)
	}
	if r, err := c.retryRecord(bad); err != nil || r.GetAttempts() != retryMaxAttempts {
		t.Errorf("retries/%s after the second series: %v, %v; want %d attempts", bad, r, err, retryMaxAttempts)
	}
	if got := c.metricSum(appliesMetric); got != 2*retryMaxAttempts {
		t.Errorf("%s = %v, want %d", appliesMetric, got, 2*retryMaxAttempts)
	}
}

// retryCountSurvivesRestart restarts the scheduler inside a backoff.
func retryCountSurvivesRestart(t *testing.T, c *cluster, badSpec func() *persysv1.WorkloadSpec) {
	c.t = t
	// A backoff long enough to restart the scheduler inside it.
	slow := func(cfg *scheduler.Config) {
		fastConfig(cfg)
		cfg.RetryBase, cfg.RetryMax = 3*time.Second, 3*time.Second
	}
	c.sched.stop(t)
	c.opts.config = slow
	c.startScheduler(c.schedAddr)
	name := c.name("restart")
	c.apply(name, badSpec())
	var r1 *persysv1.RetryState
	waitFor(t, "the first failed attempt of "+name+" in etcd", waitLong, func() (bool, string) {
		var err error
		r1, err = c.retryRecord(name)
		if err != nil {
			return false, err.Error()
		}
		return r1.GetAttempts() >= 1, fmt.Sprint(r1)
	})
	c.sched.stop(t)
	if r1.GetAttempts() != 1 || r1.GetNextAttemptAt() == nil {
		t.Fatalf("retries/%s when the scheduler stopped: %v; want attempt 1 with a next attempt", name, r1)
	}
	stoppedAt := time.Now()
	next := r1.GetNextAttemptAt().AsTime()
	if !stoppedAt.Before(next) {
		// Not a failure of the code under test: the restart would
		// not happen inside the backoff. Say so plainly.
		t.Fatalf("the scheduler stopped at %s, after the next attempt was due (%s): the backoff is too short for this machine",
			stoppedAt.Format(time.RFC3339Nano), next.Format(time.RFC3339Nano))
	}

	c.startScheduler(c.schedAddr)
	msgs := c.waitAttempts(name, 2)
	checkAttemptOrder(t, name, msgs, 1)
	r2, err := c.retryRecord(name)
	if err != nil || r2.GetAttempts() < 2 {
		t.Fatalf("retries/%s after the restart: %v, %v; want attempt 2 or later (count continued)", name, r2, err)
	}
	// The restarted scheduler honoured the persisted schedule: its
	// first attempt came no earlier than the one announced.
	for _, ev := range c.events(name) {
		if ev.GetType() == "AttemptFailed" && strings.HasPrefix(ev.GetMessage(), "attempt 2 failed") {
			if ev.GetTime().AsTime().Before(next) {
				t.Errorf("%s: attempt 2 failed at %s, before it was due at %s", name,
					ev.GetTime().AsTime().Format(time.RFC3339Nano), next.Format(time.RFC3339Nano))
			}
		}
	}
	v := c.waitGaveUp(name)
	if v.GetStatus().GetAttempts() != retryMaxAttempts {
		t.Errorf("%s: gave up after %d attempts, want %d", name, v.GetStatus().GetAttempts(), retryMaxAttempts)
	}
	checkAttemptOrder(t, name, c.waitAttempts(name, retryMaxAttempts), 1)
	// Only the attempts after the restart were this scheduler's.
	if got := c.metricSum(appliesMetric); got != retryMaxAttempts-1 {
		t.Errorf("the restarted scheduler sent %v appliesMetric, want %d", got, retryMaxAttempts-1)
	}
}
