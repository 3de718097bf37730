package docker

import (
	"testing"
	"time"

	"github.com/moby/moby/client"

	persysv1 "github.com/persys-dev/compute/api/persys/v1"
	"github.com/persys-dev/compute/internal/runtime"
)

// Two clusters on one engine, each with a node of the same id (the
// default node id was the host name): neither runtime lists, deletes or
// clashes with the other's container, and objects of agents from before
// cluster ids are seen only where the agent adopts them.
func TestClusterScopedRuntimes(t *testing.T) {
	e := newEnv(t)
	node := "node-same-" + randHex(t, 3)
	mk := func(cl *runtime.Cluster) *Runtime {
		rt, err := New(Options{Client: e.cli, StopTimeout: 2 * time.Second, NodeID: node, Cluster: cl})
		if err != nil {
			t.Fatal(err)
		}
		return rt
	}
	clA, clB := runtime.NewCluster(), runtime.NewCluster()
	clA.Set("cluster-a-"+randHex(t, 4), false)
	clB.Set("cluster-b-"+randHex(t, 4), false)
	a, b := mk(clA), mk(clB)
	name, uid := e.workload("clusters")
	spec := e.spec(&persysv1.ContainerSpec{})

	stA, _, err := a.Apply(t.Context(), runtime.Instance{Name: name, UID: uid, Revision: 1, Spec: spec})
	if err != nil {
		t.Fatal(err)
	}
	infoRes, err := e.cli.ContainerInspect(t.Context(), stA.GetRuntimeId(), client.ContainerInspectOptions{})
	info := infoRes.Container
	if err != nil {
		t.Fatal(err)
	}
	if got := info.Config.Labels[runtime.LabelCluster]; got != clA.ID() {
		t.Fatalf("cluster label = %q, want %q", got, clA.ID())
	}
	if got := info.Config.Labels[runtime.LabelNode]; got != node {
		t.Fatalf("node label = %q, want %q", got, node)
	}
	// The same workload name and revision in the other cluster: no clash.
	stB, _, err := b.Apply(t.Context(), runtime.Instance{Name: name, UID: uid, Revision: 1, Spec: spec})
	if err != nil {
		t.Fatalf("the other cluster's copy: %v", err)
	}
	if stB.GetRuntimeId() == stA.GetRuntimeId() {
		t.Fatal("both clusters got the same container")
	}
	for _, rt := range []*Runtime{a, b} {
		if n := countListed(t, rt, name); n != 1 {
			t.Fatalf("cluster %s lists %d copies, want its own 1", rt.cluster.ID(), n)
		}
	}
	// What the orphan collection of cluster B does to a workload its
	// scheduler does not know: it deletes it by name and by uid.
	if existed, err := b.Delete(t.Context(), name, uid); err != nil || !existed {
		t.Fatalf("cluster B's Delete = %v, %v; want its own copy removed", existed, err)
	}
	stillRes, err := e.cli.ContainerInspect(t.Context(), stA.GetRuntimeId(), client.ContainerInspectOptions{})
	still := stillRes.Container
	if err != nil {
		t.Fatalf("cluster B's delete removed cluster A's container: %v", err)
	}
	if !still.State.Running {
		t.Fatalf("cluster A's container is %s after cluster B's delete", still.State.Status)
	}
	if n := countListed(t, a, name); n != 1 {
		t.Fatalf("cluster A lists %d copies after B's delete, want 1", n)
	}

	// A container of an agent from before cluster ids.
	legacyRT, err := New(Options{Client: e.cli, StopTimeout: 2 * time.Second, NodeID: node})
	if err != nil {
		t.Fatal(err)
	}
	old, oldUID := e.workload("legacy")
	if _, _, err := legacyRT.Apply(t.Context(), runtime.Instance{Name: old, UID: oldUID, Revision: 1, Spec: spec}); err != nil {
		t.Fatal(err)
	}
	if n := countListed(t, a, old); n != 0 {
		t.Fatalf("a cluster that does not adopt lists %d unlabelled copies, want 0", n)
	}
	if existed, err := a.Delete(t.Context(), old, ""); err != nil || existed {
		t.Fatalf("a cluster that does not adopt deleted an unlabelled container: %v, %v", existed, err)
	}
	adopting := runtime.NewCluster()
	adopting.Set(clA.ID(), true)
	if n := countListed(t, mk(adopting), old); n != 1 {
		t.Fatalf("an adopting cluster lists %d unlabelled copies, want 1", n)
	}
	if n := countListed(t, mk(adopting), name); n != 1 {
		t.Fatalf("an adopting cluster lists %d copies of its own workload, want 1 (not cluster B's)", n)
	}

	// Before the agent knows its cluster: nothing labelled is seen, and
	// nothing is created.
	unknown := mk(runtime.NewCluster())
	if n := countListed(t, unknown, name); n != 0 {
		t.Fatalf("a runtime without a cluster id lists %d labelled copies, want 0", n)
	}
	if _, _, err := unknown.Apply(t.Context(), runtime.Instance{Name: name, UID: uid, Revision: 2, Spec: spec}); err == nil {
		t.Fatal("Apply without a cluster id succeeded")
	}
}
