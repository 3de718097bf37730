package cli

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/persys-dev/compute/api/persys/contract"
	persysv1 "github.com/persys-dev/compute/api/persys/v1"
	"github.com/persys-dev/compute/internal/client"
	"github.com/persys-dev/compute/internal/gateway/gatewaytest"
	"github.com/persys-dev/compute/internal/testutil/realsched"
)

const webManifest = `
kind: Workload
metadata:
  name: web
spec:
  type: container
  container:
    image: example/web:1
  resources:
    cpu: 250m
    memory: 64Mi
`

// cluster is a gateway with an in-memory scheduler and a persysctl
// config file pointing at it.
type cluster struct {
	env    *gatewaytest.Env
	config string
	dir    string
}

func startCluster(t *testing.T) *cluster {
	t.Helper()
	env := gatewaytest.Start(t)
	dir := t.TempDir()
	cfg := filepath.Join(dir, "config.yaml")
	if err := client.WriteConfig(cfg, env.Config); err != nil {
		t.Fatal(err)
	}
	// No test may fall back to the real home directory.
	t.Setenv("HOME", filepath.Join(dir, "home"))
	t.Setenv(client.EnvConfig, "")
	return &cluster{env: env, config: cfg, dir: dir}
}

type result struct {
	code     int
	out, err string
}

// persysctl runs the command tree in-process with --config set.
func (c *cluster) persysctl(t *testing.T, stdin string, args ...string) result {
	t.Helper()
	return runCLI(t, stdin, append([]string{"--config", c.config}, args...)...)
}

func runCLI(t *testing.T, stdin string, args ...string) result {
	t.Helper()
	var out, errb bytes.Buffer
	code := run(context.Background(), args, Streams{In: strings.NewReader(stdin), Out: &out, Err: &errb}, func() time.Time { return fixedNow })
	return result{code: code, out: out.String(), err: errb.String()}
}

