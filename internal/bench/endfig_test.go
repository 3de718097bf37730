package bench

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"runtime/pprof"
	"strings"
	"testing"
	"time"

	"github.com/persys-dev/compute/internal/testutil/need"

	"github.com/persys-dev/compute/internal/testutil/eventually"
)

func TestFileNeeds(t *testing.T) {
	tests := []struct {
		name        string
		o           ClusterOptions
		bench, schd uint64
	}{
		{"shared", ClusterOptions{Nodes: 10000}, fileMargin, fileMargin},
		{"mtls in one process", ClusterOptions{Nodes: 10000, MTLS: true}, fileMargin + 40000, fileMargin},
		{"mtls with a scheduler process", ClusterOptions{Nodes: 10000, MTLS: true, SchedulerProcess: true}, fileMargin + 20000, fileMargin + 20000},
		{"extra files", ClusterOptions{Nodes: 1, ExtraFiles: 10}, fileMargin + 10, fileMargin + 10},
		{"one mtls connection per node", ClusterOptions{Nodes: 10000, MTLS: true, MTLSConns: 1, SchedulerProcess: true}, fileMargin + 10000, fileMargin + 10000},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			b, s := tc.o.fileNeeds()
			if b != tc.bench || s != tc.schd {
				t.Fatalf("fileNeeds = %d, %d; want %d, %d", b, s, tc.bench, tc.schd)
			}
		})
	}
	err := (&ClusterOptions{Nodes: 20000, MTLS: true}).fileLimitError(os.ErrPermission)
	for _, want := range []string{"--mtls", "--nodes 20000", "ulimit -Hn", "--mtls-conns 1"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not name %s", err, want)
		}
	}
}

func TestTimeline(t *testing.T) {
	start := time.Unix(1000, 0)
	tl := newTimeline(start, 10*time.Second)
	at := func(s float64) time.Time { return start.Add(time.Duration(s * float64(time.Second))) }
	tl.observe(at(1), 10, 0, false)      // not due
	tl.observe(at(10), 1000, 500, false) // due
	tl.observe(at(15), 1500, 900, false) // not due
	tl.observe(at(25), 3000, 2500, false)
	tl.observe(at(26), 3100, 3100, true) // the end
	tl.observe(at(26), 3100, 3100, true) // the end again: no second line
	want := []TimelineSample{{10, 1000, 100, 500}, {25, 3000, 2000.0 / 15, 2500}, {26, 3100, 100, 3100}}
	if len(tl.samples) != len(want) {
		t.Fatalf("samples %+v, want %+v", tl.samples, want)
	}
	for i := range want {
		if tl.samples[i] != want[i] {
			t.Fatalf("sample %d = %+v, want %+v", i, tl.samples[i], want[i])
		}
	}
}

// busyLoopForProfile spins so that a CPU profile finds it.
//
//go:noinline
func busyLoopForProfile(d time.Duration) int {
	n := 0
	for end := time.Now().Add(d); time.Now().Before(end); {
		for i := range 100000 {
			n += i % 7
		}
	}
	return n
}

func TestTopOfProfile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "cpu.pprof")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		t.Fatal(err)
	}
	busyLoopForProfile(500 * time.Millisecond)
	pprof.StopCPUProfile()
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	top, err := TopOfProfile(path, cpuTopN)
	if err != nil {
		t.Fatal(err)
	}
	if top.Seconds <= 0 || len(top.Flat) == 0 || len(top.Flat) > cpuTopN || len(top.Cum) > cpuTopN {
		t.Fatalf("top: %+v", top)
	}
	found := false
	for _, fn := range top.Cum {
		if strings.HasSuffix(fn.Func, ".busyLoopForProfile") {
			found = fn.Share > 0.5
		}
	}
	if !found {
		t.Fatalf("busyLoopForProfile is not the heaviest by cumulative CPU: %+v", top.Cum)
	}
	for i := 1; i < len(top.Flat); i++ {
		if top.Flat[i].Seconds > top.Flat[i-1].Seconds {
			t.Fatalf("flat not sorted: %+v", top.Flat)
		}
	}
	var out strings.Builder
	if err := top.write(&out); err != nil || !strings.Contains(out.String(), "busyLoopForProfile") {
		t.Fatalf("written (%v):\n%s", err, out.String())
	}
	if _, err := TopOfProfile(filepath.Join(t.TempDir(), "none"), 5); err == nil {
		t.Fatal("a missing profile gave no error")
	}
	bad := filepath.Join(t.TempDir(), "bad")
	_ = os.WriteFile(bad, []byte("not a profile"), 0o644)
	if _, err := TopOfProfile(bad, 5); err == nil {
		t.Fatal("a file that is no profile gave no error")
	}
}

// TestQuotaExceededFailsTheRun fills a small etcd quota and checks that
// the cluster reports it, naming the flag, instead of waiting.
func TestQuotaExceededFailsTheRun(t *testing.T) {
	if testing.Short() {
		need.Missing(t, "-short: this test starts etcd and a hollow cluster")
	}
	ctx := context.Background()
	c, err := StartCluster(ctx, ClusterOptions{Nodes: 1, Dir: t.TempDir(), EtcdNoFsync: true, EtcdQuotaBytes: 1 << 20})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	// etcd checks the quota against the database file, which grows as its
	// write batches commit (every 100 ms): puts go on until one is
	// refused, up to 64 MiB.
	big := strings.Repeat("x", 64<<10)
	var putErr error
	for i := 0; i < 1024 && putErr == nil; i++ {
		_, putErr = c.Store.Client().Put(ctx, fmt.Sprintf("/quota-test/%d", i), big)
	}
	if putErr == nil || !strings.Contains(putErr.Error(), "database space exceeded") {
		t.Fatalf("64 MiB into a 1 MiB quota: %v", putErr)
	}
	eventually.Eventually(t, "the cluster failing on NOSPACE", 30*time.Second, eventually.True(func() bool { return c.failed() != nil }))
	err = c.failed()
	if err == nil || !strings.Contains(err.Error(), "NOSPACE") || !strings.Contains(err.Error(), "--etcd-quota") {
		t.Fatalf("cluster error %v, want one naming NOSPACE and --etcd-quota", err)
	}
}
