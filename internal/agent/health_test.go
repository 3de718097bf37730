package agent_test

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"github.com/moby/moby/client"

	"github.com/persys-dev/compute/internal/agent"

	persysv1 "github.com/persys-dev/compute/api/persys/v1"
	"github.com/persys-dev/compute/internal/testutil/eventually"
)

// healthSpec is the hello container with port 8080 declared and the
// given checks.
func (e *env) healthSpec(startup, liveness, readiness *persysv1.HealthCheck) *persysv1.WorkloadSpec {
	s := e.spec(100, 64*mib)
	s.Container.Ports = []*persysv1.PortMapping{{ContainerPort: 8080, Protocol: "tcp"}}
	s.StartupCheck, s.LivenessCheck, s.ReadinessCheck = startup, liveness, readiness
	return s
}

func httpCheck(path string) *persysv1.HealthCheck {
	return &persysv1.HealthCheck{Type: persysv1.HealthCheckType_HEALTH_CHECK_TYPE_HTTP, Path: path, Port: 8080,
		IntervalSeconds: 1, FailureThreshold: 1}
}

// startupCheck passes once hello serves.
func startupCheck() *persysv1.HealthCheck {
	hc := httpCheck("/healthz")
	hc.FailureThreshold = 60
	return hc
}

func execCheck(argv ...string) *persysv1.HealthCheck {
	return &persysv1.HealthCheck{Type: persysv1.HealthCheckType_HEALTH_CHECK_TYPE_EXEC, Command: argv,
		IntervalSeconds: 10, FailureThreshold: 1, TimeoutSeconds: 10}
}

// listed returns the agent's report of name; listing is also what starts
// the health checks of what runs.
func listed(t *testing.T, ra *runningAgent, name string) *persysv1.WorkloadStatus {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	defer cancel()
	resp, err := ra.client.ListWorkloads(ctx, &persysv1.ListAgentWorkloadsRequest{})
	if err != nil {
		t.Fatalf("ListWorkloads: %v", err)
	}
	return findWorkload(resp.GetWorkloads(), name)
}

func describe(st *persysv1.WorkloadStatus) string {
	return fmt.Sprintf("%s/%s ready=%v health=%s %s: %q (%s)", st.GetState(), st.GetReason(), st.GetReady(),
		st.GetHealth(), st.GetHealthCheck(), st.GetHealthOutput(), st.GetMessage())
}

// TestHealthChecksWithDocker runs each kind of check against hello
// containers on the real engine, applied through a real scheduler.
func TestHealthChecksWithDocker(t *testing.T) {
	r := newDockerEnv(t, nil)
	c := &healthCase{r: r, e: r.env, ra: r.env.startAgent(t, t.TempDir())}
	t.Run("an http readiness check that passes makes the workload ready", c.passingReadiness)
	t.Run("an http readiness check that fails leaves it running and not ready", c.failingReadiness)
	t.Run("a workload without checks is ready while it runs", c.noChecks)
	t.Run("an exec check runs in the container", c.execInContainer)
	t.Run("a liveness failure stops the container and reports HEALTH_CHECK_FAILED until an apply replaces it", c.livenessFailure)
	t.Run("delete stops the checks", c.deleteStops)
	t.Run("the checks end with the agent", c.endWithAgent)
}

// healthCase is what the steps of TestHealthChecksWithDocker share.
type healthCase struct {
	r  *realEnv
	e  *env
	ra *runningAgent
}

// run applies spec as workload prefix-suffix through the scheduler and
// waits until the agent runs it.
func (c *healthCase) run(t *testing.T, suffix string, spec *persysv1.WorkloadSpec) string {
	t.Helper()
	name := c.e.prefix + "-" + suffix
	c.r.apply(t, name, spec)
	waitAgentState(t, c.ra, name, "running", func(st *persysv1.WorkloadStatus) bool {
		return st.GetState() == persysv1.ActualState_ACTUAL_STATE_RUNNING
	})
	return name
}

// passingReadiness: an http readiness check that passes makes the workload ready.
func (c *healthCase) passingReadiness(t *testing.T) {
	name := c.run(t, "ready", c.e.healthSpec(nil, nil, httpCheck("/healthz")))
	eventually.Eventually(t, "ready", waitFor, func() (bool, string) {
		st := listed(t, c.ra, name)
		return st.GetReady() && st.GetHealth() == persysv1.HealthState_HEALTH_STATE_HEALTHY &&
			st.GetHealthOutput() == "HTTP 200: ok" && st.GetHealthCheck() == "readiness" && st.GetHealthCheckedAt() != nil, describe(st)
	})
	if n := metricValue(t, c.ra.registry, "persys_agent_health_checks_total",
		map[string]string{"check": "readiness", "type": "HTTP", "result": "pass"}); n < 1 {
		t.Errorf("health_checks_total{readiness,http,pass} = %v", n)
	}
}

