package bench

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/moby/moby/client"

	"github.com/persys-dev/compute/internal/testutil/images"
	"github.com/persys-dev/compute/internal/testutil/need"
)

func TestBurstOptionsDefaults(t *testing.T) {
	ok := func() BurstOptions { return BurstOptions{Persys: "persys", Image: "img", Dir: "d"} }
	tests := []struct {
		name    string
		edit    func(*BurstOptions)
		wantErr string
	}{
		{"defaults", func(*BurstOptions) {}, ""},
		{"no binary", func(o *BurstOptions) { o.Persys = "" }, "persys binary"},
		{"no image", func(o *BurstOptions) { o.Image = " " }, "image"},
		{"no dir", func(o *BurstOptions) { o.Dir = "" }, "data dir"},
		{"too many workloads", func(o *BurstOptions) { o.Workloads = 1001 }, "workloads 1001"},
		{"negative rounds", func(o *BurstOptions) { o.Rounds = -1 }, "rounds -1"},
		{"memory below the engine's minimum", func(o *BurstOptions) { o.MemoryBytes = 1 << 20 }, "memory"},
		{"negative docker concurrency", func(o *BurstOptions) { o.DockerConcurrency = -2 }, "docker concurrency -2"},
		{"negative timeout", func(o *BurstOptions) { o.Timeout = -time.Second }, "timeout"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			o := ok()
			tc.edit(&o)
			err := o.defaults()
			if tc.wantErr == "" {
				if err != nil || o.Workloads != 100 || o.Rounds != 3 || o.CPUMillis != 10 || o.MemoryBytes != 8<<20 || o.Timeout != 5*time.Minute {
					t.Fatalf("defaults: %+v, %v", o, err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("error %v, want one naming %q", err, tc.wantErr)
			}
		})
	}
}

func TestSpreadOf(t *testing.T) {
	tests := []struct {
		name string
		in   []float64
		want Spread
	}{
		{"none", nil, Spread{}},
		{"one", []float64{2}, Spread{1, 2, 2, 2}},
		{"odd, unsorted", []float64{3, 1, 2}, Spread{3, 1, 2, 3}},
		{"even: mean of the middle two", []float64{4, 1, 3, 2}, Spread{4, 1, 2.5, 4}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := spreadOf(tc.in); got != tc.want {
				t.Fatalf("spreadOf(%v) = %+v, want %+v", tc.in, got, tc.want)
			}
		})
	}
}

// persysBinary builds ./cmd/persys once per test binary; TestMain
// removes it (removeBuiltPersys).
var persysBinary = sync.OnceValues(func() (string, error) {
	root, err := images.ModuleRoot()
	if err != nil {
		return "", err
	}
	dir, err := os.MkdirTemp("", "persys-burst-bin-")
	if err != nil {
		return "", err
	}
	builtPersysDir.Store(dir)
	bin := filepath.Join(dir, "persys")
	cmd := exec.Command("go", "build", "-o", bin, "./cmd/persys")
	cmd.Dir = root
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go build ./cmd/persys: %w: %s", err, out)
	}
	return bin, nil
})

// builtPersysDir is the folder persysBinary built into, if it did.
var builtPersysDir atomic.Value

// removeBuiltPersys removes the binary persysBinary built, once every
// test is done.
func removeBuiltPersys() {
	if dir, ok := builtPersysDir.Load().(string); ok {
		_ = os.RemoveAll(dir)
	}
}

// burstSetup builds the persys binary and the hello image; it fails under
// CI when Docker is missing, and skips elsewhere.
func burstSetup(t *testing.T) (persys string, docker *client.Client, image string) {
	t.Helper()
	if testing.Short() {
		need.Missing(t, "-short: this test runs persys dev on the real Docker engine")
	}
	docker, image = images.HelloImage(t)
	persys, err := persysBinary()
	if err != nil {
		t.Fatalf("build persys: %v", err)
	}
	return persys, docker, image
}

// leftBehind fails t if the engine still holds a container of run or dir
// holds anything.
func leftBehind(t *testing.T, docker *client.Client, run, dir string) {
	t.Helper()
	f := make(client.Filters).Add("label", BurstLabel+"="+run)
	res, err := docker.ContainerList(context.Background(), client.ContainerListOptions{All: true, Filters: f})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Items) != 0 {
		t.Errorf("%d containers of run %s left behind", len(res.Items), run)
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		t.Errorf("left behind in the data dir: %s", e.Name())
	}
}

// TestBurstSmallRound runs one round of 5 workloads through a real persys
// dev and 5 docker runs, and checks that both sides ran them all and that
// nothing is left.
func TestBurstSmallRound(t *testing.T) {
	persys, docker, image := burstSetup(t)
	dir := t.TempDir()
	var progress strings.Builder
	rep, err := RunBurst(context.Background(), BurstOptions{
		Persys: persys, Image: image, Workloads: 5, Rounds: 1, Dir: dir, Timeout: 3 * time.Minute, Progress: &progress,
	})
	if err != nil {
		t.Fatalf("burst: %v\n%s", err, progress.String())
	}
	if len(rep.Rounds) != 1 || rep.Persys.N != 1 || rep.Docker.N != 1 {
		t.Fatalf("report %+v, want one round of each side", rep)
	}
	r := rep.Rounds[0]
	if r.PersysRunning <= 0 || r.DockerRunning <= 0 || rep.Ratio <= 0 {
		t.Errorf("round %+v, ratio %v: want positive times", r, rep.Ratio)
	}
	// The engine started every container before the side saw it running.
	if r.Persys.LastStarted > r.PersysRunning || r.Docker.LastStarted > r.DockerRunning {
		t.Errorf("engine records %+v / %+v after the times seen %v / %v", r.Persys, r.Docker, r.PersysRunning, r.DockerRunning)
	}
	var table strings.Builder
	if err := rep.WriteTable(&table); err != nil || !strings.Contains(table.String(), "persys / docker") {
		t.Errorf("table (%v):\n%s", err, table.String())
	}
	leftBehind(t, docker, rep.Run, dir)
}

// TestBurstInterrupted ends a run while the dev node is starting its
// containers, as Ctrl-C does: the run fails and leaves nothing behind.
func TestBurstInterrupted(t *testing.T) {
	persys, docker, image := burstSetup(t)
	dir := t.TempDir()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	// Cancelled a moment after the dev cluster is ready, with the
	// round's workloads applied and some of their containers made.
	w := &cancelOn{line: "dev cluster ready", after: 1500 * time.Millisecond, cancel: cancel}
	rep, err := RunBurst(ctx, BurstOptions{Persys: persys, Image: image, Workloads: 20, Rounds: 1, Dir: dir, Progress: w})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("error %v, want the interrupt's", err)
	}
	if rep == nil {
		t.Fatalf("no report: %v", err)
	}
	t.Logf("interrupted: %v", err)
	var table strings.Builder
	if err := rep.WriteTable(&table); err != nil || !strings.Contains(table.String(), "no round finished") || strings.Contains(table.String(), "median") {
		t.Errorf("table of a run with no round (%v):\n%s", err, table.String())
	}
	leftBehind(t, docker, rep.Run, dir)
}

// cancelOn calls cancel a while after a progress line contains line.
type cancelOn struct {
	line   string
	after  time.Duration
	cancel context.CancelFunc
	once   sync.Once
}

func (c *cancelOn) Write(p []byte) (int, error) {
	if strings.Contains(string(p), c.line) {
		c.once.Do(func() { time.AfterFunc(c.after, c.cancel) })
	}
	return len(p), nil
}
