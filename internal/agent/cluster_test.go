package agent_test

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	persysv1 "github.com/persys-dev/compute/api/persys/v1"
	"github.com/persys-dev/compute/internal/agent"
	"github.com/persys-dev/compute/internal/runtime"
	"github.com/persys-dev/compute/internal/runtime/docker"
)

// clusterEnv runs agents of one node id, unique to the test, whose docker
// runtime is scoped by the agent's cluster, as persys agent builds them.
type clusterEnv struct {
	*env
	node string
}

func newClusterEnv(t *testing.T, control *recordingControl) *clusterEnv {
	e := newEnv(t, control)
	return &clusterEnv{env: e, node: e.prefix + "-node"}
}

func (e *clusterEnv) scopedRuntime(t *testing.T, cl *runtime.Cluster) *docker.Runtime {
	t.Helper()
	rt, err := docker.New(docker.Options{Client: e.cli, Logger: testLogger(), StopTimeout: 2 * time.Second, NodeID: e.node, Cluster: cl})
	if err != nil {
		t.Fatal(err)
	}
	return rt
}

func (e *clusterEnv) start(t *testing.T, dataDir string) *runningAgent {
	t.Helper()
	cl := runtime.NewCluster()
	return e.startAgent(t, dataDir, func(c *agent.Config) {
		c.NodeID = e.node
		c.Cluster = cl
		c.Runtimes = []runtime.Runtime{e.scopedRuntime(t, cl)}
	})
}

// run makes a container of workload name on the test's node: with cluster
// "" as an agent from before cluster ids did, else as that cluster's.
func (e *clusterEnv) run(t *testing.T, name, cluster string) {
	t.Helper()
	var cl *runtime.Cluster
	if cluster != "" {
		cl = runtime.NewCluster()
		cl.Set(cluster, false)
	}
	rt, err := docker.New(docker.Options{Client: e.cli, Logger: testLogger(), StopTimeout: 2 * time.Second, NodeID: e.node, Cluster: cl})
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := rt.Apply(context.Background(), runtime.Instance{Name: name, UID: "uid-" + name, Revision: 1, Spec: e.spec(0, 0)}); err != nil {
		t.Fatalf("run %s: %v", name, err)
	}
}