func (c *cluster) writeManifest(t *testing.T, name, content string) string {
	t.Helper()
	p := filepath.Join(c.dir, name)
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func expect(t *testing.T, r result, code int, outHas, errHas []string) {
	t.Helper()
	if r.code != code {
		t.Errorf("exit code %d, want %d\nstdout: %s\nstderr: %s", r.code, code, r.out, r.err)
	}
	for _, s := range outHas {
		if !strings.Contains(r.out, s) {
			t.Errorf("stdout lacks %q:\n%s", s, r.out)
		}
	}
	for _, s := range errHas {
		if !strings.Contains(r.err, s) {
			t.Errorf("stderr lacks %q:\n%s", s, r.err)
		}
	}
}

func TestApplyGetDescribeDelete(t *testing.T) {
	c := startCluster(t)
	file := c.writeManifest(t, "web.yaml", webManifest)

	expect(t, c.persysctl(t, "", "apply", "-f", file), 0, []string{"workload/web created\n"}, nil)
	expect(t, c.persysctl(t, webManifest, "apply", "-f", "-"), 0, []string{"workload/web unchanged\n"}, nil)

	r := c.persysctl(t, "", "get", "workloads")
	expect(t, r, 0, []string{"NAME", "REVISION", "web", "CONTAINER", "PENDING"}, nil)

	r = c.persysctl(t, "", "get", "workload", "web", "-o", "json")
	expect(t, r, 0, nil, nil)
	view := &persysv1.WorkloadView{}
	if err := contract.UnmarshalJSON(protojson.UnmarshalOptions{}, []byte(r.out), view); err != nil || view.GetWorkload().GetName() != "web" {
		t.Fatalf("json output %q: %v", r.out, err)
	}
	expect(t, c.persysctl(t, "", "get", "workload", "web", "-o", "yaml"), 0, []string{"name: web", "cpuMillis: \"250\""}, nil)

	c.env.Control.AddNode(&persysv1.Node{Id: "node-1", State: persysv1.NodeState_NODE_STATE_READY})
	if err := c.env.Control.SetStatus("web", &persysv1.WorkloadStatus{State: persysv1.ActualState_ACTUAL_STATE_RUNNING, NodeId: "node-1", Revision: 1}); err != nil {
		t.Fatal(err)
	}
	c.env.Control.AddEvent(&persysv1.Event{Type: "Applied", Workload: "web", NodeId: "node-1", Message: "started"})
	expect(t, c.persysctl(t, "", "describe", "workload", "web"), 0,
		[]string{"Name:           web", "State:          RUNNING", "Image:          example/web:1", "Applied", "started"}, nil)
	expect(t, c.persysctl(t, "", "describe", "node", "node-1"), 0, []string{"ID:             node-1", "web"}, nil)
	expect(t, c.persysctl(t, "", "get", "nodes"), 0, []string{"node-1", "READY"}, nil)
	expect(t, c.persysctl(t, "", "get", "node", "node-1", "-o", "json"), 0, []string{`"id": "node-1"`}, nil)
	expect(t, c.persysctl(t, "", "events", "--workload", "web"), 0, []string{"Applied", "started"}, nil)
	c.env.Control.SetSummary(&persysv1.ClusterSummary{NodesTotal: 1, NodesReady: 1, WorkloadsTotal: 1, Leader: "scheduler"})
	expect(t, c.persysctl(t, "", "cluster", "summary"), 0, []string{"1 total, 1 ready", "scheduler"}, nil)

	expect(t, c.persysctl(t, "", "delete", "workload", "web", "--wait"), 0, []string{"workload/web deleted\n"}, nil)
	expect(t, c.persysctl(t, "", "get", "workload", "web"), 1, nil, []string{`Error: workload "web" not found`})
}

func TestApplyWait(t *testing.T) {
	c := startCluster(t)
	file := c.writeManifest(t, "web.yaml", webManifest)

	// The stand-in scheduler moves the workload on as soon as it is applied.
	var next atomic.Int32
	next.Store(int32(persysv1.ActualState_ACTUAL_STATE_RUNNING))
	c.env.Control.SetOnApply(func(name string) {
		st := &persysv1.WorkloadStatus{State: persysv1.ActualState(next.Load()), NodeId: "node-1", Revision: 1}
		if st.State == persysv1.ActualState_ACTUAL_STATE_FAILED {
			st.Reason = persysv1.FailureReason_FAILURE_REASON_IMAGE_NOT_FOUND
			st.Message = "image example/web:1 not found"
		}
		_ = c.env.Control.SetStatus(name, st)
	})
	expect(t, c.persysctl(t, "", "apply", "-f", file, "--wait", "--timeout", "30s"), 0,
		[]string{"workload/web created\n", "workload/web running on node-1 (revision 1)\n"}, nil)

	c.env.Control.Remove("web")
	next.Store(int32(persysv1.ActualState_ACTUAL_STATE_FAILED))
	expect(t, c.persysctl(t, "", "apply", "-f", file, "--wait"), 1,
		[]string{"workload/web created\n"},
		[]string{"Error: workload web failed: IMAGE_NOT_FOUND: image example/web:1 not found\n"})

	// A wait that times out fails with the state it saw.
	c.env.Control.SetOnApply(nil)
	c.env.Control.Remove("web")
	expect(t, c.persysctl(t, "", "apply", "-f", file, "--wait", "--timeout", "200ms"), 1,
		nil, []string{"Error: timed out after 200ms waiting for workload \"web\" to be running (state PENDING)"})

	// retry of a failed workload.
	if err := c.env.Control.SetStatus("web", &persysv1.WorkloadStatus{State: persysv1.ActualState_ACTUAL_STATE_FAILED}); err != nil {
		t.Fatal(err)
	}
	expect(t, c.persysctl(t, "", "retry", "workload", "web"), 0, []string{"workload/web retry requested\n"}, nil)
}

func TestErrors(t *testing.T) {
	c := startCluster(t)
	bad := c.writeManifest(t, "bad.yaml", strings.Replace(webManifest, "memory: 64Mi", "memory: -64Mi", 1))
	tests := []struct {
		name   string
		args   []string
		errHas []string
	}{
		{"invalid manifest names the field", []string{"apply", "-f", bad}, []string{"Error: invalid manifest\n", "\n  spec.resources.memory: must not be negative\n"}},
		{"missing file", []string{"apply", "-f", filepath.Join(c.dir, "nope.yaml")}, []string{"Error: -f: open", "nope.yaml"}},
		{"no -f", []string{"apply"}, []string{"Error: -f is required"}},
		{"bad output", []string{"get", "workloads", "-o", "xml"}, []string{`Error: invalid --output "xml"`}},
		{"bad resource", []string{"get", "pods"}, []string{`Error: unknown resource type "pods"`}},
		{"delete node", []string{"delete", "node", "n1"}, []string{"Error: delete applies only to workloads"}},
		{"missing node", []string{"describe", "node", "n9"}, []string{`Error: node "n9" not found`}},
		{"unknown command", []string{"frobnicate"}, []string{"Error: unknown command"}},
		{"bad selector", []string{"get", "workloads", "-l", "app"}, []string{"Error: invalid --selector"}},
		{"bad timeout", []string{"delete", "workload", "web", "--wait", "--timeout", "0s"}, []string{"Error: invalid --timeout"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			expect(t, c.persysctl(t, "", tt.args...), 1, nil, tt.errHas)
		})
	}
	if n := c.env.Control.Calls("ApplyWorkload"); n != 0 {
		t.Errorf("the scheduler was called %d times", n)
	}
}

func TestConfigSources(t *testing.T) {
	c := startCluster(t)

	// $PERSYSCTL_CONFIG is used when --config is absent.
	t.Setenv(client.EnvConfig, c.config)
	expect(t, runCLI(t, "", "get", "workloads"), 0, []string{"No workloads."}, nil)

	// --config wins over $PERSYSCTL_CONFIG.
	missing := filepath.Join(c.dir, "missing.yaml")
	expect(t, runCLI(t, "", "--config", missing, "get", "workloads"), 1, nil, []string{"Error: config from --config " + missing})

	// The default path under the home directory comes last.
	t.Setenv(client.EnvConfig, "")
	expect(t, runCLI(t, "", "get", "workloads"), 1, nil, []string{"Error: config from the default path", ".persys/config.yaml"})
	home := os.Getenv("HOME")
	data, err := os.ReadFile(c.config)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Join(home, ".persys"), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(home, ".persys", "config.yaml"), data, 0o600); err != nil {
		t.Fatal(err)
	}
	expect(t, runCLI(t, "", "get", "workloads"), 0, []string{"No workloads."}, nil)
}

