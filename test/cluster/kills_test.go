package cluster

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/persys-dev/compute/internal/failpoint"
	"github.com/persys-dev/compute/internal/store"
	"github.com/persys-dev/compute/internal/testutil/eventually"
)

// killBound bounds each step of a kill row that waits on the cluster: the
// leader reaching its point, a new leader, the lost node's workloads
// running elsewhere (lease TTL + grace), and convergence once everything
// is back. Generous: the machine is shared.
const killBound = 90 * time.Second

// What a kill row kills.
type victim string

const (
	killLeader victim = "leader"
	killAgent  victim = "agent"
)

// The operation a kill row drives into its point.
type killOp string

const (
	opApply  killOp = "apply"       // persysctl apply of one new workload
	opBatch  killOp = "batch-apply" // one persysctl apply of four workloads
	opDrain  killOp = "drain"       // persysctl node drain
	opDelete killOp = "delete"      // persysctl delete workload
)

// killCase is one row to run: kill the victim at the scheduler point
// while op runs.
type killCase struct {
	point  string
	killed victim
	op     killOp
}

// killRow is one line of the kill table.
type killRow struct {
	killCase
	converged  bool
	seconds    float64 // from the kill to convergence
	leftovers  int     // containers of deleted workloads still on the engine
	duplicates int     // containers beyond one per workload at the end
}

var killTable struct {
	mu   sync.Mutex
	rows []killRow
}

// killTableText is the kill table, for the log and for TestMain.
func killTableText(rows []killRow) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%-31s %-7s %-12s %-9s %-8s %-9s %s\n", "POINT", "KILLED", "OPERATION", "CONVERGED", "SECONDS", "LEFTOVERS", "DUPLICATES")
	for _, r := range rows {
		fmt.Fprintf(&b, "%-31s %-7s %-12s %-9v %-8.1f %-9d %d\n", r.point, r.killed, r.op, r.converged, r.seconds, r.leftovers, r.duplicates)
	}
	return b.String()
}

// printKillTable prints the rows TestSchedulerPointKills recorded.
func printKillTable() {
	killTable.mu.Lock()
	defer killTable.mu.Unlock()
	if len(killTable.rows) == 0 {
		return
	}
	fmt.Println("cluster: scheduler-point kills (3 etcd members, 3 schedulers, 3 agents; SIGKILL at the point):")
	fmt.Print(killTableText(killTable.rows))
}

// FailpointFile is the file whose content arms the schedulers' failpoints
// (failpoint.ArmEnv) when Options.Failpoints is set.
func (c *Cluster) FailpointFile() string { return filepath.Join(c.Dir, "failpoints") }

// Arm arms spec (failpoint.Env's syntax) in every scheduler.
func (c *Cluster) Arm(spec string) {
	c.t.Helper()
	if err := os.WriteFile(c.FailpointFile(), []byte(spec), 0o600); err != nil {
		c.t.Fatal(err)
	}
}

// Disarm disarms every point and lets a paused scheduler go on.
func (c *Cluster) Disarm() {
	c.t.Helper()
	if err := os.Remove(c.FailpointFile()); err != nil && !os.IsNotExist(err) {
		c.t.Fatal(err)
	}
}