// waitReady waits until the agent's registration (or a heartbeat) went
// through, response handled.
func waitReady(t *testing.T, a *agent.Agent) {
	t.Helper()
	deadline := time.Now().Add(waitFor)
	for a.Ready() != nil {
		if time.Now().After(deadline) {
			t.Fatalf("agent not ready within %s: %v", waitFor, a.Ready())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func names(ws []*persysv1.WorkloadStatus) []string {
	var out []string
	for _, w := range ws {
		out = append(out, w.GetName())
	}
	return out
}

// A fresh data dir: the agent reports nothing before it knows its cluster
// (not another cluster's container of its node id, not an unlabelled one),
// records the cluster told at the first registration, and from then on
// reports only that cluster's; a restart is the same instance of the same
// cluster, and a scheduler of another cluster is refused.
func TestAgentLearnsItsCluster(t *testing.T) {
	control := &recordingControl{clusterID: "cluster-one-0123456789"}
	e := newClusterEnv(t, control)
	foreign, legacy, own := e.prefix+"-foreign", e.prefix+"-legacy", e.prefix+"-own"
	e.run(t, foreign, "cluster-two-0123456789")
	e.run(t, legacy, "")
	dataDir := t.TempDir()

	ra := e.start(t, dataDir)
	first := control.waitRegister(t, 0)
	if first.GetInstanceId() == "" || first.GetClusterId() != "" {
		t.Fatalf("first registration: instance %q, cluster %q; want an instance and no cluster", first.GetInstanceId(), first.GetClusterId())
	}
	if got := names(first.GetWorkloads()); len(got) != 0 {
		t.Fatalf("first registration reports %v before the agent knows its cluster, want nothing", got)
	}
	waitReady(t, ra.agent)
	if got := ra.agent.ClusterID(); got != control.clusterID {
		t.Fatalf("ClusterID() = %q, want %q", got, control.clusterID)
	}
	b, err := os.ReadFile(filepath.Join(dataDir, "cluster.json"))
	if err != nil {
		t.Fatalf("cluster record: %v", err)
	}
	var rec struct {
		ClusterID       string `json:"cluster_id"`
		AdoptUnlabelled bool   `json:"adopt_unlabelled"`
	}
	if err := json.Unmarshal(b, &rec); err != nil || rec.ClusterID != control.clusterID || rec.AdoptUnlabelled {
		t.Fatalf("cluster record %s (%v): want %s, no adoption", b, err, control.clusterID)
	}

	resp := apply(t, ra.client, &persysv1.ApplyWorkloadRequest{Name: own, Uid: "uid-own", Revision: 1, Spec: e.spec(0, 0)})
	if resp.GetStatus().GetState() != persysv1.ActualState_ACTUAL_STATE_RUNNING {
		t.Fatalf("apply %s: %v", own, resp.GetStatus())
	}
	for _, c := range e.containers(t, own) {
		if c.Labels[runtime.LabelCluster] != control.clusterID || c.Labels[runtime.LabelNode] != e.node {
			t.Fatalf("%s carries cluster %q node %q", own, c.Labels[runtime.LabelCluster], c.Labels[runtime.LabelNode])
		}
	}
	_, hbs := control.counts()
	ra.agent.Kick()
	hb := control.waitHeartbeat(t, hbs, "a full heartbeat with "+own, func(h *persysv1.HeartbeatRequest) bool {
		return findWorkload(h.GetWorkloads(), own) != nil
	})
	if got := names(hb.GetWorkloads()); len(got) != 1 {
		t.Fatalf("heartbeat reports %v, want only %s", got, own)
	}
	ra.stop()

	// A restart: same instance, same cluster, its workload reported at
	// registration.
	regs, _ := control.counts()
	ra = e.start(t, dataDir)
	again := control.waitRegister(t, regs)
	if again.GetInstanceId() != first.GetInstanceId() || again.GetClusterId() != control.clusterID {
		t.Fatalf("after a restart: instance %q cluster %q; want %q and %q", again.GetInstanceId(), again.GetClusterId(), first.GetInstanceId(), control.clusterID)
	}
	if got := names(again.GetWorkloads()); len(got) != 1 || got[0] != own {
		t.Fatalf("registration after a restart reports %v, want [%s]", got, own)
	}
	ra.stop()

	// A scheduler of another cluster: the agent does not take its id.
	control.mu.Lock()
	control.clusterID = "cluster-three-0123456789"
	control.mu.Unlock()
	regs, _ = control.counts()
	ra = e.start(t, dataDir)
	control.waitRegister(t, regs)
	mismatch := func() bool {
		err := ra.agent.Ready()
		return err != nil && strings.Contains(err.Error(), "another cluster")
	}
	for deadline := time.Now().Add(waitFor); !mismatch() && time.Now().Before(deadline); {
		time.Sleep(20 * time.Millisecond)
	}
	if err := ra.agent.Ready(); !mismatch() {
		t.Fatalf("Ready with another cluster's scheduler = %v, want the mismatch", err)
	}
	if got := ra.agent.ClusterID(); got != "cluster-one-0123456789" {
		t.Fatalf("ClusterID() = %q after another cluster's scheduler, want the recorded one", got)
	}
	for _, name := range []string{foreign, legacy, own} {
		if len(e.containers(t, name)) != 1 {
			t.Errorf("%s: %d containers, want 1 (the agent removes nothing)", name, len(e.containers(t, name)))
		}
	}
}

// A data dir an agent used before cluster ids (an allocation record, no
// cluster record): that agent made the unlabelled containers of its node,
// so they are reported (and the scheduler keeps or collects them as
// before); another cluster's never are.
func TestAgentAdoptsUnlabelledOfItsOldDataDir(t *testing.T) {
	control := &recordingControl{clusterID: "cluster-one-0123456789"}
	e := newClusterEnv(t, control)
	foreign, legacy := e.prefix+"-foreign", e.prefix+"-legacy"
	e.run(t, foreign, "cluster-two-0123456789")
	e.run(t, legacy, "")
	dataDir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dataDir, "allocations.json"), []byte("{}"), 0o600); err != nil {
		t.Fatal(err)
	}
	ra := e.start(t, dataDir)
	first := control.waitRegister(t, 0)
	if got := names(first.GetWorkloads()); len(got) != 1 || got[0] != legacy {
		t.Fatalf("first registration reports %v, want [%s]", got, legacy)
	}
	waitReady(t, ra.agent)
	b, err := os.ReadFile(filepath.Join(dataDir, "cluster.json"))
	if err != nil || !strings.Contains(string(b), `"adopt_unlabelled":true`) {
		t.Fatalf("cluster record %s (%v): want adoption recorded", b, err)
	}
}

// The default node id is unique per data dir and stable for one.
func TestDefaultNodeID(t *testing.T) {
	d1, d2 := t.TempDir(), t.TempDir()
	id1, err := agent.DefaultNodeID(d1)
	if err != nil {
		t.Fatal(err)
	}
	id2, err := agent.DefaultNodeID(d2)
	if err != nil {
		t.Fatal(err)
	}
	if id1 == id2 {
		t.Fatalf("two data dirs share the default node id %s", id1)
	}
	again, err := agent.DefaultNodeID(filepath.Join(d1, "x", ".."))
	if err != nil || again != id1 {
		t.Fatalf("DefaultNodeID of the same dir = %q, %v; want %q", again, err, id1)
	}
	host, _ := os.Hostname()
	if !strings.HasPrefix(id1, strings.ToLower(host)+"-") {
		t.Fatalf("default node id %q does not start with the host name %q", id1, host)
	}
}
