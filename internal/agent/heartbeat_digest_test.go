package agent_test

import (
	"testing"

	persysv1 "github.com/persys-dev/compute/api/persys/v1"
	"github.com/persys-dev/compute/internal/agent"
	"github.com/persys-dev/compute/internal/runtime"
	"github.com/persys-dev/compute/internal/runtime/sim"
)

const fullResends = "persys_agent_heartbeat_full_resends_total"

// startSimAgent runs an agent on a fresh sim runtime against the env's
// control server. Its heartbeat interval is long: every heartbeat the test
// waits for comes from a kick, a runtime watch event, a registration or a
// resend_full answer.
func (e *env) startSimAgent(t *testing.T) (*runningAgent, *sim.Runtime) {
	t.Helper()
	rt, err := sim.New(sim.Options{Seed: 1})
	if err != nil {
		t.Fatal(err)
	}
	ra := e.startAgent(t, "", func(c *agent.Config) { c.Runtimes = []runtime.Runtime{rt} })
	return ra, rt
}

// kickUntil kicks the agent and waits for the next heartbeat, from index
// from on, until one satisfies ok (at most tries heartbeats); it returns
// that heartbeat and its index.
func (c *recordingControl) kickUntil(t *testing.T, ra *runningAgent, from, tries int, what string, ok func(*persysv1.HeartbeatRequest) bool) (*persysv1.HeartbeatRequest, int) {
	t.Helper()
	for i := from; i < from+tries; i++ {
		ra.agent.Kick()
		hb := c.heartbeatAt(t, i, what)
		if ok(hb) {
			return hb, i
		}
	}
	t.Fatalf("no %s in %d heartbeats", what, tries)
	return nil, 0
}

// heartbeatAt waits for the heartbeat with index i.
func (c *recordingControl) heartbeatAt(t *testing.T, i int, what string) *persysv1.HeartbeatRequest {
	t.Helper()
	var got *persysv1.HeartbeatRequest
	c.wait(t, what, func() bool {
		if len(c.heartbeats) > i {
			got = c.heartbeats[i]
			return true
		}
		return false
	})
	return got
}

// heartbeatsBefore counts the heartbeats accepted before registration
// number reg (0-based): the index of the first heartbeat after it.
func (c *recordingControl) heartbeatsBefore(reg int) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	hb, r := 0, 0
	for _, call := range c.calls {
		if call == "register" {
			if r == reg {
				break
			}
			r++
			continue
		}
		hb++
	}
	return hb
}

func isDigestOnly(hb *persysv1.HeartbeatRequest) bool {
	return hb.GetDigestOnly() && len(hb.GetWorkloads()) == 0 && hb.GetReportDigest() != 0
}

// checkDigestsFollowFullLists checks every recorded heartbeat: a
// digest-only one names the digest of the last full list sent since the
// latest registration, and the heartbeat after a resend_full answer is
// full.
func (c *recordingControl) checkDigestsFollowFullLists(t *testing.T) {
	t.Helper()
	c.mu.Lock()
	defer c.mu.Unlock()
	var last uint64 // digest of the last full list on this registration
	hb := 0
	for _, call := range c.calls {
		if call == "register" {
			last = 0
			continue
		}
		req := c.heartbeats[hb]
		if req.GetDigestOnly() {
			if len(req.GetWorkloads()) != 0 || req.GetReportDigest() == 0 || req.GetReportDigest() != last {
				t.Errorf("heartbeat %d: digest-only with digest %#x and %d workloads; the last full list since registration has digest %#x",
					hb, req.GetReportDigest(), len(req.GetWorkloads()), last)
			}
			if c.resent >= 0 && hb == c.resent+1 {
				t.Errorf("heartbeat %d follows a resend_full answer and is digest-only", hb)
			}
		} else {
			last = req.GetReportDigest()
		}
		hb++
	}
}