// TestSchedulerPointKills kills the leader scheduler at each scheduler
// failpoint while driving the operation that reaches it (an apply, a
// batch apply, a drain for the middle of a move, a delete), and kills one
// agent at the points where its death matters (the assignment committed
// and the agent not yet called; the agent answered and its status not yet
// written; the leader holds at the point while the agent dies). Each row
// must converge: every workload RUNNING with exactly one container across
// the nodes, where the scheduler says, and a deleted one without any. The
// killed scheduler is started again after its row, the killed agent
// within its row, so that every row begins with the whole cluster.
//
// One cluster serves every row, rows one after another; three steady
// workloads run through all of them and are counted in every row. It
// prints the kill table: point, killed, operation, converged, seconds
// (from the kill), leftovers (after deleting the row's workloads),
// duplicates.
//
// Not parallel: its kills and reschedules mean most on a quiet engine.
func TestSchedulerPointKills(t *testing.T) {
	c := Start(t, Options{Agents: 3, Failpoints: true, RescheduleGrace: rescheduleGrace})
	began := time.Now()
	k := &kills{c: c, st: store.New(c.Etcd.Client(t), store.Options{})}
	k.steady = c.ApplyWorkloads("steady", 3)

	cases := []killCase{
		{failpoint.SchedulerAfterWorkloadWrite, killLeader, opApply},
		{failpoint.SchedulerAfterGroupCommit, killLeader, opBatch},
		{failpoint.SchedulerAfterAssign, killLeader, opApply},
		{failpoint.SchedulerAfterAgentAnswer, killLeader, opApply},
		{failpoint.SchedulerMidMove, killLeader, opDrain},
		{failpoint.SchedulerAfterNodeDelete, killLeader, opDelete},
		{failpoint.SchedulerAfterAssign, killAgent, opApply},
		{failpoint.SchedulerAfterAgentAnswer, killAgent, opApply},
	}
	var rows []killRow
	for i, tc := range cases {
		r := k.run(fmt.Sprintf("k%d", i+1), tc)
		t.Logf("row %d: %s killed at %s during %s: converged=%v in %.1fs leftovers=%d duplicates=%d",
			i+1, r.killed, r.point, r.op, r.converged, r.seconds, r.leftovers, r.duplicates)
		rows = append(rows, r)
		killTable.mu.Lock()
		killTable.rows = append(killTable.rows, r)
		killTable.mu.Unlock()
	}
	t.Logf("kill table:\n%s", killTableText(rows))

	var leftovers, duplicates, unconverged int
	for _, r := range rows {
		leftovers, duplicates = leftovers+r.leftovers, duplicates+r.duplicates
		if !r.converged {
			unconverged++
		}
	}
	c.want(c.Report("scheduler-kills", k.steady, []Timing{{"rows", time.Since(began)}},
		fmt.Sprintf("rows=%d unconverged=%d leftovers=%d duplicates=%d leader_kills=%d agent_kills=%d",
			len(rows), unconverged, leftovers, duplicates, k.leaderKills, k.agentKills)), 3)
	if left := k.deleteAll(k.steady); left != 0 {
		t.Errorf("%d containers of the steady workloads left after deleting them", left)
	}
}

// kills runs the rows of TestSchedulerPointKills on one cluster.
type kills struct {
	c      *Cluster
	st     *store.Store
	steady []string

	leaderKills, agentKills int
}

// rowState is what one row set up and expects.
type rowState struct {
	names   []string // the row's workloads, RUNNING at the end
	gone    []string // the row's workloads deleted by its operation
	drained string   // the node a drain row empties
	batch   string   // the manifest file of a batch apply
}

