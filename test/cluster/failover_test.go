package cluster

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	persysv1 "github.com/persys-dev/compute/api/persys/v1"
	gwclient "github.com/persys-dev/compute/internal/client"
	"github.com/persys-dev/compute/internal/pki"
	"github.com/persys-dev/compute/internal/store"
)

// envBurst overrides the number of workloads TestLeaderFailoverBurst and
// TestEtcdMemberKillBurst apply.
const envBurst = "PERSYS_CLUSTER_BURST"

// defaultBurst is TestLeaderFailoverBurst's size: that many real
// containers, applied through the gateway while the leader is killed.
//
// The issue asks for 200. Measured on this 2-core machine: 200 applies,
// leader killed at 100, failover 1.86s, all 200 RUNNING exactly once 38s
// after the burst began, 0 node-lost events and 0 reschedules (the new
// leader renews every node's lease as its term begins, and agents retry
// every TTL/8 while their lease may be alive; before that the 4s leases
// lapsed during the election: 2 node-lost events and 106 workloads shown
// UNKNOWN for a while). PERSYS_CLUSTER_BURST sets another size.
const defaultBurst = 200

// burstInFlight is how many applies the burst keeps in flight at once.
const burstInFlight = 8

func burstSize(t *testing.T) int {
	t.Helper()
	v := os.Getenv(envBurst)
	if v == "" {
		return defaultBurst
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 2 || n > 2000 {
		t.Fatalf("$%s=%q: want a number of workloads from 2 to 2000", envBurst, v)
	}
	return n
}

// TestPartitionBeyondGrace: an agent cut off the network for longer than
// --reschedule-grace loses its workloads to the live nodes while it and its
// old copies keep running; reconnected, its stale copies are removed (the
// scheduler fences them as orphans) and every workload runs exactly once,
// on the node the scheduler says.
func TestPartitionBeyondGrace(t *testing.T) {
	t.Parallel()
	c := Start(t, Options{Agents: 3, RescheduleGrace: rescheduleGrace})
	names := c.ApplyWorkloads("web", 6)
	ws := c.waitAllRunning(names, 60*time.Second)
	cut := c.Agents[0]
	mine := placement(ws)[cut.NodeID]
	if len(mine) == 0 {
		t.Fatalf("node %s runs nothing; placement %v", cut.NodeID, placement(ws))
	}
	agentStarted := c.AgentStartedAt(cut)

	cutAt := time.Now()
	c.Partition(cut)
	timings := c.checkRescheduled(names, mine, cut, cutAt, func(a *Agent) {
		// The agent lived through the partition: this is no restart.
		if got := c.AgentStartedAt(a); !got.Equal(agentStarted) {
			t.Fatalf("agent %s restarted during the partition (StartedAt %s → %s)", a.NodeID, agentStarted, got)
		}
		c.Heal(a)
	})
	ws = c.waitAllRunning(names, 30*time.Second)
	for _, n := range mine {
		if got := ws[n].GetStatus().GetNodeId(); got == cut.NodeID {
			t.Errorf("workload %s went back to %s after the heal; it had moved", n, got)
		}
	}
	ev := c.EventCounts(cutAt)
	c.want(c.Report("partition-grace", names, timings, fmt.Sprintf("moved=%d rescheduled_events=%d orphans_removed=%d",
		len(mine), ev["Rescheduled"], ev["OrphanRemoved"])), 3)
}

// TestDrain: `persysctl node drain` exits 0 once every workload of the node
// runs elsewhere; the node shows DRAINING; no workload is lost or runs
// twice, and none was ever without a running copy during the drain.
func TestDrain(t *testing.T) {
	t.Parallel()
	c := Start(t, Options{Agents: 3})
	names := c.ApplyWorkloads("web", 6)
	ws := c.waitAllRunning(names, 60*time.Second)
	d := c.Agents[1]
	mine := placement(ws)[d.NodeID]
	if len(mine) == 0 {
		t.Fatalf("node %s runs nothing; placement %v", d.NodeID, placement(ws))
	}

	// Sample the engine during the drain: a two-phase move never leaves a
	// workload without a running copy.
	stop := make(chan struct{})
	sampled := make(chan map[string]int, 1)
	go func() {
		fewest := map[string]int{}
		for _, n := range mine {
			fewest[n] = 1 << 30
		}
		for {
			running, err := c.listWorkloadContainers(false)
			if err == nil {
				for _, n := range mine {
					fewest[n] = min(fewest[n], len(running[n]))
				}
			}
			select {
			case <-stop:
				sampled <- fewest
				return
			case <-time.After(100 * time.Millisecond):
			}
		}
	}()
	start := time.Now()
	out, err := c.Ctl("node", "drain", d.NodeID, "--timeout", "2m")
	drained := time.Since(start)
	close(stop)
	fewest := <-sampled
	if err != nil {
		t.Fatalf("persysctl node drain %s: %v (want exit 0)\n%s", d.NodeID, err, out)
	}
	t.Logf("persysctl node drain %s exited 0 after %s:\n%s", d.NodeID, drained.Round(time.Millisecond), strings.TrimSpace(out))
	if want := fmt.Sprintf("node/%s drained (%d of %d workloads moved)", d.NodeID, len(mine), len(mine)); !strings.Contains(out, want) {
		t.Errorf("drain output lacks %q", want)
	}
	movedTo := map[string]string{}
	for _, m := range regexp.MustCompile(`workload/(\S+) moved to (\S+)`).FindAllStringSubmatch(out, -1) {
		movedTo[m[1]] = m[2]
	}
	for _, n := range mine {
		if to := movedTo[n]; to == "" || to == d.NodeID {
			t.Errorf("drain output: workload %s moved to %q, want another node", n, to)
		}
		if fewest[n] < 1 {
			t.Errorf("workload %s had no running container at some point of the drain", n)
		}
	}

	// The node shows DRAINING, in the table and in the record.
	table := c.MustCtl("get", "nodes")
	var state string
	for _, l := range strings.Split(table, "\n") {
		if f := strings.Fields(l); len(f) >= 2 && f[0] == d.NodeID {
			state = f[1]
		}
	}
	if !strings.Contains(state, "DRAINING") {
		t.Errorf("persysctl get nodes: node %s state %q, want DRAINING:\n%s", d.NodeID, state, table)
	}
	if n, err := c.Node(d.NodeID); err != nil {
		t.Error(err)
	} else if !n.GetDraining() || !n.GetCordoned() {
		t.Errorf("node %s: draining %v cordoned %v, want both", d.NodeID, n.GetDraining(), n.GetCordoned())
	}

	// Moved means the old copy is gone: nothing of this run is left on the
	// drained node, and each workload runs once, where the scheduler says.
	all := c.AllContainers()
	for _, n := range names {
		if left := onNode(all[n], d.NodeID); len(left) != 0 {
			t.Errorf("workload %s: %d container(s) still on the drained node %s", n, len(left), d.NodeID)
		}
	}
	ws = c.waitAllRunning(names, 30*time.Second)
	for _, n := range mine {
		if got := ws[n].GetStatus().GetNodeId(); got != movedTo[n] {
			t.Errorf("workload %s: scheduler says node %q, drain said %q", n, got, movedTo[n])
		}
	}
	c.checkContainers(ws, names)
	// The drained node is READY (and cordoned): 3 nodes.
	c.want(c.Report("drain", names, []Timing{{"drain", drained}}, fmt.Sprintf("moved=%d", len(mine))), 3)
}

// TestImageNotFoundBackoff: a workload whose image exists nowhere goes
// through the retry engine's schedule — an AttemptFailed event per attempt
// with the next delay doubling from --retry-base (1s, 2s, 4s) — and ends
// FAILED with IMAGE_PULL_FAILED (its registry refuses connections) after
// --max-attempts; describe shows the attempts and the events. A healthy
// workload beside it keeps running.
func TestImageNotFoundBackoff(t *testing.T) {
	t.Parallel()
	c := Start(t, Options{Agents: 3})
	good := c.ApplyWorkloads("web", 1)
	bad := "missing-1"
	// Port 1 on loopback refuses at once: the pull fails fast, offline.
	img := "127.0.0.1:1/persys-missing:" + c.Run
	c.MustCtl("apply", "-f", c.ManifestFile(bad, WorkloadSpec{Image: img}))

	var v persysv1.WorkloadView
	var seen []int32
	// FAILED with a next attempt due is a failed attempt; FAILED with none
	// is the end.
	failedAfter := c.WaitFor(bad+" FAILED for good", 90*time.Second, func() (bool, string) {
		if err := c.ctlJSON(&v, "describe", "workload", bad); err != nil {
			return false, err.Error()
		}
		st := v.GetStatus()
		if a := st.GetAttempts(); len(seen) == 0 || seen[len(seen)-1] != a {
			seen = append(seen, a)
		}
		return st.GetState() == persysv1.ActualState_ACTUAL_STATE_FAILED && st.GetNextAttemptAt() == nil,
			fmt.Sprintf("%s/%s attempts %d next %v: %s", st.GetState(), st.GetReason(), st.GetAttempts(), st.GetNextAttemptAt().AsTime(), st.GetMessage())
	})
	t.Logf("%s FAILED for good %s after the apply; attempts seen while polling: %v", bad, failedAfter.Round(time.Millisecond), seen)
	if slices.ContainsFunc(seen, func(a int32) bool { return a > int32(c.Opts.MaxAttempts) }) {
		t.Errorf("%s: attempts went past --max-attempts %d: %v", bad, c.Opts.MaxAttempts, seen)
	}
	st := v.GetStatus()
	if st.GetReason() != persysv1.FailureReason_FAILURE_REASON_IMAGE_PULL_FAILED {
		t.Errorf("%s: reason %s (%s), want IMAGE_PULL_FAILED", bad, st.GetReason(), st.GetMessage())
	}
	if int(st.GetAttempts()) != c.Opts.MaxAttempts {
		t.Errorf("%s: %d attempts, want --max-attempts %d", bad, st.GetAttempts(), c.Opts.MaxAttempts)
	}

	// Events are written behind the status: wait for the last one, then
	// there must be exactly one per attempt.
	var events []*persysv1.Event
	c.WaitFor(fmt.Sprintf("%d AttemptFailed events", c.Opts.MaxAttempts), 30*time.Second, func() (bool, string) {
		if err := c.ctlJSON(&v, "describe", "workload", bad); err != nil {
			return false, err.Error()
		}
		events = attemptEvents(v.GetEvents())
		return len(events) >= c.Opts.MaxAttempts, fmt.Sprintf("%d AttemptFailed events", len(events))
	})
	if len(events) != c.Opts.MaxAttempts {
		t.Errorf("%d AttemptFailed events, want one per attempt (%d)", len(events), c.Opts.MaxAttempts)
	}
	// The schedule, as the engine announced it in each event, and the gaps
	// between the events as measured.
	var gaps []string
	for i, e := range events {
		want := "next attempt in " + backoff(i+1, c.Opts).String()
		if i == len(events)-1 {
			want = "no more attempts"
		}
		if !strings.Contains(e.GetMessage(), fmt.Sprintf("attempt %d failed", i+1)) || !strings.Contains(e.GetMessage(), want) {
			t.Errorf("event %d: %q, want attempt %d and %q", i+1, e.GetMessage(), i+1, want)
		}
		if e.GetReason() != persysv1.FailureReason_FAILURE_REASON_IMAGE_PULL_FAILED {
			t.Errorf("event %d: reason %s, want IMAGE_PULL_FAILED", i+1, e.GetReason())
		}
		if i > 0 {
			gaps = append(gaps, e.GetTime().AsTime().Sub(events[i-1].GetTime().AsTime()).Round(100*time.Millisecond).String())
		}
	}

	// The table view of describe shows the same.
	text := c.MustCtl("describe", "workload", bad)
	if m := regexp.MustCompile(`(?m)^Attempts:\s+(\d+)$`).FindStringSubmatch(text); m == nil || m[1] != strconv.Itoa(c.Opts.MaxAttempts) {
		t.Errorf("persysctl describe workload %s: want \"Attempts: %d\":\n%s", bad, c.Opts.MaxAttempts, text)
	}
	if got := strings.Count(text, " AttemptFailed "); got != c.Opts.MaxAttempts {
		t.Errorf("persysctl describe workload %s: %d AttemptFailed event rows, want %d:\n%s", bad, got, c.Opts.MaxAttempts, text)
	}
	if !strings.Contains(text, "IMAGE_PULL_FAILED") {
		t.Errorf("persysctl describe workload %s: no IMAGE_PULL_FAILED:\n%s", bad, text)
	}
	if cts := c.AllContainers()[bad]; len(cts) != 0 {
		t.Errorf("%s: %d containers on the engine, want none", bad, len(cts))
	}
	t.Logf("AttemptFailed gaps %v (configured %s base, %s max)", gaps, c.Opts.RetryBase, c.Opts.RetryMax)

	ws := c.waitAllRunning(good, 30*time.Second)
	c.checkContainers(ws, good)
	// Submitted: the good one and the bad one; lost counts the good one.
	s := c.Observe(good)
	s.Scenario, s.Submitted = "image-not-found", len(good)+1
	s.Timings = []Timing{{"apply_to_failed", failedAfter}}
	s.Facts = []string{fmt.Sprintf("failed=1 attempts=%d attempt_events=%d gaps=%s", st.GetAttempts(), len(events), strings.Join(gaps, ","))}
	c.want(c.Record(s), 3)
}

// backoff is the delay the retry engine announces after attempt n with
// o's settings: base, 2×base, … capped at max.
func backoff(n int, o Options) time.Duration {
	d := o.RetryBase
	for i := 1; i < n; i++ {
		d *= 2
	}
	return min(d, o.RetryMax)
}

// attemptEvents keeps the AttemptFailed events, oldest first.
func attemptEvents(evs []*persysv1.Event) []*persysv1.Event {
	var out []*persysv1.Event
	for _, e := range evs {
		if e.GetType() == "AttemptFailed" {
			out = append(out, e)
		}
	}
	slices.SortStableFunc(out, func(a, b *persysv1.Event) int { return a.GetTime().AsTime().Compare(b.GetTime().AsTime()) })
	return out
}

// burstApply is one workload's apply in the burst.
type burstApply struct {
	result  string // created, unchanged (a retry after an apply that took), updated
	tries   int
	refused map[int]int    // HTTP status of each refused try → how many
	why     map[int]string // HTTP status → the first refusal's message
	err     error
	sent    time.Time // when the last try was sent
	done    time.Time // when its answer came
}

// retryOn says whether a burst applies again after an answer with this
// HTTP status.
type retryOn func(code int) bool

// noLeader retries 409 (a follower refused: no leader yet) and 503 (the
// scheduler went away mid-call, or none leads yet).
func noLeader(code int) bool {
	return code == http.StatusConflict || code == http.StatusServiceUnavailable
}

// storeUnsure retries noLeader's answers and 500 and 504 too: a store
// write in flight when its etcd member died fails without telling whether
// it committed, so a client can only apply again — safe, as applies are
// idempotent (a retry of one that took answers "unchanged").
func storeUnsure(code int) bool {
	return noLeader(code) || code == http.StatusInternalServerError || code == http.StatusGatewayTimeout
}

// applyRetrying applies a manifest through the gateway and retries, as a
// user would, while retry accepts the answer's status.
func applyRetrying(ctx context.Context, cl *gwclient.Client, manifest []byte, retry retryOn) burstApply {
	var r burstApply
	wait := 100 * time.Millisecond
	for {
		r.tries++
		r.sent = time.Now()
		actx, cancel := context.WithTimeout(ctx, 30*time.Second)
		resp, err := cl.Apply(actx, manifest)
		cancel()
		if err == nil {
			r.result, r.done = resp.GetResult(), time.Now()
			return r
		}
		var ae *gwclient.APIError
		if !errors.As(err, &ae) || !retry(ae.Code) {
			r.err = err
			return r
		}
		if r.refused == nil {
			r.refused, r.why = map[int]int{}, map[int]string{}
		}
		r.refused[ae.Code]++
		if _, ok := r.why[ae.Code]; !ok {
			r.why[ae.Code] = ae.Message
		}
		select {
		case <-ctx.Done():
			r.err = fmt.Errorf("gave up after %d tries: %w (last: %w)", r.tries, ctx.Err(), err)
			return r
		case <-time.After(wait):
		}
		wait = min(2*wait, time.Second)
	}
}

// burstWorkloads names n hello workloads burst-001 … and makes their
// manifests. Small requests, so that N fit on three nodes under the 80%
// threshold; 10m is the least CPU the engine enforces (a CFS quota of
// 1ms).
func (c *Cluster) burstWorkloads(n int) (names []string, manifests [][]byte) {
	names = make([]string, n)
	manifests = make([][]byte, n)
	for i := range n {
		names[i] = fmt.Sprintf("burst-%03d", i+1)
		manifests[i] = c.ManifestYAML(names[i], WorkloadSpec{CPU: "10m", Memory: "16Mi"})
	}
	return names, manifests
}

// runBurst applies the manifests through the gateway, burstInFlight at a
// time, each retried while retry says so. atHalf runs once, when half of
// them were accepted — or after the last, for a burst too small to get
// there — in an applying goroutine: it must not call t.Fatal.
func (c *Cluster) runBurst(ctx context.Context, manifests [][]byte, retry retryOn, atHalf func()) []burstApply {
	cl := c.Client()
	n := len(manifests)
	var (
		applied atomic.Int64
		once    sync.Once
		out     = make([]burstApply, n)
		jobs    = make(chan int)
		wg      sync.WaitGroup
	)
	for range burstInFlight {
		wg.Go(func() {
			for i := range jobs {
				out[i] = applyRetrying(ctx, cl, manifests[i], retry)
				if out[i].err == nil && applied.Add(1) == int64(n/2) {
					once.Do(atHalf)
				}
			}
		})
	}
	for i := range n {
		jobs <- i
	}
	close(jobs)
	wg.Wait()
	once.Do(atHalf)
	return out
}

// burstTally sums a burst's outcomes.
type burstTally struct {
	calls, retried int
	byResult       map[string]int
	refused        map[int]int
	why            map[int]string // one refusal's message per status
	// firstAfter is from the kill to the answer of the first apply sent
	// after the killed part was gone that was accepted: writes resumed.
	// -1: none was sent that late.
	firstAfter time.Duration
}

// tallyBurst fails the test for every apply that was not accepted and sums
// the others.
func (c *Cluster) tallyBurst(names []string, rs []burstApply, killedAt, goneAt time.Time) burstTally {
	c.t.Helper()
	s := burstTally{byResult: map[string]int{}, refused: map[int]int{}, why: map[int]string{}, firstAfter: -1}
	for i, r := range rs {
		if r.err != nil {
			c.t.Errorf("apply %s: %v (after %d tries)", names[i], r.err, r.tries)
			continue
		}
		s.calls += r.tries
		if r.tries > 1 {
			s.retried++
		}
		s.byResult[r.result]++
		for code, k := range r.refused {
			s.refused[code] += k
			if _, ok := s.why[code]; !ok {
				s.why[code] = r.why[code]
			}
		}
		if d := r.done.Sub(killedAt); r.sent.After(goneAt) && (s.firstAfter < 0 || d < s.firstAfter) {
			s.firstAfter = d
		}
	}
	if s.byResult["updated"] != 0 {
		c.t.Errorf("%d applies answered updated: a retry changed a stored spec", s.byResult["updated"])
	}
	return s
}

// refusedFact is refused=409:3,503:12 (statuses in order), or refused=0.
func (s burstTally) refusedFact() string {
	if len(s.refused) == 0 {
		return "refused=0"
	}
	var parts []string
	for _, code := range slices.Sorted(maps.Keys(s.refused)) {
		parts = append(parts, fmt.Sprintf("%d:%d", code, s.refused[code]))
	}
	return "refused=" + strings.Join(parts, ",")
}

// checkRanOnce checks that each named workload has exactly one container
// on the engine, running or not, and that it is the one the scheduler
// assigned (checkContainers).
func (c *Cluster) checkRanOnce(ws map[string]*persysv1.WorkloadView, names []string) {
	c.t.Helper()
	all := c.AllContainers()
	for _, name := range names {
		if len(all[name]) != 1 {
			c.t.Errorf("workload %s: %d containers on the engine, want 1", name, len(all[name]))
		}
	}
	c.checkContainers(ws, names)
}

// TestLeaderFailoverBurst: three scheduler replicas; N applies go through
// the gateway, burstInFlight at a time, and halfway through the leader is
// killed with SIGKILL. Clients retry on 409/503 while the replicas elect a
// new leader. Every workload ends RUNNING exactly once (one container
// each) and none is lost. It reports the failover time (kill → a
// surviving replica, asked directly, answers GetLeader as the leader; and
// kill → GetLeader through the gateway names it), the time until applies
// were accepted again, the totals, and what the failover cost: node-lost,
// rescheduled and orphan-removed events.
//
// Not parallel: N real containers on this machine's engine is the heaviest
// scenario, and its timings mean most when it runs alone.
func TestLeaderFailoverBurst(t *testing.T) {
	n := burstSize(t)
	c := Start(t, Options{Agents: 3})
	l, err := c.Leader()
	if err != nil {
		t.Fatal(err)
	}
	old := c.SchedulerAt(l.GetAddress())
	if old == nil {
		t.Fatalf("persysctl get leader: %q is none of the schedulers", l.GetAddress())
	}
	t.Logf("leader before the burst: %s at %s", old.Name, old.Addr)
	cl := c.Client()
	names, manifests := c.burstWorkloads(n)

	ctx, cancel := context.WithTimeout(context.Background(), 12*time.Minute)
	defer cancel()
	var (
		killedAt time.Time
		deadAt   time.Time // the killed process has exited
		killed   = make(chan struct{})
	)
	kill := func() {
		killedAt = time.Now()
		old.Kill()
		deadAt = time.Now()
		close(killed)
	}
	// Failover: a surviving scheduler, asked directly, answers GetLeader
	// as the leader; and, as a user sees it, GetLeader through the gateway
	// names a live scheduler other than the killed one.
	var (
		failover, viaGateway time.Duration
		newLeader            string
		pollDone             = make(chan struct{})
		gatewayDone          = make(chan struct{})
	)
	var survivors []*Proc
	for _, p := range c.Schedulers {
		if p != old {
			survivors = append(survivors, p)
		}
	}
	go func() {
		defer close(pollDone)
		select {
		case <-killed:
		case <-ctx.Done():
			return
		}
		for ctx.Err() == nil {
			for _, p := range survivors {
				lctx, lcancel := context.WithTimeout(ctx, time.Second)
				info, err := c.DirectLeader(lctx, p)
				lcancel()
				if err == nil && info.GetIsLeader() && info.GetAddress() == p.Addr {
					failover, newLeader = time.Since(killedAt), p.Addr
					return
				}
			}
			time.Sleep(20 * time.Millisecond)
		}
	}()
	go func() {
		defer close(gatewayDone)
		select {
		case <-killed:
		case <-ctx.Done():
			return
		}
		for ctx.Err() == nil {
			lctx, lcancel := context.WithTimeout(ctx, 2*time.Second)
			info, err := cl.Leader(lctx)
			lcancel()
			if err == nil && info.GetAddress() != "" && info.GetAddress() != old.Addr {
				if p := c.SchedulerAt(info.GetAddress()); p != nil && p.alive() {
					viaGateway = time.Since(killedAt)
					return
				}
			}
			time.Sleep(50 * time.Millisecond)
		}
	}()
	began := time.Now()
	results := c.runBurst(ctx, manifests, noLeader, kill)
	submitted := time.Since(began)
	<-pollDone
	<-gatewayDone

	tl := c.tallyBurst(names, results, killedAt, deadAt)
	if failover == 0 || viaGateway == 0 {
		t.Fatalf("no new leader answered GetLeader (directly: %s, through the gateway: %s) within the test's deadline after killing %s",
			failover, viaGateway, old.Addr)
	}
	t.Logf("killed leader %s after %d of %d applies; the new leader %s answered GetLeader %s after the kill (through the gateway: %s); first apply sent after it died accepted %s after the kill",
		old.Name, n/2, n, newLeader, failover.Round(time.Millisecond), viaGateway.Round(time.Millisecond), tl.firstAfter.Round(time.Millisecond))
	t.Logf("%d applies submitted in %s: results %v, %d applies retried, %d calls in all",
		n, submitted.Round(time.Millisecond), tl.byResult, tl.retried, tl.calls)

	ws := c.waitAllRunning(names, 9*time.Minute)
	allRunning := time.Since(began)
	t.Logf("all %d workloads RUNNING %s after the burst began", n, allRunning.Round(time.Millisecond))
	// Exactly once, right now: no second copy anywhere, running or not.
	c.checkRanOnce(ws, names)
	if l, err := c.Leader(); err != nil {
		t.Error(err)
	} else if l.GetAddress() == old.Addr || c.SchedulerAt(l.GetAddress()) == nil {
		t.Errorf("persysctl get leader after the burst: %q, want a live scheduler other than %s", l.GetAddress(), old.Addr)
	}
	// What the failover cost besides time: nodes that lost their lease
	// meanwhile and workloads moved because of it.
	ev := c.EventCounts(began)
	t.Logf("events since the burst began: %v", ev)
	c.want(c.Report("leader-failover", names,
		[]Timing{{"failover", failover}, {"failover_via_gateway", viaGateway}, {"kill_to_first_apply", tl.firstAfter},
			{"submit", submitted}, {"burst_to_all_running", allRunning}},
		fmt.Sprintf("in_flight=%d retried=%d calls=%d unchanged=%d node_lost_events=%d rescheduled=%d orphans_removed=%d",
			burstInFlight, tl.retried, tl.calls, tl.byResult["unchanged"], ev["NodeLost"], ev["Rescheduled"], ev["OrphanRemoved"])), 3)
}

// TestEtcdMemberKillBurst: N applies go through the gateway, burstInFlight
// at a time, and halfway through the etcd member that leads the raft group
// is killed as a crash would: no leadership transfer, every client
// connection to it cut. The two members left elect a leader and the
// schedulers' clients move to them. Clients apply again after an answer
// that leaves the outcome open (500, 504: the store write failed with its
// member; 409, 503: no scheduler led meanwhile). Every workload is stored
// exactly once and runs exactly once, on the node the scheduler assigned.
// It reports the time to recover (kill → a surviving member leads; kill →
// the first apply sent after the kill accepted) and the time until all
// ran. First it checks that the store answers only its own CA.
//
// Measured on this 2-core machine under other engineers' load, 200
// applies: a member leads 1.3s after the kill, but applies are accepted
// again only 5–7s after it — writes the dead leader had taken wait out
// etcd's request timeout ("etcdserver: request timed out"), and the
// scheduler answers those applies 500; 0 lost, 0 duplicated.
//
// Not parallel, for TestLeaderFailoverBurst's reasons.
func TestEtcdMemberKillBurst(t *testing.T) {
	n := burstSize(t)
	c := Start(t, Options{Agents: 3})
	c.checkStoreLocked()
	before, err := c.Leader()
	if err != nil {
		t.Fatal(err)
	}
	names, manifests := c.burstWorkloads(n)

	ctx, cancel := context.WithTimeout(context.Background(), 12*time.Minute)
	defer cancel()
	var (
		victim   = -1
		killedAt time.Time
		killed   = make(chan struct{}) // victim and killedAt are set
		stopped  = make(chan struct{}) // the member has stopped
	)
	kill := func() {
		defer close(killed)
		killedAt = time.Now()
		if victim = c.Etcd.Leader(); victim < 0 {
			close(stopped)
			return
		}
		// Stopping takes a while; the burst goes on meanwhile, and the
		// relay is cut at once.
		go func() { defer close(stopped); c.Etcd.Kill(victim) }()
	}
	// Recovery of the store: one of the members left leads.
	var (
		elected    time.Duration
		newLeader  = -1
		electedSet = make(chan struct{})
	)
	go func() {
		defer close(electedSet)
		select {
		case <-killed:
		case <-ctx.Done():
			return
		}
		for victim >= 0 && ctx.Err() == nil {
			for i, m := range c.Etcd.Members {
				if i != victim && m.IsLeader() {
					elected, newLeader = time.Since(killedAt), i
					return
				}
			}
			time.Sleep(5 * time.Millisecond)
		}
	}()
	began := time.Now()
	results := c.runBurst(ctx, manifests, storeUnsure, kill)
	submitted := time.Since(began)
	<-stopped
	<-electedSet
	if victim < 0 {
		t.Fatal("no etcd member led when the burst was halfway: nothing to kill")
	}
	// Measured from the kill's start, not from when the member stopped:
	// its relay is cut first, so an apply sent later meets the kill.
	tl := c.tallyBurst(names, results, killedAt, killedAt)
	if newLeader < 0 {
		t.Fatalf("no member of the two left led within the test's deadline after killing m%d", victim)
	}
	t.Logf("killed etcd member m%d (the raft leader) after %d of %d applies; m%d leads %s after the kill; first apply sent after the kill accepted %s after it",
		victim, n/2, n, newLeader, elected.Round(time.Millisecond), tl.firstAfter.Round(time.Millisecond))
	t.Logf("%d applies submitted in %s: results %v, %d applies retried, %d calls in all, %s",
		n, submitted.Round(time.Millisecond), tl.byResult, tl.retried, tl.calls, tl.refusedFact())
	for _, code := range slices.Sorted(maps.Keys(tl.why)) {
		t.Logf("refused with %d, for example: %s", code, tl.why[code])
	}

	ws := c.waitAllRunning(names, 9*time.Minute)
	allRunning := time.Since(began)
	t.Logf("all %d workloads RUNNING %s after the burst began", n, allRunning.Round(time.Millisecond))
	c.checkRanOnce(ws, names)
	c.checkStoredOnce(ws, names)
	after, err := c.Leader()
	if err != nil {
		t.Fatal(err)
	}
	ev := c.EventCounts(began)
	t.Logf("events since the burst began: %v; scheduler leader %s before, %s after", ev, before.GetAddress(), after.GetAddress())
	c.want(c.Report("etcd-member-kill", names,
		[]Timing{{"etcd_election", elected}, {"kill_to_first_apply", tl.firstAfter},
			{"submit", submitted}, {"burst_to_all_running", allRunning}},
		fmt.Sprintf("killed=m%d in_flight=%d retried=%d calls=%d unchanged=%d %s scheduler_leader_changed=%t node_lost_events=%d rescheduled=%d orphans_removed=%d",
			victim, burstInFlight, tl.retried, tl.calls, tl.byResult["unchanged"], tl.refusedFact(),
			after.GetAddress() != before.GetAddress(), ev["NodeLost"], ev["Rescheduled"], ev["OrphanRemoved"])), 3)
}

// checkStoredOnce reads the store itself, through the members still alive:
// it holds exactly the named workloads, each assigned to the node the
// scheduler reports; and persysctl lists each of them once.
func (c *Cluster) checkStoredOnce(ws map[string]*persysv1.WorkloadView, names []string) {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cli := c.Etcd.Client(c.t)
	st := store.New(cli, store.Options{})
	resp, err := cli.Get(ctx, st.Prefix()+"/workloads/", clientv3.WithPrefix(), clientv3.WithCountOnly())
	if err != nil {
		c.t.Fatalf("count stored workloads: %v", err)
	}
	if resp.Count != int64(len(names)) {
		c.t.Errorf("the store holds %d workloads, want %d", resp.Count, len(names))
	}
	for _, name := range names {
		if _, _, err := st.GetWorkload(ctx, name); err != nil {
			c.t.Errorf("stored workload %s: %v", name, err)
			continue
		}
		a, _, err := st.GetAssignment(ctx, name)
		if err != nil {
			c.t.Errorf("assignment of %s: %v", name, err)
		} else if got, want := a.GetNodeId(), ws[name].GetStatus().GetNodeId(); got != want {
			c.t.Errorf("workload %s: assigned to %q in the store, running on %q by its status", name, got, want)
		}
	}
	var list persysv1.ListWorkloadsResponse
	if err := c.ctlJSON(&list, "get", "workloads", "-l", labelRun+"="+c.Run); err != nil {
		c.t.Fatal(err)
	}
	listed := map[string]int{}
	for _, w := range list.GetWorkloads() {
		listed[w.GetWorkload().GetName()]++
	}
	for _, name := range names {
		if listed[name] != 1 {
			c.t.Errorf("persysctl get workloads lists %s %d times, want once", name, listed[name])
		}
	}
	if len(listed) != len(names) {
		c.t.Errorf("persysctl get workloads lists %d workloads, want %d", len(listed), len(names))
	}
}

// checkStoreLocked: the store answers a scheduler's certificate of the
// store's CA and refuses the same scheduler's certificate of the cluster's
// CA, so no identity the cluster's CA issues opens it.
func (c *Cluster) checkStoreLocked() {
	c.t.Helper()
	get := func(dir string) error {
		name := filepath.Join(dir, c.Schedulers[0].Name)
		cfg, err := pki.ClientTLS(pki.Files{CA: c.Etcd.Bundle.CA, Cert: name + ".crt", Key: name + ".key"}, "")
		if err != nil {
			c.t.Fatal(err)
		}
		cli, err := store.Connect(c.Etcd.Endpoints(), cfg)
		if err != nil {
			c.t.Fatal(err)
		}
		defer cli.Close()
		// A refused handshake shows as no answer before the deadline.
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		defer cancel()
		_, err = cli.Get(ctx, store.DefaultPrefix+"/", clientv3.WithPrefix(), clientv3.WithCountOnly())
		return err
	}
	if err := get(c.Etcd.Bundle.Dir); err != nil {
		c.t.Fatalf("the store refused %s's certificate of the store's CA: %v", c.Schedulers[0].Name, err)
	}
	if err := get(c.pkiDir); err == nil {
		c.t.Errorf("the store answered %s's certificate of the cluster's CA", c.Schedulers[0].Name)
	}
}
