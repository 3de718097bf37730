package cli

import (
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/persys-dev/compute/internal/client"
	"github.com/persys-dev/compute/internal/runtime/sim"
	"github.com/persys-dev/compute/internal/testutil/eventually"
	"github.com/persys-dev/compute/internal/testutil/realsched"
)

const apiService = `kind: Service
metadata: {name: api}
spec:
  replicas: 2
  update: {maxSurge: 1, maxUnavailable: 0, canary: 1}
  template:
    type: container
    container: {image: "api:1"}
    resources: {cpu: 100m, memory: 32Mi}
`

// The service verbs against a real scheduler with a sim agent: apply
// --wait of a stream mixing a Service and a Workload, get, describe, scale, a canary
// update held until promote, history, undo, pause, delete.
func TestServiceCommands(t *testing.T) {
	rc := realsched.Start(t, realsched.Options{Nodes: []string{"n1"}, NoSecrets: true})
	rc.StartAgent(t, "n1", sim.Options{})
	gw := rc.StartGateway(t, nil)
	dir := t.TempDir()
	cfg := filepath.Join(dir, "config.yaml")
	if err := client.WriteConfig(cfg, rc.Config(gw)); err != nil {
		t.Fatal(err)
	}
	t.Setenv("HOME", filepath.Join(dir, "home"))
	t.Setenv(client.EnvConfig, "")
	c := &cluster{config: cfg, dir: dir}
	file := c.writeManifest(t, "api.yaml", apiService+"---\n"+webManifest)
	// --wait follows the service's rollout, then waits for the workload.
	expect(t, c.persysctl(t, "", "apply", "-f", file, "--wait", "--timeout", "1m"), 0,
		[]string{"service/api created\n", "revision 1: COMPLETE — 2 of 2 updated", "workload/web created\n", "workload/web running on n1"}, nil)

	waitPhase := func(phase string, updated string) {
		eventually.Eventually(t, "api "+phase, time.Minute, func() (bool, string) {
			r := c.persysctl(t, "", "rollout", "status", "api")
			return strings.Contains(r.out, phase) && strings.Contains(r.out, updated), r.out + r.err
		})
	}
	waitPhase("COMPLETE", "2 of 2 updated")
	expect(t, c.persysctl(t, "", "get", "services"), 0, []string{"NAME", "api", "COMPLETE"}, nil)
	expect(t, c.persysctl(t, "", "scale", "service", "api", "--replicas", "3"), 0, []string{"service/api scaled to 3\n"}, nil)
	waitPhase("COMPLETE", "3 of 3 updated")

	// A canary update stops at one new replica until promoted.
	file = c.writeManifest(t, "api2.yaml", strings.Replace(strings.Replace(apiService, "replicas: 2", "replicas: 3", 1), "api:1", "api:2", 1))
	expect(t, c.persysctl(t, "", "apply", "-f", file), 0, []string{"service/api updated\n"}, nil)
	expect(t, c.persysctl(t, "", "rollout", "status", "api", "--wait"), 0, []string{"AWAITING_PROMOTION — 1 of 3 updated", "promote to go on"}, nil)
	expect(t, c.persysctl(t, "", "rollout", "promote", "api"), 0, []string{"service/api promoted\n"}, nil)
	expect(t, c.persysctl(t, "", "rollout", "status", "api", "-w", "--timeout", "1m"), 0, []string{"revision 2: COMPLETE — 3 of 3 updated"}, nil)
	expect(t, c.persysctl(t, "", "rollout", "history", "api"), 0, []string{"REVISION", "api:1", "api:2"}, nil)
	expect(t, c.persysctl(t, "", "describe", "service", "api"), 0,
		[]string{"Name:", "api", "Rollout:", "COMPLETE at revision 2", "Conditions:", "Available", "Revisions:", "Events:", "RolloutComplete"}, nil)

	expect(t, c.persysctl(t, "", "rollout", "undo", "api"), 0, []string{"service/api rolled back\n"}, nil)
	expect(t, c.persysctl(t, "", "rollout", "pause", "api"), 0, []string{"service/api paused\n"}, nil)
	expect(t, c.persysctl(t, "", "rollout", "resume", "api"), 0, []string{"service/api resumed\n"}, nil)
	waitPhase("COMPLETE", "3 of 3 updated")
	expect(t, c.persysctl(t, "", "get", "service", "api", "-o", "json"), 0, []string{`"api:1"`}, nil)
	eventually.Eventually(t, "3 endpoints", time.Minute, func() (bool, string) {
		r := c.persysctl(t, "", "get", "endpoints", "api", "-o", "name")
		return strings.Count(r.out, "endpoint/api-") == 3, r.out + r.err
	})
	expect(t, c.persysctl(t, "", "get", "endpoints", "api"), 0, []string{"REPLICA", "NODE", "ADDRESS", "PORTS", "api-", "n1"}, nil)
	expect(t, c.persysctl(t, "", "get", "ep", "api", "-o", "json"), 0, []string{`"service": "api"`, `"nodeId": "n1"`, `"revision"`}, nil)
	expect(t, c.persysctl(t, "", "get", "endpoints"), 1, nil, []string{"one service name"})
	expect(t, c.persysctl(t, "", "get", "endpoints", "nosuch"), 1, nil, []string{"nosuch"})

	expect(t, c.persysctl(t, "", "scale", "service", "api"), 1, nil, []string{"--replicas is required"})
	expect(t, c.persysctl(t, "", "scale", "service", "api", "--replicas", "-3"), 1, nil, []string{"replicas"})
	expect(t, c.persysctl(t, "", "scale", "workload", "web", "--replicas", "3"), 1, nil, []string{"scale applies only to services"})
	expect(t, c.persysctl(t, "", "delete", "service", "api"), 0, []string{"service/api deletion requested\n"}, nil)
	eventually.Eventually(t, "api gone", time.Minute, func() (bool, string) {
		r := c.persysctl(t, "", "get", "services")
		return strings.Contains(r.out, "No services."), r.out
	})
}
