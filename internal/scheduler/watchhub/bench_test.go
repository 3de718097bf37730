package watchhub_test

import (
	"context"
	"fmt"
	"os"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	persysv1 "github.com/persys-dev/compute/api/persys/v1"
	"github.com/persys-dev/compute/internal/scheduler/watchhub"
	"github.com/persys-dev/compute/internal/store"
)

// Sizes of BenchmarkWatchers (PERSYS_BENCH_WATCHERS and
// PERSYS_BENCH_WORKLOADS override them for a quick run).
const (
	benchWatchers  = 1000
	benchWorkloads = 10000
	benchChurn     = 500 // status changes a round
	benchRounds    = 5
)

func envInt(name string, def int) int {
	if n, err := strconv.Atoi(os.Getenv(name)); err == nil && n > 0 {
		return n
	}
	return def
}

// BenchmarkWatchers: 1,000 watchers of a 10,000-workload store (embedded
// etcd, the hub's own etcd watch), each reading the full list and then
// every change. It reports the heap and RSS each watcher adds (its
// buffer and the goroutine reading it, as the gRPC stream's would), and
// the CPU time per delivered change over rounds of 500 status writes:
// min, median and max over the rounds.
//
//	go test -run ^$ -bench Watchers -benchtime 1x ./internal/scheduler/watchhub/
func BenchmarkWatchers(b *testing.B) {
	nw, nwl := envInt("PERSYS_BENCH_WATCHERS", benchWatchers), envInt("PERSYS_BENCH_WORKLOADS", benchWorkloads)
	h, st := startHub(b, watchhub.Config{})
	ctx := context.Background()
	seed(b, st, nwl)
	waitFor(b, func() bool { return listLen(b, h) == nwl }) // the list wakes the hub

	heap0, rss0 := memNow()
	var delivered atomic.Int64
	wctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	for range nw {
		w, err := h.Watch(ctx, watchhub.Request{Kind: watchhub.Workloads})
		if err != nil {
			b.Fatal(err)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer w.Close()
			for {
				it, err := w.Next(wctx)
				if err != nil {
					return
				}
				if it.Op == watchhub.OpPut || it.Op == watchhub.OpSnapshot {
					delivered.Add(1)
				}
			}
		}()
	}
	waitFor(b, func() bool { return delivered.Load() == int64(nw*nwl) })
	heap1, rss1 := memNow()
	b.ReportMetric(float64(heap1-heap0)/float64(nw), "heap-B/watcher")
	b.ReportMetric(float64(rss1-rss0)/float64(nw), "rss-B/watcher")

	var perEvent []float64
	for round := range max(b.N, benchRounds) {
		before, cpu0 := delivered.Load(), cpuNow()
		churn(b, st, nwl, round)
		want := before + int64(nw*benchChurn)
		waitFor(b, func() bool { return delivered.Load() >= want })
		perEvent = append(perEvent, float64(cpuNow()-cpu0)/float64(delivered.Load()-before))
	}
	cancel()
	wg.Wait()
	slices.Sort(perEvent)
	b.ReportMetric(perEvent[len(perEvent)/2], "cpu-ns/event")
	b.Logf("watchers=%d workloads=%d: heap %.0f B/watcher, rss %.0f B/watcher; cpu per delivered change over n=%d rounds of %d changes x %d watchers: min %.0f ns, median %.0f ns, max %.0f ns",
		nw, nwl, float64(heap1-heap0)/float64(nw), float64(rss1-rss0)/float64(nw), len(perEvent), benchChurn, nw,
		perEvent[0], perEvent[len(perEvent)/2], perEvent[len(perEvent)-1])
}

func seed(b *testing.B, st *store.Store, n int) {
	ws := make([]*persysv1.Workload, n)
	for i := range ws {
		ws[i] = workload(fmt.Sprintf("bw-%05d", i), map[string]string{"app": "bench"})
	}
	for _, r := range st.CreateWorkloads(context.Background(), ws) {
		if r.Err != nil {
			b.Fatal(r.Err)
		}
	}
}

// churn writes benchChurn statuses, spread over the workloads.
func churn(b *testing.B, st *store.Store, n, round int) {
	sts := make([]*persysv1.WorkloadStatus, benchChurn)
	states := []persysv1.ActualState{persysv1.ActualState_ACTUAL_STATE_RUNNING, persysv1.ActualState_ACTUAL_STATE_STOPPED}
	for i := range sts {
		name := fmt.Sprintf("bw-%05d", (i*n/benchChurn+round)%n)
		sts[i] = &persysv1.WorkloadStatus{Name: name, Uid: "uid-" + name, State: states[round%2], Revision: 1}
	}
	for _, r := range st.PutStatuses(context.Background(), sts) {
		if r.Err != nil {
			b.Fatal(r.Err)
		}
	}
}

func listLen(b *testing.B, h *watchhub.Hub) int {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	w, err := h.Watch(ctx, watchhub.Request{Kind: watchhub.Workloads})
	if err != nil {
		b.Fatal(err)
	}
	defer w.Close()
	n := 0
	for {
		it, err := w.Next(ctx)
		if err != nil {
			b.Fatal(err)
		}
		if it.Op != watchhub.OpSnapshot {
			return n
		}
		n++
	}
}

// waitFor polls cond (a benchmark's progress, not a test assertion),
// failing after ten minutes.
func waitFor(b *testing.B, cond func() bool) {
	deadline := time.Now().Add(10 * time.Minute)
	for !cond() {
		if time.Now().After(deadline) {
			b.Fatal("benchmark made no progress in 10 minutes")
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// memNow is the live heap after a GC and the process's resident set.
func memNow() (heap, rss int64) {
	runtime.GC()
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	if b, err := os.ReadFile("/proc/self/statm"); err == nil {
		if f := strings.Fields(string(b)); len(f) > 1 {
			pages, _ := strconv.ParseInt(f[1], 10, 64)
			rss = pages * int64(os.Getpagesize())
		}
	}
	return int64(ms.HeapAlloc), rss
}

// cpuNow is the process's user plus system CPU time, in ns.
func cpuNow() int64 {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return ru.Utime.Nano() + ru.Stime.Nano()
}
