package compose

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/moby/moby/client"

	persysv1 "github.com/persys-dev/compute/api/persys/v1"
	"github.com/persys-dev/compute/internal/runtime"
)

// Two clusters on one engine, each with a node of the same id: the
// projects, networks and volumes are apart and labelled with their
// cluster, and one cluster's delete never touches the other's project.
func TestComposeClusterScoped(t *testing.T) {
	h := newHarness(t)
	ctx := ctxT(t)
	mk := func(cluster string) (*Runtime, *runtime.Cluster) {
		cl := runtime.NewCluster()
		cl.Set(cluster, false)
		rt, err := New(Config{NodeID: h.node, Cluster: cl, StateDir: t.TempDir(), Client: h.cli, StopTimeout: 2 * time.Second})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			cctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			list, _ := rt.List(cctx)
			for _, ws := range list {
				_, _ = rt.Delete(cctx, ws.GetName(), "")
			}
			_ = rt.Close()
		})
		return rt, cl
	}
	a, clA := mk("cluster-a-" + randSuffix(t))
	b, clB := mk("cluster-b-" + randSuffix(t))
	name := "app-" + randSuffix(t)
	spec := &persysv1.WorkloadSpec{Compose: &persysv1.ComposeSpec{
		Inline: fmt.Sprintf("services:\n  web:\n    image: %s\n    init: true\n    volumes: [data:/data]\nvolumes:\n  data: {}\n", h.hello),
	}}
	for _, rt := range []*Runtime{a, b} {
		if ws, _, err := rt.Apply(ctx, inst(name, "uid-1", 1, spec)); err != nil || ws.GetState() != persysv1.ActualState_ACTUAL_STATE_RUNNING {
			t.Fatalf("Apply in cluster %s: %v, %v", rt.cfg.Cluster.ID(), ws.GetState(), err)
		}
	}
	projA, projB := ProjectName(h.node, clA.ID(), name), ProjectName(h.node, clB.ID(), name)
	if projA == projB {
		t.Fatalf("both clusters use project %s", projA)
	}
	for _, c := range []struct {
		cl      *runtime.Cluster
		project string
	}{{clA, projA}, {clB, projB}} {
		f := make(client.Filters).Add("label", "com.docker.compose.project="+c.project).Add("label", runtime.LabelCluster+"="+c.cl.ID()).Add("label", runtime.LabelNode+"="+h.node)
		ctrsRes, err := h.cli.ContainerList(ctx, containerListAll(f))
		ctrs := ctrsRes.Items
		if err != nil || len(ctrs) != 1 {
			t.Fatalf("project %s: %d containers labelled with its cluster and node (%v), want 1", c.project, len(ctrs), err)
		}
		netsRes, err := h.cli.NetworkList(ctx, client.NetworkListOptions{Filters: f})
		nets := netsRes.Items
		if err != nil || len(nets) != 1 {
			t.Fatalf("project %s: %d networks labelled with its cluster and node (%v), want 1", c.project, len(nets), err)
		}
		volsRes, err := h.cli.VolumeList(ctx, client.VolumeListOptions{Filters: f})
		vols := volsRes.Items
		if err != nil || len(vols) != 1 {
			t.Fatalf("project %s: %d volumes labelled with its cluster and node (%v), want 1", c.project, len(vols), err)
		}
	}
	list, err := a.List(ctx)
	if err != nil || len(list) != 1 || list[0].GetDetails()["project"] != projA {
		t.Fatalf("cluster A lists %v (%v), want its own project %s only", list, err, projA)
	}
	// Cluster B's orphan collection of the name removes its own project.
	if existed, err := b.Delete(ctx, name, "uid-1"); err != nil || !existed {
		t.Fatalf("cluster B's Delete: %v, %v", existed, err)
	}
	assertGone(t, h.cli, projB, true)
	ws, err := a.Status(ctx, name)
	if err != nil || ws.GetState() != persysv1.ActualState_ACTUAL_STATE_RUNNING {
		t.Fatalf("cluster A's project after B's delete: %v, %v", ws.GetState(), err)
	}
}
