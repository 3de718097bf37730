package cli

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/encoding/protojson"

	"github.com/persys-dev/compute/api/persys/contract"
	persysv1 "github.com/persys-dev/compute/api/persys/v1"
	"github.com/persys-dev/compute/internal/client"
	"github.com/persys-dev/compute/internal/runtime/sim"
	"github.com/persys-dev/compute/internal/testutil/callrec"
	"github.com/persys-dev/compute/internal/testutil/eventually"
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

// The tests of this package share one real scheduler on embedded etcd
// with one sim agent (node-1, which fails brokenImage) and a gateway in
// front, over mutual TLS; each test uses workload names of its own. The
// node tests start a cluster of their own.
var (
	shared   *realsched.Cluster
	sharedGW *realsched.Gateway
	// calls records every call that reaches the shared scheduler.
	calls callrec.Recorder
)

const brokenImage = "example/broken:1"

func TestMain(m *testing.M) {
	os.Exit(realsched.Main(m, func(tb testing.TB) {
		shared = realsched.Start(tb, realsched.Options{Nodes: []string{"node-1"}, NoSecrets: true, ServerOptions: calls.ServerOptions()})
		shared.StartAgent(tb, "node-1", sim.Options{FailImages: map[string]persysv1.FailureReason{
			brokenImage: persysv1.FailureReason_FAILURE_REASON_IMAGE_NOT_FOUND}})
		sharedGW = shared.StartGateway(tb, nil)
	}))
}

// cluster is a persysctl config file pointing at a gateway.
type cluster struct {
	config string
	dir    string
}

// startCluster points a config file at the shared gateway.
func startCluster(t *testing.T) *cluster {
	t.Helper()
	return configFor(t, shared.Config(sharedGW))
}

func configFor(t *testing.T, cc *client.Config) *cluster {
	t.Helper()
	dir := t.TempDir()
	cfg := filepath.Join(dir, "config.yaml")
	if err := client.WriteConfig(cfg, cc); err != nil {
		t.Fatal(err)
	}
	// No test may fall back to the real home directory.
	t.Setenv("HOME", filepath.Join(dir, "home"))
	t.Setenv(client.EnvConfig, "")
	return &cluster{config: cfg, dir: dir}
}

// named is webManifest named name, with extra spec lines.
func named(name string, specLines ...string) string {
	m := strings.Replace(webManifest, "name: web", "name: "+name, 1)
	for _, l := range specLines {
		m += "  " + l + "\n"
	}
	return m
}

// unplaceable is a spec line no node matches: the workload stays PENDING.
const unplaceable = "nodeSelector: {zone: nowhere}"

// unreachableGit is a compose workload from a Git repository no server
// answers: the scheduler fails its apply.
func unreachableGit(name string) string {
	return "kind: Workload\nmetadata: {name: " + name + "}\nspec:\n  type: compose\n  compose:\n    git: {url: 'http://127.0.0.1:1/none.git', ref: main}\n"
}

