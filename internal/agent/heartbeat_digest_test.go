package agent_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	persysv1 "github.com/persys-dev/compute/api/persys/v1"
	"github.com/persys-dev/compute/internal/agent"
	"github.com/persys-dev/compute/internal/runtime"
	"github.com/persys-dev/compute/internal/runtime/sim"
	"github.com/persys-dev/compute/internal/scheduler"
	"github.com/persys-dev/compute/internal/testutil/callrec"
	"github.com/persys-dev/compute/internal/testutil/eventually"
	"github.com/persys-dev/compute/internal/testutil/realsched"
)

// startSimAgent runs an agent on a fresh sim runtime against the env's
// scheduler.
func (e *env) startSimAgent(t *testing.T) (*runningAgent, *sim.Runtime) {
	t.Helper()
	rt, err := sim.New(sim.Options{Seed: 1})
	if err != nil {
		t.Fatal(err)
	}
	ra := e.startAgent(t, "", func(c *agent.Config) { c.Runtimes = []runtime.Runtime{rt} })
	return ra, rt
}

// digestEnv is a real scheduler that records the calls it answers, and
// an agent on a sim runtime registered with it. The scheduler's heartbeat
// interval is long, so every heartbeat the test waits for comes from a
// kick, a runtime watch event, a registration or a resend_full answer;
// its retries wait long, so a failed workload stays as the test left it.
type digestEnv struct {
	t    *testing.T // the test, not a subtest
	s    *realsched.Cluster
	rec  *callrec.Recorder
	e    *env
	ra   *runningAgent
	rt   *sim.Runtime
	addr string
}

func newDigestEnv(t *testing.T) *digestEnv {
	t.Helper()
	rec := &callrec.Recorder{}
	s := realsched.Start(t, realsched.Options{Nodes: []string{nodeID}, NoSecrets: true, ServerOptions: rec.ServerOptions(),
		Config: func(c *scheduler.Config) {
			c.HeartbeatInterval, c.LeaseTTL = 10*time.Minute, 30*time.Minute
			c.RetryBase, c.RetryMax = 10*time.Minute, 10*time.Minute
		}})
	d := &digestEnv{t: t, s: s, rec: rec, addr: s.Addrs[0]}
	d.e = &env{bundle: s.Bundle, addr: d.addr, sched: s, image: "app:1", prefix: randomPrefix()}
	d.ra, d.rt = d.e.startSimAgent(t)
	waitNodeCall(t, rec, d.addr, "RegisterNode")
	return d
}

// apply applies a workload through the scheduler, which places it on the
// agent's node.
func (d *digestEnv) apply(t *testing.T, name string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	defer cancel()
	if _, err := d.s.Admin(t).ApplyWorkload(ctx, &persysv1.ApplyRequest{Name: name, Spec: d.e.spec(100, 64*mib)}); err != nil {
		t.Fatal(err)
	}
}

// calls are the registrations and heartbeats the scheduler answered.
func (d *digestEnv) calls() []callrec.Call { return nodeCalls(d.rec, d.addr, true) }

// heartbeats are the heartbeats the scheduler answered, in order.
func (d *digestEnv) heartbeats() []callrec.Call {
	var out []callrec.Call
	for _, c := range d.calls() {
		if c.Method == "Heartbeat" {
			out = append(out, c)
		}
	}
	return out
}

// heartbeatAt waits for the answered heartbeat with index i.
func (d *digestEnv) heartbeatAt(t *testing.T, i int, what string) callrec.Call {
	t.Helper()
	eventually.Eventually(t, what, waitFor, func() (bool, string) {
		n := len(d.heartbeats())
		return n > i, fmt.Sprintf("%d heartbeats; calls %s", n, describeCalls(d.rec.Calls("")))
	})
	return d.heartbeats()[i]
}

func hbReq(c callrec.Call) *persysv1.HeartbeatRequest { return c.Request.(*persysv1.HeartbeatRequest) }