// failingReadiness: an http readiness check that fails leaves it running and not ready.
func (c *healthCase) failingReadiness(t *testing.T) {
	// The startup check waits for the server: the readiness check's
	// first failure is then its 404, not a refused connection.
	name := c.run(t, "unready", c.e.healthSpec(startupCheck(), nil, httpCheck("/missing")))
	eventually.Eventually(t, "unhealthy", waitFor, func() (bool, string) {
		st := listed(t, c.ra, name)
		return st.GetHealth() == persysv1.HealthState_HEALTH_STATE_UNHEALTHY &&
			strings.HasPrefix(st.GetHealthOutput(), "HTTP 404"), describe(st)
	})
	st := listed(t, c.ra, name)
	if st.GetReady() || st.GetState() != persysv1.ActualState_ACTUAL_STATE_RUNNING || st.GetReason() != persysv1.FailureReason_FAILURE_REASON_UNSPECIFIED {
		t.Fatalf("failing readiness: %s, want RUNNING and not ready", describe(st))
	}
}

// noChecks: a workload without checks is ready while it runs.
func (c *healthCase) noChecks(t *testing.T) {
	name := c.run(t, "plain", c.e.spec(100, 64*mib))
	if st := listed(t, c.ra, name); !st.GetReady() || st.GetHealth() != persysv1.HealthState_HEALTH_STATE_UNSPECIFIED {
		t.Fatalf("no checks: %s, want ready", describe(st))
	}
}

// execInContainer: an exec check runs in the container.
func (c *healthCase) execInContainer(t *testing.T) {
	// hello's "exit CODE" mode is a command that exits with CODE.
	name := c.run(t, "exec", c.e.healthSpec(nil, execCheck("/hello", "exit", "0"), execCheck("/hello", "exit", "3")))
	eventually.Eventually(t, "readiness exit code 3", waitFor, func() (bool, string) {
		st := listed(t, c.ra, name)
		return st.GetHealth() == persysv1.HealthState_HEALTH_STATE_UNHEALTHY && st.GetHealthOutput() == "exit code 3", describe(st)
	})
	if st := listed(t, c.ra, name); st.GetReady() || st.GetState() != persysv1.ActualState_ACTUAL_STATE_RUNNING {
		t.Fatalf("exec readiness failing: %s", describe(st))
	}
	eventually.Eventually(t, "an exec liveness check that passes", waitFor, func() (bool, string) {
		n := metricValue(t, c.ra.registry, "persys_agent_health_checks_total",
			map[string]string{"check": "liveness", "type": "EXEC", "result": "pass"})
		return n >= 1, fmt.Sprint(n)
	})
}

// livenessFailure: a liveness failure stops the container and reports
// HEALTH_CHECK_FAILED; the scheduler's retry then replaces it (counted
// attempts: TestHealthChecksWithRealScheduler).
func (c *healthCase) livenessFailure(t *testing.T) {
	spec := c.e.healthSpec(startupCheck(), httpCheck("/missing"), nil)
	name := c.run(t, "live", spec)
	first := listed(t, c.ra, name).GetRuntimeId()
	var st *persysv1.WorkloadStatus
	eventually.Eventually(t, "HEALTH_CHECK_FAILED", waitFor, func() (bool, string) {
		st = listed(t, c.ra, name)
		return st.GetState() == persysv1.ActualState_ACTUAL_STATE_FAILED &&
			st.GetReason() == persysv1.FailureReason_FAILURE_REASON_HEALTH_CHECK_FAILED, describe(st)
	})
	if !strings.HasPrefix(st.GetMessage(), "liveness check failed: HTTP 404") || st.GetReady() ||
		st.GetHealthCheck() != "liveness" || !strings.HasPrefix(st.GetHealthOutput(), "HTTP 404") {
		t.Errorf("failed status: %s", describe(st))
	}
	eventually.Eventually(t, "the failed container stopped or replaced", waitFor, func() (bool, string) {
		res, err := c.e.cli.ContainerInspect(context.Background(), first, client.ContainerInspectOptions{})
		if err != nil {
			return true, err.Error() // removed by the retry's new apply
		}
		return !res.Container.State.Running, string(res.Container.State.Status)
	})
	if n := metricValue(t, c.ra.registry, "persys_agent_liveness_failures_total", nil); n < 1 {
		t.Errorf("liveness_failures_total = %v", n)
	}
	// The scheduler's retry applies the same revision again: a new
	// container, not a skip.
	waitAgentState(t, c.ra, name, "replaced by a new container", func(st *persysv1.WorkloadStatus) bool {
		return st.GetRuntimeId() != "" && st.GetRuntimeId() != first
	})
}

// deleteStops: delete stops the checks.
func (c *healthCase) deleteStops(t *testing.T) {
	name := c.run(t, "gone", c.e.healthSpec(nil, nil, httpCheck("/healthz")))
	eventually.Eventually(t, "ready", waitFor, func() (bool, string) {
		st := listed(t, c.ra, name)
		return st.GetReady(), describe(st)
	})
	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	defer cancel()
	if _, err := c.r.s.Admin(t).DeleteWorkload(ctx, &persysv1.DeleteRequest{Name: name}); err != nil {
		t.Fatal(err)
	}
	eventually.Eventually(t, "the deleted workload gone from the agent", waitFor, func() (bool, string) {
		st := listed(t, c.ra, name)
		return st == nil && !agent.HealthProbing(c.ra.agent, name), describe(st)
	})
}

// endWithAgent: the checks end with the agent.
func (c *healthCase) endWithAgent(t *testing.T) {
	if agent.HealthProbers(c.ra.agent) == 0 {
		t.Fatal("no checks running before the agent stops")
	}
	c.ra.stop()
	if n := agent.HealthProbers(c.ra.agent); n != 0 {
		t.Fatalf("%d probers left after the agent stopped", n)
	}
}
