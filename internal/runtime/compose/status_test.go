package compose

import (
	"strings"
	"testing"

	"github.com/docker/compose/v5/pkg/api"
	"github.com/moby/moby/api/types/container"

	persysv1 "github.com/persys-dev/compute/api/persys/v1"
	"github.com/persys-dev/compute/internal/runtime"
)

// A project whose service was created and never started (a crash between
// create and start, or between two services) is stopped while it should
// run, naming the service: never RUNNING, as when a created container
// counted as a one-shot service that had finished. One that exited 0 on
// its own still does not hold the project back.
func TestStatusOfAServiceNeverStarted(t *testing.T) {
	st := &state{Name: "w", UID: "u1", Revision: 2, Desired: desiredRun, Project: "p", Replicas: map[string]int{"web": 1, "api": 1, "init": 1}}
	ctr := func(svc string, state container.ContainerState, status string) container.Summary {
		return container.Summary{ID: svc + "-id", Names: []string{"/p-" + svc + "-1"}, State: state, Status: status,
			Labels: map[string]string{api.ServiceLabel: svc, runtime.LabelUID: "u1", api.ProjectLabel: "p"}}
	}
	r := &Runtime{}
	running, oneShot := ctr("web", container.StateRunning, "Up 2 seconds"), ctr("init", container.StateExited, "Exited (0) 1 second ago")

	ws := r.buildStatus("w", st, []container.Summary{running, oneShot, ctr("api", container.StateCreated, "Created")})
	if ws.GetState() != persysv1.ActualState_ACTUAL_STATE_STOPPED || !strings.Contains(ws.GetMessage(), "api") || !strings.Contains(ws.GetMessage(), "created, never started") {
		t.Fatalf("web running, api created: %s %q, want STOPPED naming api as never started", ws.GetState(), ws.GetMessage())
	}
	ws = r.buildStatus("w", st, []container.Summary{running, oneShot, ctr("api", container.StateRunning, "Up 1 second")})
	if ws.GetState() != persysv1.ActualState_ACTUAL_STATE_RUNNING {
		t.Fatalf("all started (init finished on its own): %s %q, want RUNNING", ws.GetState(), ws.GetMessage())
	}
	st.Desired = desiredStop
	ws = r.buildStatus("w", st, []container.Summary{ctr("web", container.StateCreated, "Created")})
	if ws.GetState() != persysv1.ActualState_ACTUAL_STATE_STOPPED || strings.Contains(ws.GetMessage(), "created, never started") {
		t.Fatalf("desired stopped, created: %s %q, want STOPPED without blame", ws.GetState(), ws.GetMessage())
	}
}