func TestNodeCommands(t *testing.T) {
	c := startCluster(t)
	ctrl := c.env.Control
	ctrl.AddNode(&persysv1.Node{Id: "node-1", State: persysv1.NodeState_NODE_STATE_READY})
	ctrl.AddNode(&persysv1.Node{Id: "node-2", State: persysv1.NodeState_NODE_STATE_READY})
	file := c.writeManifest(t, "web.yaml", webManifest)
	expect(t, c.persysctl(t, "", "apply", "-f", file), 0, nil, nil)
	if err := ctrl.SetStatus("web", &persysv1.WorkloadStatus{State: persysv1.ActualState_ACTUAL_STATE_RUNNING, NodeId: "node-1", Revision: 1}); err != nil {
		t.Fatal(err)
	}

	expect(t, c.persysctl(t, "", "node", "cordon", "node-2"), 0, []string{"node/node-2 cordoned\n"}, nil)
	expect(t, c.persysctl(t, "", "get", "nodes"), 0, []string{"READY,CORDONED"}, nil)
	expect(t, c.persysctl(t, "", "node", "cordon", "node-2", "-o", "json"), 0, []string{`"cordoned": true`}, nil)

	// Nowhere to go: the drain is incomplete and persysctl fails.
	expect(t, c.persysctl(t, "", "node", "drain", "node-1", "--timeout", "5s"), 1,
		[]string{"workload/web not moved: NO_FEASIBLE_NODE: no other ready node\n", "node/node-1 cordoned, drain incomplete (0 of 1 workloads moved)\n"},
		[]string{"Error: drain of node node-1 incomplete: 1 of 1 workloads did not move within 5s\n"})
	if req, _ := ctrl.LastDrain(); req.GetTimeoutSeconds() != 5 {
		t.Errorf("timeout_seconds %d, want 5", req.GetTimeoutSeconds())
	}

	expect(t, c.persysctl(t, "", "nodes", "uncordon", "node-2"), 0, []string{"node/node-2 uncordoned\n"}, nil)
	expect(t, c.persysctl(t, "", "node", "drain", "node-1"), 0,
		[]string{"workload/web moved to node-2\n", "node/node-1 drained (1 of 1 workloads moved)\n"}, nil)
	if req, _ := ctrl.LastDrain(); req.GetTimeoutSeconds() != 120 {
		t.Errorf("default timeout_seconds %d, want 120", req.GetTimeoutSeconds())
	}
	expect(t, c.persysctl(t, "", "describe", "workload", "web"), 0, []string{"Node:           node-2", "Cause:        drain"}, nil)
	r := c.persysctl(t, "", "node", "drain", "node-1", "-o", "json")
	expect(t, r, 0, []string{`"complete": true`}, nil)

	tests := []struct {
		name   string
		args   []string
		errHas []string
	}{
		{"cordon of a missing node", []string{"node", "cordon", "nope"}, []string{`Error: node "nope" not found`}},
		{"drain of a missing node", []string{"node", "drain", "nope"}, []string{`Error: node "nope" not found`}},
		{"drain with a bad timeout", []string{"node", "drain", "node-1", "--timeout", "0s"}, []string{"Error: invalid --timeout"}},
		{"cordon without id", []string{"node", "cordon"}, []string{"Error: accepts 1 arg(s)"}},
		{"unknown node verb", []string{"node", "reboot", "node-1"}, []string{`Error: unknown command "reboot"`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			expect(t, c.persysctl(t, "", tt.args...), 1, nil, tt.errHas)
		})
	}
}

