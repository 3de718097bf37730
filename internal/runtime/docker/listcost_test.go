package docker

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/moby/moby/client"

	persysv1 "github.com/persys-dev/compute/api/persys/v1"
	"github.com/persys-dev/compute/internal/runtime"
	"github.com/persys-dev/compute/internal/testutil/images"
)

// BenchmarkHeartbeatList measures what the agent's heartbeat listing costs
// on one node with many running containers: List every 2 s, as the
// agent's heartbeat does, for a window, once the old way (list and
// inspect live on every call) and once from the event-fed cache (a Watch
// active, as in the agent). It reports the Engine API calls per minute
// (counted on the client), the CPU time of each List call and the
// process's and the engine's CPU over the window. One iteration takes two
// windows plus starting the containers; run it alone:
//
//	go test -run '^$' -bench HeartbeatList -benchtime 1x ./internal/runtime/docker/
//
// PERSYS_LIST_CONTAINERS (default 100) and PERSYS_LIST_WINDOW (default
// 60s) change the load.
func BenchmarkHeartbeatList(b *testing.B) {
	n := envInt(b, "PERSYS_LIST_CONTAINERS", 100)
	window := envDuration(b, "PERSYS_LIST_WINDOW", time.Minute)
	const every = 2 * time.Second

	cli, tag := images.HelloImage(b)
	cc, counter := countingClient(b, cli)
	node := "bench-" + randHex(b, 4)
	b.Cleanup(func() { removeNode(b, cli, node) })
	rt, err := New(Options{Client: cc, NodeID: node, StopTimeout: time.Second, SecretsDir: b.TempDir(),
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = rt.Close() })
	startMany(b, rt, tag, n)

	before := measureList(b, "live list", rt.listLive, n, counter, window, every)
	ctx, cancel := context.WithCancel(b.Context())
	defer cancel()
	ch, err := rt.Watch(ctx)
	if err != nil {
		b.Fatal(err)
	}
	go func() {
		// The measure wants the cache, not the names.
		for range ch {
		}
	}()
	for _, ok := rt.cache.list(rt.cluster.Owns); !ok; _, ok = rt.cache.list(rt.cluster.Owns) {
		time.Sleep(10 * time.Millisecond)
	}
	after := measureList(b, "cache", rt.List, n, counter, window, every)
	b.ReportMetric(before.callsPerMin, "live-api-calls/min")
	b.ReportMetric(after.callsPerMin, "cache-api-calls/min")
	b.ReportMetric(float64(before.median())/1e6, "live-list-cpu-ms")
	b.ReportMetric(float64(after.median())/1e6, "cache-list-cpu-ms")
}

// listCost is one window's measure.
type listCost struct {
	cpu         []time.Duration // per List call
	callsPerMin float64
}

func (c listCost) median() time.Duration {
	s := slices.Clone(c.cpu)
	slices.Sort(s)
	return s[len(s)/2]
}

func measureList(b *testing.B, mode string, list func(context.Context) ([]*persysv1.WorkloadStatus, error), want int, counter *apiCounter, window, every time.Duration) listCost {
	b.Helper()
	var cost listCost
	var wall []time.Duration
	counter.reset()
	proc0, eng0 := processCPU(b), engineCPU()
	tick := time.NewTicker(every)
	defer tick.Stop()
	start := time.Now()
	for time.Since(start) < window {
		cpu0, wall0 := processCPU(b), time.Now()
		ws, err := list(b.Context())
		wall = append(wall, time.Since(wall0))
		cost.cpu = append(cost.cpu, processCPU(b)-cpu0)
		if err != nil {
			b.Fatalf("%s: %v", mode, err)
		}
		if running := countRunning(ws); running != want {
			b.Fatalf("%s: %d workloads running, want %d", mode, running, want)
		}
		<-tick.C
	}
	elapsed := time.Since(start)
	proc, eng := processCPU(b)-proc0, engineCPU()-eng0
	counts, total := counter.counts()
	cost.callsPerMin = float64(total) * float64(time.Minute) / float64(elapsed)
	perMin := func(d time.Duration) string {
		return (time.Duration(float64(d) * float64(time.Minute) / float64(elapsed))).Round(time.Millisecond).String()
	}
	b.Logf("%s: n=%d List calls over %s with %d containers; API calls %.0f/min %v; List wall min/median/max %s; List CPU min/median/max %s; this process CPU %s/min; engine CPU %s/min",
		mode, len(cost.cpu), elapsed.Round(time.Second), want, cost.callsPerMin, counts,
		spread(wall), spread(cost.cpu), perMin(proc), perMin(eng))
	return cost
}

