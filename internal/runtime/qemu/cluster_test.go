package qemu

import (
	"context"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"testing"

	persysv1 "github.com/persys-dev/compute/api/persys/v1"
	"github.com/persys-dev/compute/internal/runtime"
)

// Two clusters' agents with the same node id share a host (and here a
// state folder and a pool): each sees and deletes only its own VMs, the
// disks of one workload name are apart, and VMs recorded before cluster
// ids are seen only where the agent adopts them.
func TestClusterScopedVMs(t *testing.T) {
	stateDir, pool := t.TempDir(), t.TempDir()
	if err := os.WriteFile(filepath.Join(pool, "k"), []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	mk := func(id string, adopt bool) *Runtime {
		cl := runtime.NewCluster()
		cl.Set(id, adopt)
		r, err := New(Config{NodeID: "n", Cluster: cl, StateDir: stateDir, Pools: map[string]string{"p": pool}, Accel: "tcg",
			Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
		if err != nil {
			t.Fatal(err)
		}
		return r
	}
	const idA, idB = "0123456789abcdef-cluster-a", "fedcba9876543210-cluster-b"
	a, b := mk(idA, false), mk(idB, false)
	for _, rec := range []*record{
		{Name: "mine", UID: "u1", Revision: 1, Node: "n", Cluster: idA, Desired: desiredStopped, Accel: "tcg"},
		{Name: "theirs", UID: "u2", Revision: 1, Node: "n", Cluster: idB, Desired: desiredStopped, Accel: "tcg"},
		{Name: "legacy", UID: "u3", Revision: 1, Node: "n", Desired: desiredStopped, Accel: "tcg"},
	} {
		if err := os.MkdirAll(filepath.Join(stateDir, rec.Name), 0o700); err != nil {
			t.Fatal(err)
		}
		if err := a.saveRecord(rec); err != nil {
			t.Fatal(err)
		}
	}
	ctx := context.Background()
	names := func(r *Runtime) []string {
		t.Helper()
		l, err := r.List(ctx)
		if err != nil {
			t.Fatal(err)
		}
		var out []string
		for _, st := range l {
			out = append(out, st.GetName())
		}
		return out
	}
	if got := names(a); !slices.Equal(got, []string{"mine"}) {
		t.Errorf("cluster A lists %v, want [mine]", got)
	}
	if got := names(b); !slices.Equal(got, []string{"theirs"}) {
		t.Errorf("cluster B lists %v, want [theirs]", got)
	}
	if got := names(mk(idA, true)); !slices.Equal(got, []string{"legacy", "mine"}) {
		t.Errorf("cluster A adopting unlabelled VMs lists %v, want [legacy mine]", got)
	}
	// Cluster A's orphan collection cannot reach cluster B's VM.
	if existed, err := a.Delete(ctx, "theirs", ""); err != nil || existed {
		t.Errorf("cluster A's Delete of B's VM = %v, %v; want false, nil", existed, err)
	}
	if _, err := os.Stat(filepath.Join(stateDir, "theirs", recordFile)); err != nil {
		t.Errorf("cluster B's VM folder after A's delete: %v", err)
	}
	// Nor start over it.
	vm := &persysv1.VMSpec{KernelBoot: &persysv1.VMKernelBoot{Pool: "p", Kernel: "k"},
		Disks: []*persysv1.VMDisk{{Name: "root", Pool: "p", SizeBytes: 1 << 20}}}
	if _, _, err := a.Apply(ctx, vmInstance("theirs", "u9", 1, 0, vm)); err == nil {
		t.Error("cluster A applied over cluster B's VM folder")
	}
	// One workload name in both clusters: the disks are apart.
	pa, err := a.buildPlan(vmInstance("web", "u", 1, 0, vm))
	if err != nil {
		t.Fatal(err)
	}
	pb, err := b.buildPlan(vmInstance("web", "u", 1, 0, vm))
	if err != nil {
		t.Fatal(err)
	}
	if want := filepath.Join(pool, "persys", "n", idA[:12], "web", "root.qcow2"); pa.disks[0].Path != want {
		t.Errorf("cluster A's disk = %s, want %s", pa.disks[0].Path, want)
	}
	if pa.disks[0].Path == pb.disks[0].Path {
		t.Errorf("both clusters' disks are %s", pa.disks[0].Path)
	}
}
