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
	// Each call is in the server metrics with the code it returned.
	if v := handledCalls(t, ra, "HealthCheck", "Internal"); v != 2 {
		t.Errorf("persys_agent_grpc_server_handled_total{HealthCheck,Internal} = %v, want 2", v)
	}
	if v := handledCalls(t, ra, "ListWorkloads", "OK"); v != 1 {
		t.Errorf("persys_agent_grpc_server_handled_total{ListWorkloads,OK} = %v, want 1", v)
	}
}

// handledCalls is persys_agent_grpc_server_handled_total for one
// AgentService method and code.
func handledCalls(t *testing.T, ra *runningAgent, method, code string) float64 {
	t.Helper()
	mfs, err := ra.registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != "persys_agent_grpc_server_handled_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			labels := map[string]string{}
			for _, lp := range m.GetLabel() {
				labels[lp.GetName()] = lp.GetValue()
			}
			if labels["grpc_service"] == "persys.v1.AgentService" && labels["grpc_method"] == method && labels["grpc_code"] == code {
				return m.GetCounter().GetValue()
			}
		}
	}
	return 0
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
