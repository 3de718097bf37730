package cluster

import (
	"context"
	"fmt"
	"os"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	persysv1 "github.com/persys-dev/compute/api/persys/v1"
)

// rescheduleFollowUp enables the second half of TestNodeLossMarksUnknown:
// after --reschedule-grace the lost node's workloads run elsewhere, and when
// the node comes back its stale copies are collected.
//
// FOLLOW-UP: set this to true once the scheduler has --reschedule-grace and
// reschedules lost workloads (or try it early with PERSYS_CLUSTER_RESCHEDULE=1).
var rescheduleFollowUp = os.Getenv("PERSYS_CLUSTER_RESCHEDULE") == "1"

// rescheduleGrace is the --reschedule-grace the follow-up runs with;
// holdGrace is long enough that nothing moves while a test looks at a lost
// or partitioned node.
const (
	rescheduleGrace = 5 * time.Second
	holdGrace       = 60 * time.Second
)

const (
	runningState = persysv1.ActualState_ACTUAL_STATE_RUNNING
	nodeReady    = persysv1.NodeState_NODE_STATE_READY
)

// placement maps node id → workload names, from the scheduler's statuses.
func placement(ws map[string]*persysv1.WorkloadView) map[string][]string {
	out := map[string][]string{}
	for name, w := range ws {
		n := w.GetStatus().GetNodeId()
		out[n] = append(out[n], name)
	}
	for _, names := range out {
		sort.Strings(names)
	}
	return out
}

// waitAllRunning waits until every named workload is RUNNING on some node.
func (c *Cluster) waitAllRunning(names []string, timeout time.Duration) map[string]*persysv1.WorkloadView {
	c.t.Helper()
	var last map[string]*persysv1.WorkloadView
	c.WaitFor(fmt.Sprintf("%d workloads RUNNING", len(names)), timeout, func() (bool, string) {
		ws, err := c.Workloads()
		if err != nil {
			return false, err.Error()
		}
		last = ws
		var notYet []string
		for _, n := range names {
			if st := ws[n].GetStatus(); st.GetState() != runningState || st.GetNodeId() == "" {
				notYet = append(notYet, fmt.Sprintf("%s=%s/%s", n, st.GetState(), st.GetReason()))
			}
		}
		return len(notYet) == 0, strings.Join(notYet, " ")
	})
	return last
}

// checkContainers checks that each workload has exactly one running
// container on the engine, labelled with the node the scheduler assigned,
// and that it is the container the status names.
func (c *Cluster) checkContainers(ws map[string]*persysv1.WorkloadView, names []string) {
	c.t.Helper()
	running := c.RunningContainers()
	for _, n := range names {
		st := ws[n].GetStatus()
		cts := running[n]
		if len(cts) != 1 {
			c.t.Errorf("workload %s: %d running containers on the engine, want 1", n, len(cts))
			continue
		}
		if got := cts[0].Labels["persys.node"]; got != st.GetNodeId() {
			c.t.Errorf("workload %s: container %s has persys.node=%q, scheduler says node %q", n, cts[0].ID[:12], got, st.GetNodeId())
		}
		if id := st.GetRuntimeId(); id == "" || !strings.HasPrefix(cts[0].ID, id) {
			c.t.Errorf("workload %s: status runtime id %q, engine container %s", n, id, cts[0].ID[:12])
		}
	}
}

// TestAgentsJoin: three agents in containers register and turn READY, and
// six workloads spread over them, two per node, each container labelled
// with the node the scheduler chose.
func TestAgentsJoin(t *testing.T) {
	c := Start(t, Options{Agents: 3})

	table := c.MustCtl("get", "nodes")
	for _, a := range c.Agents {
		var line string
		for _, l := range strings.Split(table, "\n") {
			if strings.HasPrefix(l, a.NodeID+" ") {
				line = l
			}
		}
		if fields := strings.Fields(line); len(fields) < 2 || fields[1] != "READY" {
			t.Errorf("persysctl get nodes: node %s not READY:\n%s", a.NodeID, table)
		}
	}
	nodes, err := c.Nodes()
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range nodes {
		a := c.AgentByNode(n.GetId())
		if n.GetAddress() != a.Addr() {
			t.Errorf("node %s address %q, want %q", n.GetId(), n.GetAddress(), a.Addr())
		}
	}

	l, err := c.Leader()
	if err != nil {
		t.Fatal(err)
	}
	if c.SchedulerAt(l.GetAddress()) == nil {
		t.Errorf("persysctl get leader: address %q is none of the schedulers", l.GetAddress())
	}

	start := time.Now()
	names := c.ApplyWorkloads("web", 6)
	ws := c.waitAllRunning(names, 60*time.Second)
	t.Logf("6 workloads applied and RUNNING in %s", time.Since(start).Round(time.Millisecond))

	byNode := placement(ws)
	for _, a := range c.Agents {
		if got := len(byNode[a.NodeID]); got != 2 {
			t.Errorf("spread: node %s runs %d workloads, want 2 (placement %v)", a.NodeID, got, byNode)
		}
	}
	c.checkContainers(ws, names)

	s := c.Observe(names)
	t.Log(s)
	if s.Nodes != 3 || s.Lost != 0 || s.Duplicated != 0 {
		t.Errorf("summary %s, want nodes=3 lost=0 duplicated=0", s)
	}
}