func hbResp(c callrec.Call) *persysv1.HeartbeatResponse {
	r, _ := c.Response.(*persysv1.HeartbeatResponse)
	return r
}

// kickUntil kicks the agent and waits for the next heartbeat, from index
// from on, until one satisfies ok (at most tries heartbeats); it returns
// that heartbeat and its index.
func (d *digestEnv) kickUntil(t *testing.T, from, tries int, what string, ok func(*persysv1.HeartbeatRequest) bool) (*persysv1.HeartbeatRequest, int) {
	t.Helper()
	for i := from; i < from+tries; i++ {
		d.ra.agent.Kick()
		if hb := hbReq(d.heartbeatAt(t, i, what)); ok(hb) {
			return hb, i
		}
	}
	t.Fatalf("no %s in %d heartbeats; calls %s", what, tries, describeCalls(d.rec.Calls("")))
	return nil, 0
}

func isDigestOnly(hb *persysv1.HeartbeatRequest) bool {
	return hb.GetDigestOnly() && len(hb.GetWorkloads()) == 0 && hb.GetReportDigest() != 0
}

// checkDigestsFollowFullLists checks every answered heartbeat: the first
// one on each control stream, after each registration and after an answer
// asking for the list is full; a digest-only one names the digest of the
// last list the scheduler acknowledged on the stream, and a delta comes
// only after one.
func (d *digestEnv) checkDigestsFollowFullLists(t *testing.T) {
	t.Helper()
	var last uint64 // digest of the last list acknowledged on this stream
	for i, c := range d.calls() {
		if c.Method == "RegisterNode" || c.Method == "Connect" {
			last = 0
			continue
		}
		req := hbReq(c)
		switch {
		case req.GetDigestOnly():
			if len(req.GetWorkloads()) != 0 || req.GetReportDigest() == 0 || req.GetReportDigest() != last {
				t.Errorf("call %d: digest-only with digest %#x and %d workloads; the last list acknowledged has digest %#x",
					i, req.GetReportDigest(), len(req.GetWorkloads()), last)
			}
		case req.GetDelta():
			if last == 0 || req.GetReportDigest() == 0 {
				t.Errorf("call %d: delta with digest %#x without a list acknowledged before", i, req.GetReportDigest())
			}
		}
		resp := hbResp(c)
		switch {
		case resp.GetResendFull() || resp.GetSendFullList() || resp.GetReregister():
			last = 0
		case resp.GetDigestKept() && !req.GetDigestOnly():
			last = req.GetReportDigest()
		case !req.GetDigestOnly():
			last = 0
		}
	}
}