func TestWorkloadRetryAndLeader(t *testing.T) {
	c := startCluster(t)
	file := c.writeManifest(t, "web.yaml", webManifest)
	expect(t, c.persysctl(t, "", "apply", "-f", file), 0, nil, nil)
	expect(t, c.persysctl(t, "", "workload", "retry", "web"), 1, nil, []string{"is ACTUAL_STATE_PENDING, not FAILED"})
	if err := c.env.Control.SetStatus("web", &persysv1.WorkloadStatus{
		State: persysv1.ActualState_ACTUAL_STATE_FAILED, Reason: persysv1.FailureReason_FAILURE_REASON_IMAGE_NOT_FOUND,
		Attempts: 5, NextAttemptAt: timestamppb.New(fixedNow.Add(2 * time.Minute)),
	}); err != nil {
		t.Fatal(err)
	}
	expect(t, c.persysctl(t, "", "describe", "workload", "web"), 0, []string{"Attempts:       5\n", "Next attempt:   2026-01-02T15:06:05Z (in 2m)\n"}, nil)
	expect(t, c.persysctl(t, "", "workload", "retry", "web"), 0, []string{"workload/web retry requested\n"}, nil)
	if n := c.env.Control.Calls("RetryWorkload"); n != 2 {
		t.Errorf("RetryWorkload calls = %d, want 2", n)
	}

	addr := c.env.Control.Addr()
	expect(t, c.persysctl(t, "", "get", "leader"), 0, []string{"Leader:      scheduler\n", "Address:     " + addr + "\n", "Answered by: the leader\n"}, nil)
	expect(t, c.persysctl(t, "", "cluster", "leader"), 0, []string{"Address:     " + addr + "\n"}, nil)
	expect(t, c.persysctl(t, "", "get", "leader", "-o", "json"), 0, []string{`"isLeader": true`}, nil)
	expect(t, c.persysctl(t, "", "get", "leader", "x"), 1, nil, []string{"Error: get leader takes no name"})
	expect(t, c.persysctl(t, "", "get", "leader", "-l", "a=b"), 1, nil, []string{"Error: --selector applies only to listing workloads"})
}