// TestAgentRestartKeepsWorkloads: restarting an agent's container leaves
// its workloads' containers alone — same id, same start time — and the node
// is READY again.
func TestAgentRestartKeepsWorkloads(t *testing.T) {
	c := Start(t, Options{Agents: 3})
	names := c.ApplyWorkloads("web", 6)
	ws := c.waitAllRunning(names, 60*time.Second)
	a := c.Agents[0]
	mine := placement(ws)[a.NodeID]
	if len(mine) == 0 {
		t.Fatalf("node %s runs nothing; placement %v", a.NodeID, placement(ws))
	}

	type seen struct{ id, startedAt string }
	before := map[string]seen{}
	for _, n := range mine {
		info, err := c.Docker.ContainerInspect(context.Background(), ws[n].GetStatus().GetRuntimeId())
		if err != nil {
			t.Fatal(err)
		}
		before[n] = seen{info.ID, info.State.StartedAt}
	}

	agentBefore := c.AgentStartedAt(a)
	began := time.Now()
	c.RestartAgent(a)
	agentAfter := c.AgentStartedAt(a)
	if !agentAfter.After(agentBefore) {
		t.Fatalf("agent %s StartedAt %s not after %s: the container did not restart", a.NodeID, agentAfter, agentBefore)
	}
	// READY, with three heartbeats from the new agent process: by then it
	// has registered with its workload list and the scheduler has acted on it.
	settled := agentAfter.Add(3 * c.Opts.HeartbeatInterval)
	c.WaitFor("node "+a.NodeID+" READY after the restart", 30*time.Second, func() (bool, string) {
		n, err := c.Node(a.NodeID)
		if err != nil {
			return false, err.Error()
		}
		hb := n.GetLastHeartbeat().AsTime()
		return n.GetState() == nodeReady && hb.After(settled), fmt.Sprintf("state %s, last heartbeat %s", n.GetState(), hb.Format(time.RFC3339Nano))
	})
	t.Logf("agent %s restarted and READY with fresh heartbeats %s after the restart call", a.NodeID, time.Since(began).Round(time.Millisecond))

	ws = c.waitAllRunning(names, 30*time.Second)
	for _, n := range mine {
		info, err := c.Docker.ContainerInspect(context.Background(), before[n].id)
		if err != nil {
			t.Errorf("workload %s: container %s gone after the agent restart: %v", n, before[n].id[:12], err)
			continue
		}
		if info.State.StartedAt != before[n].startedAt || !info.State.Running {
			t.Errorf("workload %s: container restarted (StartedAt %s → %s, running %v)", n, before[n].startedAt, info.State.StartedAt, info.State.Running)
		}
		if got := ws[n].GetStatus(); got.GetNodeId() != a.NodeID || got.GetRuntimeId() == "" || !strings.HasPrefix(before[n].id, got.GetRuntimeId()) {
			t.Errorf("workload %s: status on %q runtime %q, want node %s container %s", n, got.GetNodeId(), got.GetRuntimeId(), a.NodeID, before[n].id[:12])
		}
	}
	c.checkContainers(ws, names)

	s := c.Observe(names)
	t.Log(s)
	if s.Nodes != 3 || s.Lost != 0 || s.Duplicated != 0 {
		t.Errorf("summary %s, want nodes=3 lost=0 duplicated=0", s)
	}
}

