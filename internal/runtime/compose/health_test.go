package compose

import (
	"fmt"
	"testing"
	"time"

	"github.com/docker/compose/v5/pkg/api"
	"github.com/moby/moby/api/types/container"

	persysv1 "github.com/persys-dev/compute/api/persys/v1"
	"github.com/persys-dev/compute/internal/runtime"
)

// TestComposeHealthcheck: the compose file's own healthcheck, run by
// Docker, decides whether the workload is ready. (A service that never
// turns healthy fails the apply itself: compose up waits for it.)
func TestComposeHealthcheck(t *testing.T) {
	h := newHarness(t)
	ctx := ctxT(t)
	name := "health-" + randSuffix(t)
	// hello's "exit CODE" mode is a check that exits with CODE.
	file := fmt.Sprintf(`services:
  good:
    image: %[1]s
    healthcheck: {test: ["CMD", "/hello", "exit", "0"], interval: 1s, timeout: 5s, retries: 1}
  plain:
    image: %[1]s
`, h.hello)
	if _, _, err := h.rt.Apply(ctx, inst(name, "u", 1, &persysv1.WorkloadSpec{Compose: &persysv1.ComposeSpec{Inline: file}})); err != nil {
		t.Fatalf("Apply: %v", err)
	}
	var ws *persysv1.WorkloadStatus
	eventually(t, time.Minute, "ready", func() (bool, string) {
		var err error
		ws, err = h.rt.Status(ctx, name)
		if err != nil {
			return false, err.Error()
		}
		return ws.GetReady(), fmt.Sprintf("%s ready=%v health %s, good %s", ws.GetState(), ws.GetReady(), ws.GetHealth(), service(ws, "good").GetHealth())
	})
	if ws.GetState() != persysv1.ActualState_ACTUAL_STATE_RUNNING || ws.GetHealth() != persysv1.HealthState_HEALTH_STATE_HEALTHY ||
		service(ws, "good").GetHealth() != persysv1.HealthState_HEALTH_STATE_HEALTHY {
		t.Fatalf("workload %s health %s, good %s: want RUNNING and HEALTHY", ws.GetState(), ws.GetHealth(), service(ws, "good").GetHealth())
	}
	if p := service(ws, "plain"); p.GetHealth() != persysv1.HealthState_HEALTH_STATE_UNSPECIFIED {
		t.Fatalf("service without a healthcheck has health %s", p.GetHealth())
	}
}

// TestComposeNeverHealthy: a service whose healthcheck never passes fails
// the apply (compose up waits for it) with HEALTH_CHECK_FAILED, a failed
// attempt the retry engine counts as it counts a liveness failure.
func TestComposeNeverHealthy(t *testing.T) {
	h := newHarness(t)
	name := "sick-" + randSuffix(t)
	file := fmt.Sprintf(`services:
  sick:
    image: %s
    healthcheck: {test: ["CMD", "/hello", "exit", "1"], interval: 1s, timeout: 5s, retries: 1}
`, h.hello)
	_, _, err := h.rt.Apply(ctxT(t), inst(name, "u", 1, &persysv1.WorkloadSpec{Compose: &persysv1.ComposeSpec{Inline: file}}))
	if err == nil {
		t.Fatal("Apply of a service that never turns healthy succeeded")
	}
	if r := runtime.ReasonOf(err); r != persysv1.FailureReason_FAILURE_REASON_HEALTH_CHECK_FAILED {
		t.Fatalf("Apply failed with %s (%v), want HEALTH_CHECK_FAILED", r, err)
	}
}

// TestComposeHealthSums: the workload takes its services' worst health and
// is ready only while it runs and each service with a healthcheck is
// healthy.
func TestComposeHealthSums(t *testing.T) {
	ctr := func(svc, status string) container.Summary {
		return container.Summary{ID: svc + status, State: container.StateRunning, Status: status,
			Labels: map[string]string{api.ServiceLabel: svc, labelReplicas: "1"}}
	}
	tests := []struct {
		name   string
		ctrs   []container.Summary
		health persysv1.HealthState
		ready  bool
	}{
		{"no healthchecks: the agent decides", []container.Summary{ctr("a", "Up 1 second")}, persysv1.HealthState_HEALTH_STATE_UNSPECIFIED, false},
		{"all healthy", []container.Summary{ctr("a", "Up (healthy)"), ctr("b", "Up")}, persysv1.HealthState_HEALTH_STATE_HEALTHY, true},
		{"one starting", []container.Summary{ctr("a", "Up (healthy)"), ctr("b", "Up (health: starting)")}, persysv1.HealthState_HEALTH_STATE_STARTING, false},
		{"one unhealthy", []container.Summary{ctr("a", "Up (unhealthy)"), ctr("b", "Up (health: starting)")}, persysv1.HealthState_HEALTH_STATE_UNHEALTHY, false},
	}
	r := &Runtime{}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ws := r.buildStatus("w", nil, tc.ctrs)
			if ws.GetState() != persysv1.ActualState_ACTUAL_STATE_RUNNING || ws.GetHealth() != tc.health || ws.GetReady() != tc.ready {
				t.Fatalf("%s health %s ready %v, want RUNNING %s ready %v", ws.GetState(), ws.GetHealth(), ws.GetReady(), tc.health, tc.ready)
			}
		})
	}
}

func TestContainerHealth(t *testing.T) {
	tests := []struct {
		c    container.Summary
		want persysv1.HealthState
	}{
		{container.Summary{Status: "Up 3 seconds (healthy)"}, persysv1.HealthState_HEALTH_STATE_HEALTHY},
		{container.Summary{Status: "Up 3 seconds (unhealthy)"}, persysv1.HealthState_HEALTH_STATE_UNHEALTHY},
		{container.Summary{Status: "Up 1 second (health: starting)"}, persysv1.HealthState_HEALTH_STATE_STARTING},
		{container.Summary{Status: "Up 3 seconds"}, persysv1.HealthState_HEALTH_STATE_UNSPECIFIED},
		{container.Summary{Status: "Up (unhealthy)", Health: &container.HealthSummary{Status: container.Healthy}}, persysv1.HealthState_HEALTH_STATE_HEALTHY},
		{container.Summary{Health: &container.HealthSummary{Status: container.NoHealthcheck}}, persysv1.HealthState_HEALTH_STATE_UNSPECIFIED},
	}
	for _, tc := range tests {
		if got := containerHealth(tc.c); got != tc.want {
			t.Errorf("containerHealth(%q, %v) = %s, want %s", tc.c.Status, tc.c.Health, got, tc.want)
		}
	}
}
