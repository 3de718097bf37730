package agent_test

import (
	"context"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	persysv1 "github.com/persys-dev/compute/api/persys/v1"
	"github.com/persys-dev/compute/internal/agent"
	"github.com/persys-dev/compute/internal/runtime"
	"github.com/persys-dev/compute/internal/runtime/sim"
)

// panickingRuntime panics in its health check, as a runtime bug would in
// the middle of a call.
type panickingRuntime struct{ runtime.Runtime }

func (panickingRuntime) Health(context.Context) error { panic("runtime bug") }

// A handler that panics fails its call with Internal and is counted by
// method; the agent serves on.
func TestServePanicIsInternalAndCounted(t *testing.T) {
	e, _ := newRealEnv(t)
	simRT, err := sim.New(sim.Options{Seed: 1})
	if err != nil {
		t.Fatal(err)
	}
	ra := e.startAgent(t, "", func(c *agent.Config) { c.Runtimes = []runtime.Runtime{panickingRuntime{simRT}} })
	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	defer cancel()
	const method = "/persys.v1.AgentService/HealthCheck"
	for i := 1; i <= 2; i++ {
		_, err := ra.client.HealthCheck(ctx, &persysv1.HealthCheckRequest{})
		if status.Code(err) != codes.Internal {
			t.Fatalf("HealthCheck call %d: %v, want Internal", i, err)
		}
		if v := counterValue(t, ra, method); v != float64(i) {
			t.Fatalf("persys_agent_grpc_panics_total{method=%q} = %v after %d calls, want %d", method, v, i, i)
		}
	}
	if _, err := ra.client.ListWorkloads(ctx, &persysv1.ListAgentWorkloadsRequest{}); err != nil {
		t.Fatalf("ListWorkloads after the panics: %v", err)
	}
}

func counterValue(t *testing.T, ra *runningAgent, method string) float64 {
	t.Helper()
	mfs, err := ra.registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != "persys_agent_grpc_panics_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, lp := range m.GetLabel() {
				if lp.GetName() == "method" && lp.GetValue() == method {
					return m.GetCounter().GetValue()
				}
			}
		}
	}
	return 0
}