// TestNodeLossMarksUnknown: a killed agent's node turns NOT_READY when its
// lease runs out and its workloads show NODE_LOST; the others keep running.
// Its containers keep running on the engine (only the agent died), so
// nothing is lost and nothing is duplicated. The follow-up half checks
// rescheduling after the grace period.
func TestNodeLossMarksUnknown(t *testing.T) {
	grace := holdGrace
	if rescheduleFollowUp {
		grace = rescheduleGrace
	}
	opts := Options{Agents: 3, SchedulerFlags: []string{"--reschedule-grace", grace.String()}}
	c := Start(t, opts)
	names := c.ApplyWorkloads("web", 6)
	ws := c.waitAllRunning(names, 60*time.Second)
	lost := c.Agents[0]
	lostNames := placement(ws)[lost.NodeID]
	if len(lostNames) == 0 {
		t.Fatalf("node %s runs nothing; placement %v", lost.NodeID, placement(ws))
	}

	killed := time.Now()
	c.KillAgent(lost)
	notReady := c.WaitFor("node "+lost.NodeID+" NOT_READY", c.Opts.LeaseTTL+30*time.Second, func() (bool, string) {
		n, err := c.Node(lost.NodeID)
		if err != nil {
			return false, err.Error()
		}
		return n.GetState() == persysv1.NodeState_NODE_STATE_NOT_READY, n.GetState().String()
	})
	c.WaitFor("NODE_LOST on the lost node's workloads", 30*time.Second, func() (bool, string) {
		cur, err := c.Workloads()
		if err != nil {
			return false, err.Error()
		}
		ws = cur
		var wrong []string
		for _, n := range lostNames {
			if st := cur[n].GetStatus(); st.GetReason() != persysv1.FailureReason_FAILURE_REASON_NODE_LOST {
				wrong = append(wrong, fmt.Sprintf("%s=%s/%s", n, st.GetState(), st.GetReason()))
			}
		}
		return len(wrong) == 0, strings.Join(wrong, " ")
	})
	t.Logf("node %s NOT_READY %s after the kill (lease TTL %s); NODE_LOST on %v %s after the kill",
		lost.NodeID, notReady.Round(time.Millisecond), c.Opts.LeaseTTL, lostNames, time.Since(killed).Round(time.Millisecond))
	for _, n := range lostNames {
		if st := ws[n].GetStatus(); st.GetState() != persysv1.ActualState_ACTUAL_STATE_UNKNOWN {
			t.Errorf("workload %s on the lost node: state %s, want UNKNOWN", n, st.GetState())
		}
	}
	for _, n := range names {
		if slices.Contains(lostNames, n) {
			continue
		}
		if st := ws[n].GetStatus(); st.GetState() != runningState || st.GetNodeId() == lost.NodeID {
			t.Errorf("workload %s on a live node: %s on %s, want RUNNING", n, st.GetState(), st.GetNodeId())
		}
	}
	// Only the agent died: its workloads' containers still run.
	running := c.RunningContainers()
	for _, n := range lostNames {
		if len(running[n]) != 1 || running[n][0].Labels["persys.node"] != lost.NodeID {
			t.Errorf("workload %s: want its container still running on %s, engine has %d running", n, lost.NodeID, len(running[n]))
		}
	}
	s := c.Observe(names)
	t.Log(s)
	if s.Nodes != 2 || s.Lost != 0 || s.Duplicated != 0 {
		t.Errorf("summary %s, want nodes=2 lost=0 duplicated=0", s)
	}

	if !rescheduleFollowUp {
		t.Log("FOLLOW-UP disabled: rescheduling after --reschedule-grace (set rescheduleFollowUp or PERSYS_CLUSTER_RESCHEDULE=1)")
		return
	}
	c.checkRescheduled(names, lostNames, lost)
}

// checkRescheduled is the FOLLOW-UP half of TestNodeLossMarksUnknown: the
// lost node's workloads run on live nodes after the grace; when the lost
// agent comes back, its stale containers are collected and every workload
// runs exactly once.
func (c *Cluster) checkRescheduled(names, lostNames []string, lost *Agent) {
	c.t.Helper()
	moved := c.WaitFor("lost workloads rescheduled on live nodes", rescheduleGrace+60*time.Second, func() (bool, string) {
		ws, err := c.Workloads()
		if err != nil {
			return false, err.Error()
		}
		var notYet []string
		for _, n := range lostNames {
			if st := ws[n].GetStatus(); st.GetState() != runningState || st.GetNodeId() == lost.NodeID || st.GetNodeId() == "" {
				notYet = append(notYet, fmt.Sprintf("%s=%s/%s@%s", n, st.GetState(), st.GetReason(), st.GetNodeId()))
			}
		}
		return len(notYet) == 0, strings.Join(notYet, " ")
	})
	c.t.Logf("lost workloads RUNNING elsewhere %s after NODE_LOST (grace %s)", moved.Round(time.Millisecond), rescheduleGrace)
	// While the node is away its stale copies still run: one per workload
	// on live nodes.
	running := c.RunningContainers()
	for _, n := range lostNames {
		var live int
		for _, ct := range running[n] {
			if ct.Labels["persys.node"] != lost.NodeID {
				live++
			}
		}
		if live != 1 {
			c.t.Errorf("workload %s: %d running containers on live nodes, want 1", n, live)
		}
	}

	c.StartAgent(lost)
	c.WaitFor("node "+lost.NodeID+" READY again", 60*time.Second, func() (bool, string) {
		n, err := c.Node(lost.NodeID)
		if err != nil {
			return false, err.Error()
		}
		return n.GetState() == nodeReady, n.GetState().String()
	})
	c.WaitFor("stale containers on "+lost.NodeID+" collected", 60*time.Second, func() (bool, string) {
		running := c.RunningContainers()
		var dup []string
		for _, n := range names {
			if len(running[n]) != 1 {
				dup = append(dup, fmt.Sprintf("%s=%d", n, len(running[n])))
			}
		}
		return len(dup) == 0, strings.Join(dup, " ")
	})
	ws := c.waitAllRunning(names, 30*time.Second)
	c.checkContainers(ws, names)
	s := c.Observe(names)
	c.t.Log(s)
	if s.Nodes != 3 || s.Lost != 0 || s.Duplicated != 0 {
		c.t.Errorf("summary after the node's return %s, want nodes=3 lost=0 duplicated=0", s)
	}
}

