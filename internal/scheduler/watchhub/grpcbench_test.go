package watchhub_test

import (
	"context"
	"slices"
	"sync"
	"sync/atomic"
	"testing"

	persysv1 "github.com/persys-dev/compute/api/persys/v1"
	"github.com/persys-dev/compute/internal/testutil/realsched"
)

// BenchmarkWatchersGRPC is BenchmarkWatchers through the real scheduler's
// gRPC API over mutual TLS (one connection, one stream per watcher): the
// CPU per delivered change then includes encoding, TLS and decoding.
// Workloads are written to etcd directly and, with no node, stay pending.
// It lists 1,000 workloads, not 10,000 (PERSYS_BENCH_WORKLOADS changes
// it): ten million list messages through TLS take too long for a run.
func BenchmarkWatchersGRPC(b *testing.B) {
	nw, nwl := envInt("PERSYS_BENCH_WATCHERS", benchWatchers), envInt("PERSYS_BENCH_WORKLOADS", 1000)
	rc := realsched.Start(b, realsched.Options{})
	seed(b, rc.Store, nwl)
	cli := rc.Admin(b)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var delivered atomic.Int64
	var ended atomic.Value // the first error a watch ended with
	var wg sync.WaitGroup
	heap0, rss0 := memNow()
	for range nw {
		st, err := cli.WatchWorkloads(ctx, &persysv1.WatchWorkloadsRequest{})
		if err != nil {
			b.Fatal(err)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				m, err := st.Recv()
				if err != nil {
					if ctx.Err() == nil {
						ended.CompareAndSwap(nil, err.Error())
					}
					return
				}
				if m.GetType() != persysv1.WatchEventType_WATCH_EVENT_TYPE_BOOKMARK {
					delivered.Add(1)
				}
			}
		}()
	}
	progress := func(want int64) func() bool {
		return func() bool {
			if e := ended.Load(); e != nil {
				b.Fatalf("a watch ended: %v", e)
			}
			return delivered.Load() >= want
		}
	}
	waitFor(b, progress(int64(nw*nwl)))
	heap1, rss1 := memNow()
	var perEvent []float64
	for round := range max(b.N, benchRounds) {
		before, cpu0 := delivered.Load(), cpuNow()
		churn(b, rc.Store, nwl, round)
		want := before + int64(nw*benchChurn)
		waitFor(b, progress(want))
		perEvent = append(perEvent, float64(cpuNow()-cpu0)/float64(delivered.Load()-before))
	}
	cancel()
	wg.Wait()
	slices.Sort(perEvent)
	b.ReportMetric(float64(heap1-heap0)/float64(nw), "heap-B/watcher")
	b.ReportMetric(float64(rss1-rss0)/float64(nw), "rss-B/watcher")
	b.ReportMetric(perEvent[len(perEvent)/2], "cpu-ns/event")
	b.Logf("gRPC: watchers=%d workloads=%d: heap %.0f B/watcher, rss %.0f B/watcher (both ends in one process); cpu per delivered change over n=%d rounds of %d changes x %d watchers: min %.0f ns, median %.0f ns, max %.0f ns",
		nw, nwl, float64(heap1-heap0)/float64(nw), float64(rss1-rss0)/float64(nw), len(perEvent), benchChurn, nw,
		perEvent[0], perEvent[len(perEvent)/2], perEvent[len(perEvent)-1])
}