// run sets the row up, arms the point, drives the operation, kills the
// victim there, and measures what follows. Failing to reach the point
// ends the test: every later row would measure nothing.
func (k *kills) run(prefix string, tc killCase) killRow {
	c, t := k.c, k.c.t
	t.Helper()
	r := killRow{killCase: tc}
	rs := k.setUp(prefix, tc.op)
	leader := k.leader()
	t.Logf("row %s: %s at %s during %s; leader %s", prefix, tc.killed, tc.point, tc.op, leader.Name)

	action := "kill"
	if tc.killed == killAgent {
		action = "pause"
	}
	pausedBefore := strings.Count(leader.Output(), "failpoint "+tc.point+": paused")
	c.Arm(tc.point + "=" + action)
	driven := make(chan string, 1)
	go func() { driven <- k.drive(tc.op, rs) }()

	var killedAt time.Time
	var lost *Agent
	switch tc.killed {
	case killLeader:
		dead := k.waitDeath(tc.point)
		if dead == nil {
			c.Disarm()
			t.Fatalf("row %s: no scheduler died at %s within %s; leader's log tail:\n%s", prefix, tc.point, killBound, tail(leader.Output(), 30))
		}
		killedAt = time.Now()
		if dead != leader {
			t.Logf("row %s: leadership moved before the kill: %s died at the point", prefix, dead.Name)
			leader = dead
		}
		// At once: the next leader must not die at the same point when
		// it finishes the operation.
		c.Disarm()
		k.leaderKills++
	case killAgent:
		c.WaitFor(leader.Name+" paused at "+tc.point, killBound, func() (bool, string) {
			return strings.Count(leader.Output(), "failpoint "+tc.point+": paused") > pausedBefore, "not yet"
		})
		node, err := k.assignedNode(rs.names[0])
		if err != nil {
			c.Disarm()
			t.Fatalf("row %s: assignment of %s: %v", prefix, rs.names[0], err)
		}
		lost = c.AgentByNode(node)
		c.KillAgent(lost)
		killedAt = time.Now()
		c.Disarm()
		k.agentKills++
	}
	out := <-driven
	t.Logf("row %s: %s answered: %s", prefix, tc.op, strings.TrimSpace(out))

	if tc.killed == killLeader {
		k.afterLeaderKill(prefix, leader, tc.op, rs, out)
	} else {
		k.afterAgentKill(prefix, lost, rs)
	}
	run := append(append([]string{}, k.steady...), rs.names...)
	ok, last := k.waitSettled(run, rs.gone, rs.drained, killBound)
	r.seconds = time.Since(killedAt).Seconds()
	r.converged = ok
	if !ok {
		t.Errorf("row %s (%s killed at %s): not converged within %s: %s", prefix, tc.killed, tc.point, killBound, last)
	}
	ev := c.EventCounts(killedAt)
	t.Logf("row %s: events since the kill: rescheduled=%d orphans_removed=%d apply_resent=%d leader_elected=%d",
		prefix, ev["Rescheduled"], ev["OrphanRemoved"], ev["ApplyResent"], ev["LeaderElected"])
	r.duplicates = k.duplicates(run)
	if r.duplicates != 0 {
		t.Errorf("row %s: %d duplicate containers", prefix, r.duplicates)
	}
	if tc.killed == killLeader {
		np := c.RestartProc(leader)
		c.waitHTTP(np, "/healthz", 30*time.Second)
	}
	if rs.drained != "" {
		c.MustCtl("node", "uncordon", rs.drained)
	}
	r.leftovers = k.deleteAll(append(rs.names, rs.gone...))
	if r.leftovers != 0 {
		t.Errorf("row %s: %d containers left after deleting its workloads", prefix, r.leftovers)
	}
	return r
}

// setUp makes what the operation acts on, before the point is armed.
func (k *kills) setUp(prefix string, op killOp) rowState {
	c := k.c
	c.t.Helper()
	var rs rowState
	switch op {
	case opApply:
		rs.names = []string{prefix + "-1"}
	case opBatch:
		var docs [][]byte
		for i := range 4 {
			n := fmt.Sprintf("%s-%d", prefix, i+1)
			rs.names = append(rs.names, n)
			docs = append(docs, c.ManifestYAML(n, WorkloadSpec{}))
		}
		rs.batch = filepath.Join(c.Dir, prefix+"-batch.yaml")
		if err := os.WriteFile(rs.batch, bytes.Join(docs, []byte("---\n")), 0o600); err != nil {
			c.t.Fatal(err)
		}
	case opDrain:
		rs.names = c.ApplyWorkloads(prefix, 3)
		ws := c.waitAllRunning(rs.names, killBound)
		rs.drained = ws[rs.names[0]].GetStatus().GetNodeId()
	case opDelete:
		rs.gone = c.ApplyWorkloads(prefix, 1)
	}
	return rs
}