func TestHeartbeatDigest(t *testing.T) {
	d := newDigestEnv(t)
	name := d.e.prefix + "-dg"
	d.apply(t, name)

	// A full list that names the workload running, then its digest alone.
	n := len(d.heartbeats())
	full, n := d.kickUntil(t, n, 10, "full list with the workload running", func(hb *persysv1.HeartbeatRequest) bool {
		return !hb.GetDigestOnly() && findWorkload(hb.GetWorkloads(), name).GetState() == persysv1.ActualState_ACTUAL_STATE_RUNNING
	})
	if full.GetReportDigest() == 0 {
		t.Fatalf("full heartbeat without a digest: %v", full)
	}
	hb, _ := d.kickUntil(t, n+1, 4, "digest-only heartbeat over the unchanged list", isDigestOnly)
	if hb.GetReportDigest() != full.GetReportDigest() || hb.GetUsage().GetMemoryBytes() != 64*mib {
		t.Fatalf("digest-only heartbeat %v: want digest %#x and the usage", hb, full.GetReportDigest())
	}

	t.Run("a change goes at once as a delta", func(t *testing.T) {
		n := len(d.heartbeats())
		d.rt.Kill(name) // the runtime's watch kicks the heartbeat
		var changed *persysv1.HeartbeatRequest
		eventually.Eventually(t, "a heartbeat with the failure", waitFor, func() (bool, string) {
			for _, c := range d.heartbeats()[n:] {
				if hb := hbReq(c); findWorkload(hb.GetWorkloads(), name).GetState() == persysv1.ActualState_ACTUAL_STATE_FAILED {
					changed = hb
					return true, ""
				}
			}
			return false, ""
		})
		if !changed.GetDelta() || len(changed.GetWorkloads()) != 1 || len(changed.GetRemoved()) != 0 ||
			changed.GetReportDigest() == full.GetReportDigest() {
			t.Fatalf("heartbeat with the change: delta %v, %d statuses, removed %v, digest %#x (was %#x); want a delta of one",
				changed.GetDelta(), len(changed.GetWorkloads()), changed.GetRemoved(), changed.GetReportDigest(), full.GetReportDigest())
		}
		hb, _ := d.kickUntil(t, len(d.heartbeats()), 4, "digest-only heartbeat after the change", isDigestOnly)
		if hb.GetReportDigest() != changed.GetReportDigest() {
			t.Fatalf("digest-only heartbeat after the change has digest %#x, want %#x", hb.GetReportDigest(), changed.GetReportDigest())
		}
	})

	t.Run("a new stream starts with the full list", func(t *testing.T) {
		hb, _ := d.kickUntil(t, len(d.heartbeats()), 4, "digest-only heartbeat", isDigestOnly)
		// A restarted scheduler holds no list of the node; the agent
		// opens its stream again. It serves until the whole test ends.
		connects := len(d.rec.Calls("Connect"))
		d.s.Stop(0)
		d.s.Restart(d.t)
		eventually.Eventually(t, "a new control stream", waitFor, func() (bool, string) {
			return len(d.rec.Calls("Connect")) > connects, ""
		})
		// The heartbeat interval is ten minutes: the first heartbeat on
		// the new stream comes without waiting for it.
		next, _ := d.kickUntil(t, len(d.heartbeats()), 4, "a full list on the new stream", func(r *persysv1.HeartbeatRequest) bool {
			return !r.GetDigestOnly() && !r.GetDelta()
		})
		if next.GetReportDigest() != hb.GetReportDigest() || findWorkload(next.GetWorkloads(), name) == nil {
			t.Fatalf("first heartbeat on the new stream: %v; want the full list with digest %#x", next, hb.GetReportDigest())
		}
	})

	t.Run("a registration starts with a full list", func(t *testing.T) {
		// Be sure the list is being sent as a digest before.
		d.kickUntil(t, len(d.heartbeats()), 4, "digest-only heartbeat", isDigestOnly)
		// The node's lease lapses (it is revoked, as etcd does once it
		// expires): the scheduler asks the node to register again.
		before := len(d.calls())
		if _, err := d.s.Store.GrantNodeLease(context.Background(), nodeID, time.Minute); err != nil {
			t.Fatal(err)
		}
		d.ra.agent.Kick()
		eventually.Eventually(t, "a registration", waitFor, func() (bool, string) {
			for _, c := range d.calls()[before:] {
				if c.Method == "RegisterNode" {
					return true, ""
				}
			}
			return false, ""
		})
		d.ra.agent.Kick()
		var first *persysv1.HeartbeatRequest
		eventually.Eventually(t, "the heartbeat after registering again", waitFor, func() (bool, string) {
			registered := false
			for _, c := range d.calls()[before:] {
				if c.Method == "RegisterNode" {
					registered = true
				} else if registered {
					first = hbReq(c)
					return true, ""
				}
			}
			return false, ""
		})
		if first.GetDigestOnly() || findWorkload(first.GetWorkloads(), name) == nil {
			t.Fatalf("first heartbeat after registering again: %v; want the full list", first)
		}
	})

	d.checkDigestsFollowFullLists(t)
}

// describeCalls sums calls up for a failure message.
func describeCalls(calls []callrec.Call) string {
	out := ""
	for _, c := range calls {
		out += fmt.Sprintf("\n  %s err=%v", c.Method, c.Err)
	}
	return out
}