func TestHeartbeatDigest(t *testing.T) {
	control := &recordingControl{keepDigests: true, resent: -1}
	e := newBareEnv(t, control)
	ra, rt := e.startSimAgent(t)
	control.waitRegister(t, 0)
	name := e.prefix + "-dg"
	st := apply(t, ra.client, &persysv1.ApplyWorkloadRequest{Name: name, Uid: "uid-dg", Revision: 1, Spec: e.spec(100, 64*mib)}).GetStatus()
	if st.GetState() != persysv1.ActualState_ACTUAL_STATE_RUNNING {
		t.Fatalf("apply = %v", st)
	}

	// A full list that names the workload, then its digest alone.
	_, n := control.counts()
	full, n := control.kickUntil(t, ra, n, 4, "full list with the workload", func(hb *persysv1.HeartbeatRequest) bool {
		return !hb.GetDigestOnly() && findWorkload(hb.GetWorkloads(), name).GetState() == persysv1.ActualState_ACTUAL_STATE_RUNNING
	})
	if full.GetReportDigest() == 0 {
		t.Fatalf("full heartbeat without a digest: %v", full)
	}
	hb, _ := control.kickUntil(t, ra, n+1, 4, "digest-only heartbeat over the unchanged list", isDigestOnly)
	if hb.GetReportDigest() != full.GetReportDigest() || hb.GetUsage().GetMemoryBytes() != 64*mib {
		t.Fatalf("digest-only heartbeat %v: want digest %#x and the usage", hb, full.GetReportDigest())
	}

	t.Run("a change goes as a full list at once", func(t *testing.T) {
		_, n := control.counts()
		rt.Kill(name) // the runtime's watch kicks the heartbeat
		changed := control.waitHeartbeat(t, n, "a heartbeat with the failure", func(hb *persysv1.HeartbeatRequest) bool {
			return findWorkload(hb.GetWorkloads(), name).GetState() == persysv1.ActualState_ACTUAL_STATE_FAILED
		})
		if changed.GetDigestOnly() || changed.GetReportDigest() == full.GetReportDigest() {
			t.Fatalf("heartbeat with the change: digest_only %v, digest %#x (was %#x)", changed.GetDigestOnly(),
				changed.GetReportDigest(), full.GetReportDigest())
		}
		_, n = control.counts()
		hb, _ := control.kickUntil(t, ra, n, 4, "digest-only heartbeat after the change", isDigestOnly)
		if hb.GetReportDigest() != changed.GetReportDigest() {
			t.Fatalf("digest-only heartbeat after the change has digest %#x, want %#x", hb.GetReportDigest(), changed.GetReportDigest())
		}
	})

	t.Run("resend_full brings the full list without waiting", func(t *testing.T) {
		control.mu.Lock()
		control.resendOnce = true
		control.mu.Unlock()
		_, n := control.counts()
		hb, i := control.kickUntil(t, ra, n, 4, "digest-only heartbeat", isDigestOnly)
		// The heartbeat interval is ten minutes and this does not kick:
		// the answer alone brings the next heartbeat.
		next := control.heartbeatAt(t, i+1, "the heartbeat after resend_full")
		control.mu.Lock()
		resent := control.resent
		control.mu.Unlock()
		if resent != i {
			t.Fatalf("resend_full answered heartbeat %d, want %d", resent, i)
		}
		if next.GetDigestOnly() || next.GetReportDigest() != hb.GetReportDigest() || findWorkload(next.GetWorkloads(), name) == nil {
			t.Fatalf("heartbeat after resend_full: %v; want the full list with digest %#x", next, hb.GetReportDigest())
		}
		if got := metricValue(t, ra.registry, fullResends, nil); got != 1 {
			t.Fatalf("%s = %v, want 1", fullResends, got)
		}
	})

	t.Run("a registration starts with a full list", func(t *testing.T) {
		// Be sure the list is being sent as a digest before.
		_, n := control.counts()
		control.kickUntil(t, ra, n, 4, "digest-only heartbeat", isDigestOnly)
		control.mu.Lock()
		control.reregister = true
		regs := len(control.registers)
		control.mu.Unlock()
		_, n = control.counts()
		control.kickUntil(t, ra, n, 1, "heartbeat", func(*persysv1.HeartbeatRequest) bool { return true })
		control.waitRegister(t, regs)
		i := control.heartbeatsBefore(regs)
		ra.agent.Kick()
		hb := control.heartbeatAt(t, i, "the heartbeat after registering again")
		if hb.GetDigestOnly() || findWorkload(hb.GetWorkloads(), name) == nil {
			t.Fatalf("first heartbeat after registering again: %v; want the full list", hb)
		}
	})

	control.checkDigestsFollowFullLists(t)
}

// A scheduler that never says it kept the digest gets full lists only: it
// would read an empty list as a node that runs nothing.
func TestHeartbeatFullListsWithoutDigestKept(t *testing.T) {
	control := &recordingControl{}
	e := newBareEnv(t, control)
	ra, _ := e.startSimAgent(t)
	control.waitRegister(t, 0)
	name := e.prefix + "-nd"
	apply(t, ra.client, &persysv1.ApplyWorkloadRequest{Name: name, Uid: "uid-nd", Revision: 1, Spec: e.spec(100, 64*mib)})
	_, n := control.counts()
	for i := 0; i < 5; i++ {
		if hb, _ := control.kickUntil(t, ra, n+i, 1, "heartbeat", func(*persysv1.HeartbeatRequest) bool { return true }); hb.GetDigestOnly() {
			t.Fatalf("heartbeat %d is digest-only although the scheduler never kept a digest: %v", n+i, hb)
		}
	}
}
