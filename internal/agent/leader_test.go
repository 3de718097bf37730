package agent_test

import (
	"fmt"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/persys-dev/compute/internal/agent"
	"github.com/persys-dev/compute/internal/pki"
	"github.com/persys-dev/compute/internal/runtime"
	"github.com/persys-dev/compute/internal/runtime/sim"
	"github.com/persys-dev/compute/internal/testutil/callrec"
	"github.com/persys-dev/compute/internal/testutil/eventually"
	"github.com/persys-dev/compute/internal/testutil/freeport"
	"github.com/persys-dev/compute/internal/testutil/realsched"
)

// withSchedulers makes the agent follow the leader among addrs.
func (e *env) withSchedulers(t *testing.T, addrs ...string) (func(*agent.Config), *agent.Schedulers) {
	t.Helper()
	clientTLS, err := pki.ClientTLS(e.bundle.Agents[nodeID], "")
	if err != nil {
		t.Fatal(err)
	}
	s, err := agent.DialSchedulers(addrs, clientTLS)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return func(c *agent.Config) { c.Channel, c.Schedulers = nil, s }, s
}

// metricValue returns the value of the counter or gauge name with labels,
// 0 when absent.
func metricValue(t *testing.T, reg *prometheus.Registry, name string, labels map[string]string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	metrics:
		for _, m := range mf.GetMetric() {
			got := map[string]string{}
			for _, lp := range m.GetLabel() {
				got[lp.GetName()] = lp.GetValue()
			}
			for k, v := range labels {
				if got[k] != v {
					continue metrics
				}
			}
			if c := m.GetCounter(); c != nil {
				return c.GetValue()
			}
			return m.GetGauge().GetValue()
		}
	}
	return 0
}

// nodeCalls returns the RegisterNode and Heartbeat calls that arrived at
// server, ok: only those answered without error.
func nodeCalls(rec *callrec.Recorder, server string, ok bool) []callrec.Call {
	var out []callrec.Call
	for _, c := range rec.Calls("") {
		if (c.Method == "RegisterNode" || c.Method == "Heartbeat") && c.Server == server && (c.Err == nil) == ok {
			out = append(out, c)
		}
	}
	return out
}

// waitNodeCall waits until server answered a call of method from the node
// without error.
func waitNodeCall(t *testing.T, rec *callrec.Recorder, server, method string) {
	t.Helper()
	eventually.Eventually(t, method+" answered by "+server, waitFor, func() (bool, string) {
		calls := nodeCalls(rec, server, true)
		for _, c := range calls {
			if c.Method == method {
				return true, ""
			}
		}
		return false, fmt.Sprintf("%d calls answered", len(calls))
	})
}

// TestAgentFollowsSchedulerLeader: two real schedulers elect a leader.
// The agent, given only the follower, reaches the leader through the
// follower's redirect; when the leader stops, it follows the new one.
func TestAgentFollowsSchedulerLeader(t *testing.T) {
	rec := &callrec.Recorder{}
	s := realsched.Start(t, realsched.Options{Replicas: 2, Nodes: []string{nodeID}, NoSecrets: true, Config: shortLeases,
		ServerOptions: rec.ServerOptions()})
	li := s.Leader(t)
	leader, follower := s.Addrs[li], s.Addrs[1-li]
	e := &env{bundle: s.Bundle, addr: follower, sched: s, image: "app:1", prefix: randomPrefix()}
	opt, scheds := e.withSchedulers(t, follower)
	rt, err := sim.New(sim.Options{Seed: 1})
	if err != nil {
		t.Fatal(err)
	}
	ra := e.startAgent(t, "", opt, func(c *agent.Config) { c.Runtimes = []runtime.Runtime{rt} })

	waitNodeCall(t, rec, leader, "Heartbeat")
	if got := scheds.Leader(); got != leader {
		t.Fatalf("Leader() = %s, want %s", got, leader)
	}
	// The follower refuses the control stream, naming the leader, before
	// its hello (and the registration in it) is read.
	refused := 0
	for _, c := range rec.Calls("Connect") {
		if c.Server == follower && status.Code(c.Err) == codes.FailedPrecondition {
			refused++
		}
	}
	if accepted := nodeCalls(rec, follower, true); refused == 0 || len(accepted) != 0 {
		t.Fatalf("follower: %d streams refused, %d calls accepted; want ≥1 and 0", refused, len(accepted))
	}
	if calls := nodeCalls(rec, leader, true); calls[0].Method != "RegisterNode" {
		t.Fatalf("the leader answered %s first, want a registration", calls[0].Method)
	}

	t.Run("the leader stops and the agent follows the new one", func(t *testing.T) {
		s.Stop(li)
		waitNodeCall(t, rec, follower, "Heartbeat")
		if got := scheds.Leader(); got != follower {
			t.Fatalf("Leader() = %s, want %s", got, follower)
		}
		if got := metricValue(t, ra.registry, "persys_agent_scheduler_leader_changes_total", nil); got < 1 {
			t.Fatalf("leader changes counted %v, want ≥1", got)
		}
		eventually.Eventually(t, "the agent ready", waitFor, func() (bool, string) {
			if err := ra.agent.Ready(); err != nil {
				return false, err.Error()
			}
			return true, ""
		})
	})
}

// TestAgentTriesTheNextSchedulerWithoutHint: the first listed scheduler is
// down (no answer, no hint): the agent moves on to the next one, a real
// scheduler, after its backoff.
func TestAgentTriesTheNextSchedulerWithoutHint(t *testing.T) {
	rec := &callrec.Recorder{}
	s := realsched.Start(t, realsched.Options{Nodes: []string{nodeID}, NoSecrets: true, Config: shortLeases, ServerOptions: rec.ServerOptions()})
	e := &env{bundle: s.Bundle, addr: s.Addrs[0], sched: s, image: "app:1", prefix: randomPrefix()}
	down := freeport.Addr(t, "127.0.0.1")
	opt, scheds := e.withSchedulers(t, down, s.Addrs[0])
	rt, err := sim.New(sim.Options{Seed: 1})
	if err != nil {
		t.Fatal(err)
	}
	e.startAgent(t, "", opt, func(c *agent.Config) { c.Runtimes = []runtime.Runtime{rt} })

	waitNodeCall(t, rec, s.Addrs[0], "RegisterNode")
	waitNodeCall(t, rec, s.Addrs[0], "Heartbeat")
	if got := scheds.Leader(); got != s.Addrs[0] {
		t.Fatalf("Leader() = %s, want %s", got, s.Addrs[0])
	}
}
