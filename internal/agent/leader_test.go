package agent_test

import (
	"net"
	"slices"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	persysv1 "github.com/persys-dev/compute/api/persys/v1"
	"github.com/persys-dev/compute/internal/agent"
	"github.com/persys-dev/compute/internal/pki"
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
	return func(c *agent.Config) { c.Control, c.Schedulers = nil, s }, s
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

func anyHeartbeat(*persysv1.HeartbeatRequest) bool { return true }

// callsOf returns a copy of the calls the control accepted.
func (c *recordingControl) callsOf() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.calls)
}

func TestAgentFollowsSchedulerLeader(t *testing.T) {
	// B leads; A is a follower that names B. Only A is listed, so the
	// agent reaches B through the hint alone.
	b := &recordingControl{intervalMs: 50}
	e := newEnv(t, b)
	a := &recordingControl{intervalMs: 50}
	aAddr := e.serveControl(t, a)
	a.setLeader(e.addr)
	opt, scheds := e.withSchedulers(t, aAddr)
	ra := e.startAgent(t, "", opt)

	b.waitRegister(t, 0)
	b.waitHeartbeat(t, 0, "a heartbeat on the leader", anyHeartbeat)
	if got := scheds.Leader(); got != e.addr {
		t.Fatalf("Leader() = %s, want %s", got, e.addr)
	}
	a.mu.Lock()
	aRedirected, aRegisters := a.redirected, len(a.registers)
	a.mu.Unlock()
	if aRedirected == 0 || aRegisters != 0 {
		t.Fatalf("follower A: %d calls redirected, %d registrations accepted; want ≥1 and 0", aRedirected, aRegisters)
	}
	if calls := b.callsOf(); calls[0] != "register" {
		t.Fatalf("leader B saw %v first, want a registration", calls)
	}

	t.Run("leadership moves and the agent registers with the new leader", func(t *testing.T) {
		a.setLeader("")
		b.setLeader(aAddr)
		a.waitHeartbeat(t, 0, "a heartbeat on the new leader A", anyHeartbeat)
		calls := a.callsOf()
		if calls[0] != "register" {
			t.Fatalf("new leader A saw %v, want a registration before any heartbeat", calls)
		}
		reg := a.waitRegister(t, 0)
		if reg.GetNodeId() != nodeID || reg.GetAddress() != ra.addr {
			t.Fatalf("registration on A = %v", reg)
		}
		if got := scheds.Leader(); got != aAddr {
			t.Fatalf("Leader() = %s, want %s", got, aAddr)
		}
		if got := metricValue(t, ra.registry, "persys_agent_scheduler_leader_changes_total", nil); got < 1 {
			t.Fatalf("leader changes counted %v, want ≥1", got)
		}
		if err := ra.agent.Ready(); err != nil {
			t.Fatalf("Ready: %v", err)
		}
	})
}

func TestAgentTriesTheNextSchedulerWithoutHint(t *testing.T) {
	// The first listed scheduler is down (Unavailable, no hint): the agent
	// moves on to the next one after its backoff.
	b := &recordingControl{intervalMs: 50}
	e := newEnv(t, b)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	down := ln.Addr().String()
	_ = ln.Close()
	opt, scheds := e.withSchedulers(t, down, e.addr)
	e.startAgent(t, "", opt)

	b.waitRegister(t, 0)
	b.waitHeartbeat(t, 0, "a heartbeat on the second scheduler", anyHeartbeat)
	if got := scheds.Leader(); got != e.addr {
		t.Fatalf("Leader() = %s, want %s", got, e.addr)
	}
}

func TestAgentSurvivesFollowersNamingEachOther(t *testing.T) {
	b := &recordingControl{intervalMs: 50}
	e := newEnv(t, b)
	a := &recordingControl{intervalMs: 50}
	aAddr := e.serveControl(t, a)
	a.setLeader(e.addr)
	b.setLeader(aAddr)
	opt, _ := e.withSchedulers(t, aAddr, e.addr)
	ra := e.startAgent(t, "", opt)

	// Both refuse, naming each other: the agent keeps retrying with
	// backoff and is not ready.
	b.wait(t, "two refusals on each follower", func() bool { return b.redirected >= 2 })
	a.wait(t, "two refusals on each follower", func() bool { return a.redirected >= 2 })
	if err := ra.agent.Ready(); err == nil {
		t.Fatal("Ready while no scheduler accepted the node")
	}
	// B wins the election.
	b.setLeader("")
	b.waitRegister(t, 0)
	b.waitHeartbeat(t, 0, "a heartbeat on the leader", anyHeartbeat)
}