// drive runs the row's operation with persysctl and returns what it
// said. It runs beside the kill: an answer lost with the leader is
// expected, and what the operation wrote must converge all the same.
func (k *kills) drive(op killOp, rs rowState) string {
	c := k.c
	var out string
	var err error
	switch op {
	case opApply:
		out, err = c.Ctl("apply", "-f", c.Manifest(rs.names[0]))
	case opBatch:
		out, err = c.Ctl("apply", "-f", rs.batch)
	case opDrain:
		out, err = c.Ctl("node", "drain", rs.drained, "--timeout", "60s")
	case opDelete:
		out, err = c.Ctl("delete", "workload", rs.gone[0])
	}
	if err != nil {
		out += " (" + err.Error() + ")"
	}
	return out
}

// afterLeaderKill waits until another scheduler leads; a drain whose call
// died with the leader is asked again, as its operator would, and so is a
// batch apply that answered an error (the leader may have died before
// every document's create was committed: those were never stored, and
// the error told the operator so).
func (k *kills) afterLeaderKill(prefix string, old *Proc, op killOp, rs rowState, answer string) {
	c := k.c
	c.t.Helper()
	took := c.WaitFor("a new leader after killing "+old.Name, killBound, func() (bool, string) {
		l, err := c.Leader()
		if err != nil {
			return false, err.Error()
		}
		p := c.SchedulerAt(l.GetAddress())
		return p != nil && p != old && p.alive(), "leader " + l.GetAddress()
	})
	c.t.Logf("row %s: a new leader answers %s after the kill", prefix, took.Round(time.Millisecond))
	var again []string
	switch {
	case op == opDrain:
		again = []string{"node", "drain", rs.drained, "--timeout", "60s"}
	case op == opBatch && strings.Contains(answer, "Error"):
		again = []string{"apply", "-f", rs.batch}
	default:
		return
	}
	// The new leader refuses calls while it loads the store: asked again
	// after "unavailable", as persysctl's user would; any other refusal
	// is an error.
	var err error
	ok, out := until(killBound, func() (bool, string) {
		var out string
		out, err = c.Ctl(again...)
		return err == nil || !strings.Contains(out, "unavailable"), out
	})
	if !ok || err != nil {
		c.t.Errorf("row %s: persysctl %s again after the failover: %v\n%s", prefix, strings.Join(again, " "), err, out)
		return
	}
	c.t.Logf("row %s: persysctl %s asked again: %s", prefix, again[0], strings.TrimSpace(out))
}

// afterAgentKill waits until the lost node's workloads run elsewhere (the
// reschedule after lease TTL and grace; logged, not required: resuming
// in place when the agent returns converges too), then starts the agent
// again and waits until its node is READY.
func (k *kills) afterAgentKill(prefix string, lost *Agent, rs rowState) {
	c := k.c
	c.t.Helper()
	run := append(append([]string{}, k.steady...), rs.names...)
	ok, last := until(killBound, func() (bool, string) {
		ws, err := c.Workloads()
		if err != nil {
			return false, err.Error()
		}
		var notYet []string
		for _, n := range run {
			if st := ws[n].GetStatus(); st.GetState() != runningState || st.GetNodeId() == lost.NodeID || st.GetNodeId() == "" {
				notYet = append(notYet, fmt.Sprintf("%s=%s/%s@%s", n, st.GetState(), st.GetReason(), st.GetNodeId()))
			}
		}
		return len(notYet) == 0, strings.Join(notYet, " ")
	})
	c.t.Logf("row %s: with %s dead, every workload RUNNING on the other nodes: %v %s", prefix, lost.NodeID, ok, last)
	c.StartAgent(lost)
	c.WaitFor("node "+lost.NodeID+" READY again", killBound, func() (bool, string) {
		n, err := c.Node(lost.NodeID)
		if err != nil {
			return false, err.Error()
		}
		return n.GetState() == nodeReady, n.GetState().String()
	})
}

