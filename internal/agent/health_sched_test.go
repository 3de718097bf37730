package agent_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	persysv1 "github.com/persys-dev/compute/api/persys/v1"
	"github.com/persys-dev/compute/internal/model"
	"github.com/persys-dev/compute/internal/scheduler"
	"github.com/persys-dev/compute/internal/testutil/eventually"
	"github.com/persys-dev/compute/internal/testutil/images"
	"github.com/persys-dev/compute/internal/testutil/realsched"
)

// TestHealthChecksWithRealScheduler: what the agent's checks say reaches
// a real scheduler: readiness in the stored status, with a HealthChanged
// event, and a liveness failure as failed attempts of reason
// HEALTH_CHECK_FAILED until the retry engine gives up.
func TestHealthChecksWithRealScheduler(t *testing.T) {
	s := realsched.Start(t, realsched.Options{Nodes: []string{nodeID}, NoSecrets: true, Config: func(c *scheduler.Config) {
		shortLeases(c)
		c.RetryBase, c.RetryMax, c.MaxAttempts = 500*time.Millisecond, time.Second, 2
	}})
	cli, image := images.HelloImage(t)
	e := &env{bundle: s.Bundle, addr: s.Addrs[0], sched: s, cli: cli, image: image, prefix: randomPrefix()}
	t.Cleanup(func() { e.removeContainers(t) })
	e.startAgent(t, t.TempDir())
	admin := s.Admin(t)
	waitNodeReady(t, admin, waitFor)
	applyTo := func(name string, spec *persysv1.WorkloadSpec) {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), waitFor)
		defer cancel()
		if _, err := admin.ApplyWorkload(ctx, &persysv1.ApplyRequest{Name: name, Spec: spec}); err != nil {
			t.Fatalf("apply %s: %v", name, err)
		}
	}
	get := func(name string) *persysv1.WorkloadStatus {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		v, err := admin.GetWorkload(ctx, &persysv1.GetWorkloadRequest{Name: name})
		if err != nil {
			return &persysv1.WorkloadStatus{Message: err.Error()}
		}
		return v.GetStatus()
	}
	events := func(name string) []*persysv1.Event {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		resp, err := admin.ListEvents(ctx, &persysv1.ListEventsRequest{Workload: name, Limit: 100})
		if err != nil {
			t.Fatalf("list events: %v", err)
		}
		return resp.GetEvents()
	}

	ready := e.prefix + "-ready"
	applyTo(ready, e.healthSpec(nil, nil, httpCheck("/healthz")))
	eventually.Eventually(t, "the scheduler's status ready", waitFor, func() (bool, string) {
		st := get(ready)
		return st.GetReady() && st.GetHealth() == persysv1.HealthState_HEALTH_STATE_HEALTHY &&
			st.GetHealthOutput() == "HTTP 200: ok", describe(st)
	})
	eventually.Eventually(t, "a HealthChanged event", waitFor, func() (bool, string) {
		var types []string
		for _, ev := range events(ready) {
			if ev.GetType() == string(model.EventHealthChanged) && strings.Contains(ev.GetMessage(), "HEALTHY, ready") {
				return true, ""
			}
			types = append(types, ev.GetType()+": "+ev.GetMessage())
		}
		return false, fmt.Sprint(types)
	})

	live := e.prefix + "-live"
	applyTo(live, e.healthSpec(startupCheck(), httpCheck("/missing"), nil))
	var st *persysv1.WorkloadStatus
	eventually.Eventually(t, "the retry engine gives up on HEALTH_CHECK_FAILED", 3*waitFor, func() (bool, string) {
		st = get(live)
		return st.GetState() == persysv1.ActualState_ACTUAL_STATE_FAILED && strings.HasPrefix(st.GetMessage(), "gave up after"), describe(st)
	})
	if st.GetReason() != persysv1.FailureReason_FAILURE_REASON_HEALTH_CHECK_FAILED || st.GetAttempts() != 2 {
		t.Fatalf("gave up with %s after %d attempts, want HEALTH_CHECK_FAILED after 2", describe(st), st.GetAttempts())
	}
	// Events are written in batches after the status: wait for both.
	var failed []*persysv1.Event
	eventually.Eventually(t, "two AttemptFailed events", waitFor, func() (bool, string) {
		failed = failed[:0]
		for _, ev := range events(live) {
			if ev.GetType() == string(model.EventAttemptFailed) {
				failed = append(failed, ev)
			}
		}
		return len(failed) >= 2, fmt.Sprintf("%d AttemptFailed events", len(failed))
	})
	if len(failed) != 2 {
		t.Errorf("%d AttemptFailed events, want 2", len(failed))
	}
	for _, ev := range failed {
		if ev.GetReason() != persysv1.FailureReason_FAILURE_REASON_HEALTH_CHECK_FAILED {
			t.Errorf("attempt event %s: %s, want reason HEALTH_CHECK_FAILED", ev.GetReason(), ev.GetMessage())
		}
	}
}