// waitState waits through the gateway until workload name is running or
// failed and returns its status.
func waitState(t *testing.T, gw *realsched.Gateway, rc *realsched.Cluster, name string) *persysv1.WorkloadStatus {
	t.Helper()
	v, err := rc.Client(t, gw).Wait(t.Context(), name, "running", time.Minute)
	if err != nil {
		t.Fatalf("wait for %s: %v", name, err)
	}
	return v.GetStatus()
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
	shared.Forget(t, "gdd")
	c := startCluster(t)
	m := named("gdd")
	file := c.writeManifest(t, "gdd.yaml", m)

	expect(t, c.persysctl(t, "", "apply", "-f", file), 0, []string{"workload/gdd created\n"}, nil)
	expect(t, c.persysctl(t, m, "apply", "-f", "-"), 0, []string{"workload/gdd unchanged\n"}, nil)

	r := c.persysctl(t, "", "get", "workloads")
	expect(t, r, 0, []string{"NAME", "REVISION", "gdd", "CONTAINER"}, nil)

	r = c.persysctl(t, "", "get", "workload", "gdd", "-o", "json")
	expect(t, r, 0, nil, nil)
	view := &persysv1.WorkloadView{}
	if err := contract.UnmarshalJSON(protojson.UnmarshalOptions{}, []byte(r.out), view); err != nil || view.GetWorkload().GetName() != "gdd" {
		t.Fatalf("json output %q: %v", r.out, err)
	}
	expect(t, c.persysctl(t, "", "get", "workload", "gdd", "-o", "yaml"), 0, []string{"name: gdd", "cpuMillis: \"250\""}, nil)

	if st := waitState(t, sharedGW, shared, "gdd"); st.GetState() != persysv1.ActualState_ACTUAL_STATE_RUNNING {
		t.Fatalf("gdd: %v", st)
	}
	expect(t, c.persysctl(t, "", "describe", "workload", "gdd"), 0,
		[]string{"Name:           gdd", "State:          RUNNING", "Image:          example/web:1", "Created", "Placed"}, nil)
	expect(t, c.persysctl(t, "", "describe", "node", "node-1"), 0, []string{"ID:             node-1", "gdd"}, nil)
	expect(t, c.persysctl(t, "", "get", "nodes"), 0, []string{"node-1", "READY"}, nil)
	expect(t, c.persysctl(t, "", "get", "node", "node-1", "-o", "json"), 0, []string{`"id": "node-1"`}, nil)
	expect(t, c.persysctl(t, "", "events", "--workload", "gdd"), 0, []string{"Created", "Placed"}, nil)
	expect(t, c.persysctl(t, "", "cluster", "summary"), 0, []string{"1 total, 1 ready"}, nil)

	expect(t, c.persysctl(t, "", "delete", "workload", "gdd", "--wait"), 0, []string{"workload/gdd deleted\n"}, nil)
	expect(t, c.persysctl(t, "", "get", "workload", "gdd"), 1, nil, []string{`Error: workload "gdd" not found`})
}

func TestApplyWait(t *testing.T) {
	shared.Forget(t, "aw", "aw-broken", "aw-pending")
	c := startCluster(t)
	expect(t, c.persysctl(t, "", "apply", "-f", c.writeManifest(t, "aw.yaml", named("aw")), "--wait", "--timeout", "30s"), 0,
		[]string{"workload/aw created\n", "workload/aw running on node-1 (revision 1)\n"}, nil)

	brokenFile := c.writeManifest(t, "aw-broken.yaml", strings.Replace(named("aw-broken"), "example/web:1", brokenImage, 1))
	expect(t, c.persysctl(t, "", "apply", "-f", brokenFile, "--wait"), 1,
		[]string{"workload/aw-broken created\n"},
		[]string{"Error: workload aw-broken failed: IMAGE_NOT_FOUND: "})

	// A wait that times out fails with the state it saw.
	expect(t, c.persysctl(t, "", "apply", "-f", c.writeManifest(t, "aw-pending.yaml", named("aw-pending", unplaceable)), "--wait", "--timeout", "200ms"), 1,
		nil, []string{"Error: timed out after 200ms waiting for workload \"aw-pending\" to be running (state PENDING, reason NO_FEASIBLE_NODE: 0 of 1 nodes feasible: 1 SELECTOR_MISMATCH)"})

	// retry of a failed workload.
	expect(t, c.persysctl(t, "", "retry", "workload", "aw-broken"), 0, []string{"workload/aw-broken retry requested\n"}, nil)
}

func TestErrors(t *testing.T) {
	c := startCluster(t)
	applies := len(calls.Calls("ApplyWorkload"))
	bad := c.writeManifest(t, "bad.yaml", strings.Replace(named("errors"), "memory: 64Mi", "memory: -64Mi", 1))
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
		{"bad timeout", []string{"delete", "workload", "errors", "--wait", "--timeout", "0s"}, []string{"Error: invalid --timeout"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			expect(t, c.persysctl(t, "", tt.args...), 1, nil, tt.errHas)
		})
	}
	if n := len(calls.Calls("ApplyWorkload")) - applies; n != 0 {
		t.Errorf("the scheduler was called %d times", n)
	}
}

func TestConfigSources(t *testing.T) {
	c := startCluster(t)

	// $PERSYSCTL_CONFIG is used when --config is absent.
	t.Setenv(client.EnvConfig, c.config)
	expect(t, runCLI(t, "", "get", "nodes"), 0, []string{"node-1"}, nil)

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
	expect(t, runCLI(t, "", "get", "nodes"), 0, []string{"node-1"}, nil)
}