// waitDeath waits up to killBound for a scheduler to die and returns it
// when it died at point; nil when none died, or one died of something
// else.
func (k *kills) waitDeath(point string) *Proc {
	deadline := time.Now().Add(killBound)
	for time.Now().Before(deadline) {
		for _, p := range k.c.Schedulers {
			if !p.alive() {
				if p.DiedAt(point, time.Second) {
					return p
				}
				return nil
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	return nil
}

// leader is the scheduler that leads now, by persysctl get leader.
func (k *kills) leader() *Proc {
	c := k.c
	c.t.Helper()
	var p *Proc
	c.WaitFor("a live scheduler leads", killBound, func() (bool, string) {
		l, err := c.Leader()
		if err != nil {
			return false, err.Error()
		}
		p = c.SchedulerAt(l.GetAddress())
		return p != nil && p.alive(), "leader " + l.GetAddress()
	})
	return p
}

// assignedNode reads the workload's assignment from the store.
func (k *kills) assignedNode(name string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	a, _, err := k.st.GetAssignment(ctx, name)
	if err != nil {
		return "", err
	}
	return a.GetNodeId(), nil
}

// waitSettled waits until every workload in run is RUNNING by the
// scheduler with exactly one container on the engine, running, on the
// node the scheduler names (not avoid), and every workload in gone is
// unlisted and has no container.
func (k *kills) waitSettled(run, gone []string, avoid string, bound time.Duration) (bool, string) {
	c := k.c
	return until(bound, func() (bool, string) {
		ws, err := c.Workloads()
		if err != nil {
			return false, err.Error()
		}
		all, err := c.listWorkloadContainers(true)
		if err != nil {
			return false, err.Error()
		}
		var wrong []string
		for _, n := range run {
			st := ws[n].GetStatus()
			cts := all[n]
			switch {
			case st.GetState() != runningState || st.GetNodeId() == "" || st.GetNodeId() == avoid:
				wrong = append(wrong, fmt.Sprintf("%s=%s/%s@%s", n, st.GetState(), st.GetReason(), st.GetNodeId()))
			case len(cts) != 1:
				wrong = append(wrong, fmt.Sprintf("%s: %d containers", n, len(cts)))
			case cts[0].State != "running" || cts[0].Labels["persys.node"] != st.GetNodeId():
				wrong = append(wrong, fmt.Sprintf("%s: container %s on %s, scheduler says %s", n, cts[0].State, cts[0].Labels["persys.node"], st.GetNodeId()))
			}
		}
		for _, n := range gone {
			if _, listed := ws[n]; listed || len(all[n]) != 0 {
				wrong = append(wrong, fmt.Sprintf("%s deleted: listed %v, %d containers", n, listed, len(all[n])))
			}
		}
		return len(wrong) == 0, strings.Join(wrong, " ")
	})
}

// duplicates counts the containers beyond one per workload in run, on
// the engine, running or not.
func (k *kills) duplicates(run []string) int {
	all := k.c.AllContainers()
	n := 0
	for _, w := range run {
		n += max(0, len(all[w])-1)
	}
	return n
}

// deleteAll deletes the workloads, waits up to killBound for their
// containers to go and returns how many are left.
func (k *kills) deleteAll(names []string) int {
	c := k.c
	c.t.Helper()
	ws, err := c.Workloads()
	if err != nil {
		c.t.Fatal(err)
	}
	for _, n := range names {
		if _, listed := ws[n]; listed {
			c.MustCtl("delete", "workload", n, "--wait", "--timeout", "60s")
		}
	}
	left := 0
	until(killBound, func() (bool, string) {
		all := c.AllContainers()
		left = 0
		for _, n := range names {
			left += len(all[n])
		}
		return left == 0, fmt.Sprintf("%d containers", left)
	})
	ws, err = c.Workloads()
	if err != nil {
		c.t.Fatal(err)
	}
	for _, n := range names {
		if _, listed := ws[n]; listed {
			c.t.Errorf("workload %s still listed after its delete", n)
		}
	}
	return left
}

// until polls cond every 200ms until it holds or bound passes, and
// returns whether it held and the last state it described. Unlike
// Cluster.WaitFor it does not fail the test: a row that does not converge
// is a row of the table.
func until(bound time.Duration, cond func() (bool, string)) (bool, string) {
	return eventually.Within(bound, 200*time.Millisecond, cond)
}