// TestFollowsLeader runs persysctl against a gateway whose first
// scheduler, of two real elected ones, does not lead: writes still land on
// the leader.
func TestFollowsLeader(t *testing.T) {
	rc := realsched.Start(t, realsched.Options{Replicas: 2, NoSecrets: true})
	li := rc.Leader(t)
	leader, follower := rc.Addrs[li], rc.Addrs[1-li]
	gw := rc.StartGateway(t, nil, follower, leader)
	dir := t.TempDir()
	cfg := filepath.Join(dir, "config.yaml")
	if err := client.WriteConfig(cfg, rc.Config(gw)); err != nil {
		t.Fatal(err)
	}
	t.Setenv("HOME", filepath.Join(dir, "home"))
	t.Setenv(client.EnvConfig, "")
	c := &cluster{config: cfg, dir: dir}
	file := c.writeManifest(t, "web.yaml", webManifest)
	expect(t, c.persysctl(t, "", "apply", "-f", file), 0, []string{"workload/web created\n"}, nil)
	expect(t, c.persysctl(t, "", "get", "leader"), 0, []string{"Address:     " + leader + "\n", "the leader"}, nil)
	expect(t, c.persysctl(t, "", "get", "workload", "web"), 0, []string{"web"}, nil)
	if gw.Pool.Current() != leader {
		t.Errorf("the gateway calls %s, want the leader %s", gw.Pool.Current(), leader)
	}
}

// workloads is one container workload document per name, joined with ---
// lines; a name ending in "-stopped" asks to be stopped.
func workloads(names ...string) string {
	docs := make([]string, len(names))
	for i, n := range names {
		doc := strings.Replace(webManifest, "name: web", "name: "+n, 1)
		if strings.HasSuffix(n, "-stopped") {
			doc = strings.Replace(doc, "type: container", "type: container\n  desiredState: stopped", 1)
		}
		docs[i] = doc
	}
	return "# a stack\n---\n" + strings.Join(docs, "---\n") + "---\n"
}

func TestApplyMany(t *testing.T) {
	c := startCluster(t)
	file := c.writeManifest(t, "stack.yaml", workloads("web", "db", "cache"))
	ctrl := c.env.Control

	r := c.persysctl(t, "", "apply", "-f", file)
	expect(t, r, 0, nil, nil)
	if want := "workload/web created\nworkload/db created\nworkload/cache created\n"; r.out != want {
		t.Errorf("stdout %q, want %q", r.out, want)
	}
	if a, b := ctrl.Calls("ApplyWorkloads"), ctrl.Calls("ApplyWorkload"); a != 1 || b != 0 {
		t.Errorf("ApplyWorkloads calls %d, ApplyWorkload calls %d; want 1 and 0", a, b)
	}
	expect(t, c.persysctl(t, workloads("web", "db", "cache"), "apply", "-f", "-"), 0,
		[]string{"workload/web unchanged\nworkload/db unchanged\nworkload/cache unchanged\n"}, nil)

	r = c.persysctl(t, "", "apply", "-f", file, "-o", "json")
	expect(t, r, 0, nil, nil)
	resp := &persysv1.ApplyWorkloadsResponse{}
	if err := contract.UnmarshalJSON(protojson.UnmarshalOptions{}, []byte(r.out), resp); err != nil || len(resp.GetResults()) != 3 ||
		resp.GetResults()[2].GetName() != "cache" || resp.GetResults()[2].GetResult() != "unchanged" {
		t.Fatalf("json output %q: %v", r.out, err)
	}
	expect(t, c.persysctl(t, "", "apply", "-f", file, "-o", "yaml"), 0, []string{"results:\n", "name: db\n", "result: unchanged\n"}, nil)

	// One workload that cannot be applied: its own line, exit status 1.
	ctrl.SetApplyError("db", status.Error(codes.FailedPrecondition, `workload "db" is being deleted`))
	expect(t, c.persysctl(t, "", "apply", "-f", file), 1,
		[]string{"workload/web unchanged\nworkload/db error: workload \"db\" is being deleted\nworkload/cache unchanged\n"},
		[]string{"Error: 1 of 3 workloads failed to apply: db\n"})
	r = c.persysctl(t, "", "apply", "-f", file, "-o", "json")
	expect(t, r, 1, []string{`"errorCode": 9`, `"errorMessage": "workload \"db\" is being deleted"`}, []string{"Error: 1 of 3 workloads failed to apply: db\n"})
	ctrl.SetApplyError("db", nil)

	// An invalid document applies nothing and is named.
	bad := c.writeManifest(t, "bad.yaml", workloads("one", "two")+strings.Replace(workloads("three"), "memory: 64Mi", "memory: -64Mi", 1))
	expect(t, c.persysctl(t, "", "apply", "-f", bad), 1, nil,
		[]string{"Error: invalid manifest\n", "\n  documents[2].spec.resources.memory: must not be negative\n"})
	expect(t, c.persysctl(t, "", "get", "workload", "one"), 1, nil, []string{`workload "one" not found`})

	// One document between markers is a single apply, as before.
	single := c.writeManifest(t, "single.yaml", workloads("solo"))
	expect(t, c.persysctl(t, "", "apply", "-f", single), 0, []string{"workload/solo created\n"}, nil)
	if n := ctrl.Calls("ApplyWorkload"); n != 1 {
		t.Errorf("ApplyWorkload calls %d, want 1", n)
	}
}