func spread(ds []time.Duration) string {
	s := slices.Clone(ds)
	slices.Sort(s)
	r := func(d time.Duration) string { return d.Round(10 * time.Microsecond).String() }
	return r(s[0]) + "/" + r(s[len(s)/2]) + "/" + r(s[len(s)-1])
}

func countRunning(ws []*persysv1.WorkloadStatus) int {
	n := 0
	for _, w := range ws {
		if w.GetState() == persysv1.ActualState_ACTUAL_STATE_RUNNING {
			n++
		}
	}
	return n
}

// startMany applies n workloads of the hello image, four at a time.
func startMany(b *testing.B, rt *Runtime, tag string, n int) {
	b.Helper()
	names := make(chan int)
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for range 4 {
		wg.Go(func() {
			for i := range names {
				inst := runtime.Instance{Name: fmt.Sprintf("bench-%03d", i), UID: "u", Revision: 1, Spec: &persysv1.WorkloadSpec{
					Type:         persysv1.WorkloadType_WORKLOAD_TYPE_CONTAINER,
					DesiredState: persysv1.DesiredState_DESIRED_STATE_RUNNING,
					Container:    &persysv1.ContainerSpec{Image: tag},
				}}
				if _, _, err := rt.Apply(b.Context(), inst); err != nil {
					errs <- err
				}
			}
		})
	}
	for i := range n {
		names <- i
	}
	close(names)
	wg.Wait()
	close(errs)
	for err := range errs {
		b.Fatalf("start containers: %v", err)
	}
}

// removeNode removes every container labelled with the node.
func removeNode(b *testing.B, cli *client.Client, node string) {
	ctx := context.Background()
	res, err := cli.ContainerList(ctx, client.ContainerListOptions{All: true,
		Filters: make(client.Filters).Add("label", runtime.LabelNode+"="+node)})
	if err != nil {
		b.Errorf("cleanup list: %v", err)
		return
	}
	for _, c := range res.Items {
		if _, err := cli.ContainerRemove(ctx, c.ID, client.ContainerRemoveOptions{Force: true, RemoveVolumes: true}); err != nil {
			b.Errorf("cleanup remove %s: %v", shortID(c.ID), err)
		}
	}
}

// processCPU is this process's user plus system CPU time.
func processCPU(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// engineCPU is dockerd's user plus system CPU time, when this process can
// see it (same PID namespace), assuming 100 clock ticks a second; zero
// otherwise. Other users of the engine add to it.
func engineCPU() time.Duration {
	dirs, _ := filepath.Glob("/proc/[0-9]*/comm")
	for _, comm := range dirs {
		name, err := os.ReadFile(comm)
		if err != nil || strings.TrimSpace(string(name)) != "dockerd" {
			continue
		}
		stat, err := os.ReadFile(filepath.Join(filepath.Dir(comm), "stat"))
		if err != nil {
			return 0
		}
		// Fields after the parenthesized command: state is field 3, utime 14, stime 15.
		rest := string(stat[strings.LastIndexByte(string(stat), ')')+2:])
		f := strings.Fields(rest)
		if len(f) < 13 {
			return 0
		}
		ut, _ := strconv.ParseInt(f[11], 10, 64)
		st, _ := strconv.ParseInt(f[12], 10, 64)
		return time.Duration(ut+st) * 10 * time.Millisecond
	}
	return 0
}

func envInt(b *testing.B, key string, def int) int {
	v := os.Getenv(key)
	if v == "" {
		return def
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 1 {
		b.Fatalf("%s=%q: want a positive integer", key, v)
	}
	return n
}

func envDuration(b *testing.B, key string, def time.Duration) time.Duration {
	v := os.Getenv(key)
	if v == "" {
		return def
	}
	d, err := time.ParseDuration(v)
	if err != nil || d <= 0 {
		b.Fatalf("%s=%q: want a positive duration", key, v)
	}
	return d
}