// TestPartitionHeals: an agent cut off the network (docker network
// disconnect) looks like a lost node — NOT_READY, NODE_LOST — while it and
// its workloads keep running; reconnected, the node is READY again and
// the same containers are adopted, none started twice.
func TestPartitionHeals(t *testing.T) {
	c := Start(t, Options{Agents: 3, SchedulerFlags: []string{"--reschedule-grace", holdGrace.String()}})
	names := c.ApplyWorkloads("web", 3)
	ws := c.waitAllRunning(names, 60*time.Second)
	cut := c.Agents[0]
	mine := placement(ws)[cut.NodeID]
	if len(mine) == 0 {
		t.Fatalf("node %s runs nothing; placement %v", cut.NodeID, placement(ws))
	}
	ids := map[string]string{}
	for _, n := range mine {
		ids[n] = ws[n].GetStatus().GetRuntimeId()
	}
	agentStarted := c.AgentStartedAt(cut)

	c.Partition(cut)
	lostAfter := c.WaitFor("node "+cut.NodeID+" NOT_READY and NODE_LOST while partitioned", c.Opts.LeaseTTL+30*time.Second, func() (bool, string) {
		n, err := c.Node(cut.NodeID)
		if err != nil {
			return false, err.Error()
		}
		cur, err := c.Workloads()
		if err != nil {
			return false, err.Error()
		}
		var wrong []string
		for _, w := range mine {
			if st := cur[w].GetStatus(); st.GetReason() != persysv1.FailureReason_FAILURE_REASON_NODE_LOST {
				wrong = append(wrong, fmt.Sprintf("%s=%s/%s", w, st.GetState(), st.GetReason()))
			}
		}
		return n.GetState() == persysv1.NodeState_NODE_STATE_NOT_READY && len(wrong) == 0,
			fmt.Sprintf("node %s; %s", n.GetState(), strings.Join(wrong, " "))
	})
	t.Logf("partitioned node %s NOT_READY with NODE_LOST after %s", cut.NodeID, lostAfter.Round(time.Millisecond))
	if got := c.AgentStartedAt(cut); !got.Equal(agentStarted) {
		t.Fatalf("agent %s restarted during the partition (StartedAt %s → %s)", cut.NodeID, agentStarted, got)
	}

	c.Heal(cut)
	back := c.WaitFor("node "+cut.NodeID+" READY after healing", 60*time.Second, func() (bool, string) {
		n, err := c.Node(cut.NodeID)
		if err != nil {
			return false, err.Error()
		}
		return n.GetState() == nodeReady, n.GetState().String()
	})
	t.Logf("healed node %s READY after %s", cut.NodeID, back.Round(time.Millisecond))
	ws = c.waitAllRunning(names, 30*time.Second)
	for _, n := range mine {
		if got := ws[n].GetStatus(); got.GetNodeId() != cut.NodeID || got.GetRuntimeId() != ids[n] {
			t.Errorf("workload %s after healing: node %q runtime %q, want node %s runtime %s (the same container)",
				n, got.GetNodeId(), got.GetRuntimeId(), cut.NodeID, ids[n])
		}
	}
	c.checkContainers(ws, names)
	s := c.Observe(names)
	t.Log(s)
	if s.Nodes != 3 || s.Lost != 0 || s.Duplicated != 0 {
		t.Errorf("summary %s, want nodes=3 lost=0 duplicated=0", s)
	}
}