func TestApplyManyWait(t *testing.T) {
	c := startCluster(t)
	ctrl := c.env.Control
	file := c.writeManifest(t, "stack.yaml", workloads("web", "db", "job-stopped"))

	// The stand-in scheduler starts (or stops) each workload as it is
	// applied; db fails when failDB is set.
	var failDB atomic.Bool
	failDB.Store(true)
	ctrl.SetOnApply(func(name string) {
		st := &persysv1.WorkloadStatus{State: persysv1.ActualState_ACTUAL_STATE_RUNNING, NodeId: "node-1", Revision: 1}
		switch {
		case strings.HasSuffix(name, "-stopped"):
			st.State = persysv1.ActualState_ACTUAL_STATE_STOPPED
		case name == "db" && failDB.Load():
			st.State, st.Reason, st.Message = persysv1.ActualState_ACTUAL_STATE_FAILED, persysv1.FailureReason_FAILURE_REASON_IMAGE_NOT_FOUND, "image example/web:1 not found"
		}
		_ = ctrl.SetStatus(name, st)
	})
	expect(t, c.persysctl(t, "", "apply", "-f", file, "--wait", "--timeout", "30s"), 1,
		[]string{"workload/web created\nworkload/db created\nworkload/job-stopped created\n" +
			"workload/web running on node-1 (revision 1)\n" +
			"workload/db failed: IMAGE_NOT_FOUND: image example/web:1 not found\n" +
			"workload/job-stopped stopped on node-1 (revision 1)\n"},
		[]string{"Error: 1 of 3 workloads failed or timed out while waiting: db\n"})

	for _, n := range []string{"web", "db", "job-stopped"} {
		ctrl.Remove(n)
	}
	failDB.Store(false)
	expect(t, c.persysctl(t, "", "apply", "-f", file, "--wait"), 0,
		[]string{"workload/db running on node-1 (revision 1)\n", "workload/job-stopped stopped on node-1 (revision 1)\n"}, nil)

	// -o json prints the answer with each workload as the wait left it.
	r := c.persysctl(t, "", "apply", "-f", file, "--wait", "-o", "json")
	expect(t, r, 0, nil, nil)
	resp := &persysv1.ApplyWorkloadsResponse{}
	if err := contract.UnmarshalJSON(protojson.UnmarshalOptions{}, []byte(r.out), resp); err != nil || len(resp.GetResults()) != 3 {
		t.Fatalf("json output %q: %v", r.out, err)
	}
	if st := resp.GetResults()[1].GetWorkload().GetStatus(); st.GetState() != persysv1.ActualState_ACTUAL_STATE_RUNNING || st.GetNodeId() != "node-1" {
		t.Errorf("db after the wait: %v", st)
	}

	// Waits that time out name every workload; the one not applied is not
	// waited for.
	ctrl.SetOnApply(nil)
	for _, n := range []string{"web", "db", "job-stopped"} {
		ctrl.Remove(n)
	}
	ctrl.SetApplyError("job-stopped", status.Error(codes.Aborted, "revision conflict"))
	r = c.persysctl(t, "", "apply", "-f", file, "--wait", "--timeout", "200ms")
	expect(t, r, 1,
		[]string{"workload/job-stopped error: revision conflict\n",
			"workload/web error: timed out after 200ms waiting for workload \"web\" to be running (state PENDING)\n",
			"workload/db error: timed out after 200ms"},
		[]string{"Error: 1 of 3 workloads failed to apply: job-stopped; 2 of 3 workloads failed or timed out while waiting: web, db\n"})
	if n := strings.Count(r.out, "workload/job-stopped"); n != 1 {
		t.Errorf("the workload not applied has %d lines, want 1:\n%s", n, r.out)
	}
}