// lastDrain is the timeout of the last DrainNode call rec saw.
func lastDrain(t *testing.T, rec *callrec.Recorder) int64 {
	t.Helper()
	cs := rec.Calls("DrainNode")
	if len(cs) == 0 {
		t.Fatal("no DrainNode call reached the scheduler")
	}
	return cs[len(cs)-1].Request.(*persysv1.DrainRequest).GetTimeoutSeconds()
}

// TestNodeCommands cordons and drains the nodes of a cluster of its own:
// a real scheduler with sim agents on node-1 and node-2.
func TestNodeCommands(t *testing.T) {
	rec := &callrec.Recorder{}
	rc := realsched.Start(t, realsched.Options{Nodes: []string{"node-1", "node-2"}, NoSecrets: true, ServerOptions: rec.ServerOptions()})
	rc.StartAgent(t, "node-1", sim.Options{})
	rc.StartAgent(t, "node-2", sim.Options{})
	gw := rc.StartGateway(t, nil)
	c := configFor(t, rc.Config(gw))

	// With node-2 cordoned, web runs on node-1.
	expect(t, c.persysctl(t, "", "node", "cordon", "node-2"), 0, []string{"node/node-2 cordoned\n"}, nil)
	expect(t, c.persysctl(t, "", "get", "nodes"), 0, []string{"READY,CORDONED"}, nil)
	expect(t, c.persysctl(t, "", "node", "cordon", "node-2", "-o", "json"), 0, []string{`"cordoned": true`}, nil)
	expect(t, c.persysctl(t, "", "apply", "-f", c.writeManifest(t, "web.yaml", webManifest)), 0, nil, nil)
	if st := waitState(t, gw, rc, "web"); st.GetNodeId() != "node-1" {
		t.Fatalf("web: %v, want running on node-1", st)
	}

	// Nowhere to go: the drain is incomplete and persysctl fails.
	expect(t, c.persysctl(t, "", "node", "drain", "node-1", "--timeout", "2s"), 1,
		[]string{"workload/web not moved: NO_FEASIBLE_NODE: ", "node/node-1 cordoned, drain incomplete (0 of 1 workloads moved)\n"},
		[]string{"Error: drain of node node-1 incomplete: 1 of 1 workloads did not move within 2s\n"})
	if got := lastDrain(t, rec); got != 2 {
		t.Errorf("timeout_seconds %d, want 2", got)
	}

	expect(t, c.persysctl(t, "", "nodes", "uncordon", "node-2"), 0, []string{"node/node-2 uncordoned\n"}, nil)
	// web may have moved already once node-2 could take it.
	r := c.persysctl(t, "", "node", "drain", "node-1")
	expect(t, r, 0, []string{"node/node-1 drained ("}, nil)
	if strings.Contains(r.out, "workload/web") && !strings.Contains(r.out, "workload/web moved to node-2\n") {
		t.Errorf("drain output %q, want web moved to node-2", r.out)
	}
	if got := lastDrain(t, rec); got != 120 {
		t.Errorf("default timeout_seconds %d, want 120", got)
	}
	if st := waitState(t, gw, rc, "web"); st.GetNodeId() != "node-2" {
		t.Fatalf("web after the drain: %v", st)
	}
	expect(t, c.persysctl(t, "", "describe", "workload", "web"), 0, []string{"Node:           node-2", "Cause:        drain"}, nil)
	expect(t, c.persysctl(t, "", "node", "drain", "node-1", "-o", "json"), 0, []string{`"complete": true`}, nil)

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
	shared.Forget(t, "rl")
	c := startCluster(t)
	file := c.writeManifest(t, "rl.yaml", strings.Replace(named("rl"), "example/web:1", brokenImage, 1))
	expect(t, c.persysctl(t, "", "apply", "-f", file), 0, nil, nil)
	// The failed attempt is counted and the next one planned.
	eventually.Eventually(t, "rl's failed attempt described", time.Minute, func() (bool, string) {
		r := c.persysctl(t, "", "describe", "workload", "rl")
		return strings.Contains(r.out, "Attempts:       ") && strings.Contains(r.out, "Next attempt:   "), r.out
	})
	retries := calls.Named("RetryWorkload", "rl")
	expect(t, c.persysctl(t, "", "workload", "retry", "rl"), 0, []string{"workload/rl retry requested\n"}, nil)
	if n := calls.Named("RetryWorkload", "rl") - retries; n != 1 {
		t.Errorf("RetryWorkload calls = %d, want 1", n)
	}

	expect(t, c.persysctl(t, "", "get", "leader"), 0, []string{"Answered by: the leader\n"}, nil)
	expect(t, c.persysctl(t, "", "cluster", "leader"), 0, []string{"Answered by: the leader\n"}, nil)
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
	c := configFor(t, rc.Config(gw))
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

// batches counts the ApplyWorkloads calls whose first item is named
// first.
func batches(first string) int {
	n := 0
	for _, c := range calls.Calls("ApplyWorkloads") {
		if items := c.Request.(*persysv1.ApplyWorkloadsRequest).GetItems(); len(items) > 0 && items[0].GetName() == first {
			n++
		}
	}
	return n
}

func TestApplyMany(t *testing.T) {
	shared.Forget(t, "am-web", "am-db", "am-cache", "am-solo")
	solo, batched := calls.Named("ApplyWorkload", "am-solo"), batches("am-web")
	c := startCluster(t)
	file := c.writeManifest(t, "stack.yaml", workloads("am-web", "am-db", "am-cache"))
	singles := len(calls.Calls("ApplyWorkload"))

	r := c.persysctl(t, "", "apply", "-f", file)
	expect(t, r, 0, nil, nil)
	if want := "workload/am-web created\nworkload/am-db created\nworkload/am-cache created\n"; r.out != want {
		t.Errorf("stdout %q, want %q", r.out, want)
	}
	if a, b := batches("am-web")-batched, len(calls.Calls("ApplyWorkload"))-singles; a != 1 || b != 0 {
		t.Errorf("ApplyWorkloads calls %d, ApplyWorkload calls %d; want 1 and 0", a, b)
	}
	expect(t, c.persysctl(t, workloads("am-web", "am-db", "am-cache"), "apply", "-f", "-"), 0,
		[]string{"workload/am-web unchanged\nworkload/am-db unchanged\nworkload/am-cache unchanged\n"}, nil)

	r = c.persysctl(t, "", "apply", "-f", file, "-o", "json")
	expect(t, r, 0, nil, nil)
	resp := &persysv1.ApplyWorkloadsResponse{}
	if err := contract.UnmarshalJSON(protojson.UnmarshalOptions{}, []byte(r.out), resp); err != nil || len(resp.GetResults()) != 3 ||
		resp.GetResults()[2].GetName() != "am-cache" || resp.GetResults()[2].GetResult() != "unchanged" {
		t.Fatalf("json output %q: %v", r.out, err)
	}
	expect(t, c.persysctl(t, "", "apply", "-f", file, "-o", "yaml"), 0, []string{"results:\n", "name: am-db\n", "result: unchanged\n"}, nil)

	// One workload that cannot be applied (its Git repository does not
	// answer): its own line, exit status 1.
	failing := c.writeManifest(t, "failing.yaml", workloads("am-web")+unreachableGit("am-db")+"---\n"+strings.TrimPrefix(workloads("am-cache"), "# a stack\n---\n"))
	expect(t, c.persysctl(t, "", "apply", "-f", failing), 1,
		[]string{"workload/am-web unchanged\nworkload/am-db error: spec.compose.git", "\nworkload/am-cache unchanged\n"},
		[]string{"Error: 1 of 3 workloads failed to apply: am-db\n"})
	r = c.persysctl(t, "", "apply", "-f", failing, "-o", "json")
	expect(t, r, 1, []string{`"errorCode": 9`, `"errorMessage": "spec.compose.git`}, []string{"Error: 1 of 3 workloads failed to apply: am-db\n"})

	// An invalid document applies nothing and is named.
	bad := c.writeManifest(t, "bad.yaml", workloads("am-one", "am-two")+strings.Replace(workloads("am-three"), "memory: 64Mi", "memory: -64Mi", 1))
	expect(t, c.persysctl(t, "", "apply", "-f", bad), 1, nil,
		[]string{"Error: invalid manifest\n", "\n  documents[2].spec.resources.memory: must not be negative\n"})
	expect(t, c.persysctl(t, "", "get", "workload", "am-one"), 1, nil, []string{`workload "am-one" not found`})

	// One document between markers is a single apply, as before.
	single := c.writeManifest(t, "single.yaml", workloads("am-solo"))
	expect(t, c.persysctl(t, "", "apply", "-f", single), 0, []string{"workload/am-solo created\n"}, nil)
	if n := calls.Named("ApplyWorkload", "am-solo") - solo; n != 1 {
		t.Errorf("ApplyWorkload calls %d, want 1", n)
	}
}

func TestApplyManyWait(t *testing.T) {
	shared.Forget(t, "amw-web", "amw-db", "amw-job-stopped", "amt-web", "amt-db", "amt-job-stopped")
	c := startCluster(t)
	// amw-db fails on node-1 (its image), amw-job-stopped is stopped.
	stack := strings.Replace(workloads("amw-web", "amw-db", "amw-job-stopped"), "name: amw-db\nspec:\n  type: container\n  container:\n    image: example/web:1", "name: amw-db\nspec:\n  type: container\n  container:\n    image: "+brokenImage, 1)
	file := c.writeManifest(t, "stack.yaml", stack)
	r := c.persysctl(t, "", "apply", "-f", file, "--wait", "--timeout", "30s")
	expect(t, r, 1,
		[]string{"workload/amw-web created\nworkload/amw-db created\nworkload/amw-job-stopped created\n" +
			"workload/amw-web running on node-1 (revision 1)\n" +
			"workload/amw-db failed: IMAGE_NOT_FOUND: ",
			"\nworkload/amw-job-stopped stopped on node-1 (revision 1)\n"},
		[]string{"Error: 1 of 3 workloads failed or timed out while waiting: amw-db\n"})

	// amw-db's image fixed: its revision 2 runs.
	file = c.writeManifest(t, "stack.yaml", workloads("amw-web", "amw-db", "amw-job-stopped"))
	expect(t, c.persysctl(t, "", "apply", "-f", file, "--wait"), 0,
		[]string{"workload/amw-db running on node-1 (revision 2)\n", "workload/amw-job-stopped stopped on node-1 (revision 1)\n"}, nil)

	// -o json prints the answer with each workload as the wait left it.
	r = c.persysctl(t, "", "apply", "-f", file, "--wait", "-o", "json")
	expect(t, r, 0, nil, nil)
	resp := &persysv1.ApplyWorkloadsResponse{}
	if err := contract.UnmarshalJSON(protojson.UnmarshalOptions{}, []byte(r.out), resp); err != nil || len(resp.GetResults()) != 3 {
		t.Fatalf("json output %q: %v", r.out, err)
	}
	if st := resp.GetResults()[1].GetWorkload().GetStatus(); st.GetState() != persysv1.ActualState_ACTUAL_STATE_RUNNING || st.GetNodeId() != "node-1" {
		t.Errorf("amw-db after the wait: %v", st)
	}

	// Waits that time out name every workload; the one not applied is not
	// waited for.
	timeouts := strings.ReplaceAll(workloads("amt-web", "amt-db"), "type: container\n", "type: container\n  "+unplaceable+"\n") + unreachableGit("amt-job-stopped")
	r = c.persysctl(t, "", "apply", "-f", c.writeManifest(t, "timeouts.yaml", timeouts), "--wait", "--timeout", "200ms")
	expect(t, r, 1,
		[]string{"workload/amt-job-stopped error: spec.compose.git",
			"workload/amt-web error: timed out after 200ms waiting for workload \"amt-web\" to be running (state PENDING, reason NO_FEASIBLE_NODE",
			"workload/amt-db error: timed out after 200ms"},
		[]string{"Error: 1 of 3 workloads failed to apply: amt-job-stopped; 2 of 3 workloads failed or timed out while waiting: amt-web, amt-db\n"})
	if n := strings.Count(r.out, "workload/amt-job-stopped"); n != 1 {
		t.Errorf("the workload not applied has %d lines, want 1:\n%s", n, r.out)
	}
}
