package crash

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/moby/moby/client"

	persysv1 "github.com/persys-dev/compute/api/persys/v1"
	pclient "github.com/persys-dev/compute/internal/client"
	"github.com/persys-dev/compute/internal/testutil/images"
	"github.com/persys-dev/compute/internal/testutil/privatedocker"
)

// TestDockerEngineFaults: the Docker engine under the node is restarted
// (SIGTERM: it stops every container) or killed (SIGKILL, with its
// containerd) while workloads run, or right after an apply the agent is
// carrying out. The engine is a private one (internal/testutil/
// privatedocker) so the machine's engine, which other packages use at the
// same time, is left alone. persys dev itself keeps running. The cluster
// must converge as after a crash: every workload RUNNING once at its
// revision, a container the engine stopped counted as a failed attempt
// with its reason, and nothing left after delete.
func TestDockerEngineFaults(t *testing.T) {
	cases := []struct {
		name     string
		kill     bool
		inFlight bool
	}{
		{"engine/restart-running", false, false},
		{"engine/restart-during-apply", false, true},
		{"engine/kill-running", true, false},
		{"engine/kill-during-apply", true, true},
	}
	host, image := images.HelloImage(t)
	for _, tc := range cases {
		t.Run(strings.ReplaceAll(tc.name, "/", "-"), func(t *testing.T) {
			r := row{point: tc.name}
			defer func() { record(r) }()
			engine := privatedocker.Start(t, host, image)
			d := newDevOn(t, engine.Client, engine.Host, image)
			d.start("")
			want := map[string]string{}
			for _, n := range []string{"w1", "w2", "w3"} {
				d.mustCtl("apply", "-f", d.manifest(n, "one"), "--wait", "--timeout", "90s")
				want[n] = "one"
			}
			if tc.inFlight {
				d.mustCtl("apply", "-f", d.manifest("w4", "one"))
				want["w4"] = "one"
			}
			before := d.started([]string{"w1", "w2", "w3"})
			faultAt := time.Now()
			if tc.kill {
				engine.Kill()
			} else {
				engine.Restart()
			}
			d.waitConverged(want)
			d.waitFaultAccounted(before)
			r.converged, r.seconds = true, time.Since(faultAt).Seconds()
			d.checkAndDeleteAll(&r, want, "")
		})
	}
}

// started maps each of names to its one container's id and start time.
func (d *dev) started(names []string) map[string]string {
	d.t.Helper()
	m := map[string]string{}
	for _, n := range names {
		m[n] = d.startMark(n)
	}
	return m
}

// startMark is "id@start time" of workload n's one running container
// ("" when it has none or several).
func (d *dev) startMark(n string) string {
	ids := d.containers(n)
	if len(ids) != 1 {
		return ""
	}
	res, err := d.docker.ContainerInspect(context.Background(), ids[0], client.ContainerInspectOptions{})
	if err != nil || res.Container.State == nil || !res.Container.State.Running {
		return ""
	}
	return ids[0] + "@" + res.Container.State.StartedAt
}

// waitFaultAccounted waits until each workload of before runs in one
// container again and, unless that is the very container that ran before
// the fault (the engine let it live), the scheduler has counted the
// failure: an AttemptFailed event with an enum reason. A restart without
// one would be a silent retry.
func (d *dev) waitFaultAccounted(before map[string]string) {
	d.t.Helper()
	d.waitFor("the engine fault accounted for", convergeBound, func(c *pclient.Client) (bool, string) {
		for n, mark := range before {
			now := d.startMark(n)
			if now == "" {
				return false, n + " has no single running container"
			}
			if now == mark {
				continue
			}
			v, err := c.GetWorkload(context.Background(), n, true)
			if err != nil {
				return false, err.Error()
			}
			if _, ok := failureSeen(v); !ok {
				return false, fmt.Sprintf("%s was started again with no failure counted (events %s)", n, eventTypes(v))
			}
		}
		return true, ""
	})
	for n, mark := range before {
		d.t.Logf("%s: container kept through the fault: %v", n, d.startMark(n) == mark)
	}
}

// failureSeen reports the reason of an AttemptFailed event of the view.
func failureSeen(v *persysv1.WorkloadView) (string, bool) {
	for _, e := range v.GetEvents() {
		if e.GetType() == "AttemptFailed" && e.GetReason() != persysv1.FailureReason_FAILURE_REASON_UNSPECIFIED {
			return e.GetReason().String(), true
		}
	}
	return "", false
}

func eventTypes(v *persysv1.WorkloadView) string {
	var b strings.Builder
	for _, e := range v.GetEvents() {
		fmt.Fprintf(&b, "%s(%s) ", e.GetType(), e.GetReason())
	}
	return b.String()
}
