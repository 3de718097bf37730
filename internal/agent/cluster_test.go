package agent_test

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	persysv1 "github.com/persys-dev/compute/api/persys/v1"
	"github.com/persys-dev/compute/internal/agent"
	"github.com/persys-dev/compute/internal/runtime"
	"github.com/persys-dev/compute/internal/runtime/docker"
	"github.com/persys-dev/compute/internal/testutil/callrec"
	"github.com/persys-dev/compute/internal/testutil/eventually"
	"github.com/persys-dev/compute/internal/testutil/realsched"
)

// clusterEnv runs agents of one node id, unique to the test, whose docker
// runtime is scoped by the agent's cluster, as persys agent builds them.
type clusterEnv struct {
	*env
	node string
}

// newClusterEnv is a real scheduler that records the calls it answers,
// for agents of a node id of this test's own, and the Docker engine.
func newClusterEnv(t *testing.T) (*clusterEnv, *realEnv) {
	t.Helper()
	r := newDockerEnv(t, nil)
	return &clusterEnv{env: r.env, node: r.node}, r
}

// registrationAt waits for the registration with index i that the
// scheduler answered, and returns it with the cluster id it told.
func (r *realEnv) registrationAt(t *testing.T, i int) (*persysv1.RegisterNodeRequest, string) {
	t.Helper()
	var got callrec.Call
	eventually.Eventually(t, fmt.Sprintf("registration %d", i), waitFor, func() (bool, string) {
		var regs []callrec.Call
		for _, c := range nodeCalls(r.rec, r.addr, true) {
			if c.Method == "RegisterNode" {
				regs = append(regs, c)
			}
		}
		if len(regs) <= i {
			return false, fmt.Sprintf("%d registrations", len(regs))
		}
		got = regs[i]
		return true, ""
	})
	return got.Request.(*persysv1.RegisterNodeRequest), got.Response.(*persysv1.RegisterNodeResponse).GetClusterId()
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
	eventually.Eventually(t, "the agent ready", waitFor, func() (bool, string) {
		if err := a.Ready(); err != nil {
			return false, err.Error()
		}
		return true, ""
	})
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
	e, r := newClusterEnv(t)
	foreign, legacy, own := e.prefix+"-foreign", e.prefix+"-legacy", e.prefix+"-own"
	e.run(t, foreign, "cluster-two-0123456789")
	e.run(t, legacy, "")
	dataDir := t.TempDir()

	ra := e.start(t, dataDir)
	first, cluster := r.registrationAt(t, 0)
	if first.GetInstanceId() == "" || first.GetClusterId() != "" || cluster == "" {
		t.Fatalf("first registration: instance %q, cluster %q, told %q; want an instance, no cluster, and one told", first.GetInstanceId(), first.GetClusterId(), cluster)
	}
	if got := names(first.GetWorkloads()); len(got) != 0 {
		t.Fatalf("first registration reports %v before the agent knows its cluster, want nothing", got)
	}
	waitReady(t, ra.agent)
	if got := ra.agent.ClusterID(); got != cluster {
		t.Fatalf("ClusterID() = %q, want %q", got, cluster)
	}
	b, err := os.ReadFile(filepath.Join(dataDir, "cluster.json"))
	if err != nil {
		t.Fatalf("cluster record: %v", err)
	}
	var rec struct {
		ClusterID       string `json:"cluster_id"`
		AdoptUnlabelled bool   `json:"adopt_unlabelled"`
	}
	if err := json.Unmarshal(b, &rec); err != nil || rec.ClusterID != cluster || rec.AdoptUnlabelled {
		t.Fatalf("cluster record %s (%v): want %s, no adoption", b, err, cluster)
	}

	r.apply(t, own, e.spec(0, 0))
	waitAgentState(t, ra, own, "running", func(st *persysv1.WorkloadStatus) bool {
		return st.GetState() == persysv1.ActualState_ACTUAL_STATE_RUNNING
	})
	for _, c := range e.containers(t, own) {
		if c.Labels[runtime.LabelCluster] != cluster || c.Labels[runtime.LabelNode] != e.node {
			t.Fatalf("%s carries cluster %q node %q", own, c.Labels[runtime.LabelCluster], c.Labels[runtime.LabelNode])
		}
	}
	// The full list that follows own's start (later ones may be its
	// digest alone).
	hb := r.waitHeartbeat(t, 0, "a full heartbeat with "+own, func(h *persysv1.HeartbeatRequest) bool {
		return findWorkload(h.GetWorkloads(), own) != nil
	})
	if got := names(hb.GetWorkloads()); len(got) != 1 {
		t.Fatalf("heartbeat reports %v, want only %s", got, own)
	}
	ra.stop()

	// A restart: same instance, same cluster, its workload reported at
	// registration.
	ra = e.start(t, dataDir)
	again, _ := r.registrationAt(t, 1)
	if again.GetInstanceId() != first.GetInstanceId() || again.GetClusterId() != cluster {
		t.Fatalf("after a restart: instance %q cluster %q; want %q and %q", again.GetInstanceId(), again.GetClusterId(), first.GetInstanceId(), cluster)
	}
	if got := names(again.GetWorkloads()); len(got) != 1 || got[0] != own {
		t.Fatalf("registration after a restart reports %v, want [%s]", got, own)
	}
	ra.stop()

	// A scheduler of another cluster (a store of its own): the agent does
	// not take its id.
	other := realsched.Start(t, realsched.Options{Bundle: r.s.Bundle, NoSecrets: true, Config: shortLeases})
	e.addr, e.sched = other.Addrs[0], other
	ra = e.start(t, dataDir)
	eventually.Eventually(t, "the agent to see another cluster's scheduler", waitFor, func() (bool, string) {
		err := ra.agent.Ready()
		return err != nil && strings.Contains(err.Error(), "another cluster"), fmt.Sprint(err)
	})
	if got := ra.agent.ClusterID(); got != cluster {
		t.Fatalf("ClusterID() = %q after another cluster's scheduler, want the recorded one %q", got, cluster)
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
	e, r := newClusterEnv(t)
	foreign, legacy := e.prefix+"-foreign", e.prefix+"-legacy"
	e.run(t, foreign, "cluster-two-0123456789")
	e.run(t, legacy, "")
	dataDir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dataDir, "allocations.json"), []byte("{}"), 0o600); err != nil {
		t.Fatal(err)
	}
	ra := e.start(t, dataDir)
	first, _ := r.registrationAt(t, 0)
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
