package bench

import (
	"bufio"
	"fmt"
	"math"
	"os"
	goruntime "runtime"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
)

// Metric names read from the scheduler's registry.
const (
	metricPlacements  = "persys_scheduler_placements_total"
	metricHeartbeats  = "persys_scheduler_heartbeats_total"
	metricQueue       = "persys_scheduler_queue_depth"
	metricRescheduled = "persys_scheduler_rescheduled_total"
	metricWorkloads   = "persys_scheduler_workloads"
	metricNodeLosses  = "persys_scheduler_node_losses_total"
	metricLeaseMoves  = "persys_scheduler_node_lease_extensions_total"
)

// gauges reads the unlabelled counters and gauges named in names (the sum
// over label values for labelled ones) from reg.
func gauges(reg prometheus.Gatherer, names ...string) (map[string]float64, error) {
	mfs, err := reg.Gather()
	if err != nil {
		return nil, fmt.Errorf("bench: gather metrics: %w", err)
	}
	want := make(map[string]bool, len(names))
	out := make(map[string]float64, len(names))
	for _, n := range names {
		want[n] = true
		out[n] = 0
	}
	for _, mf := range mfs {
		if !want[mf.GetName()] {
			continue
		}
		sum := 0.0
		for _, m := range mf.GetMetric() {
			switch {
			case m.GetCounter() != nil:
				sum += m.GetCounter().GetValue()
			case m.GetGauge() != nil:
				sum += m.GetGauge().GetValue()
			}
		}
		out[mf.GetName()] = sum
	}
	return out, nil
}

// Histo summarizes a scheduler histogram: count and mean (exact), and the
// bucket that holds the median and the 99th percentile, given by its lower
// and upper bounds (-1: above the last bucket): a Prometheus histogram
// keeps no more than that.
type Histo struct {
	Count   uint64  `json:"count"`
	MeanMs  float64 `json:"mean_ms"`
	P50LoMs float64 `json:"p50_gt_ms"`
	P50Ms   float64 `json:"p50_le_ms"`
	P99LoMs float64 `json:"p99_gt_ms"`
	P99Ms   float64 `json:"p99_le_ms"`
}

func (h Histo) String() string {
	if h.Count == 0 {
		return "-"
	}
	return fmt.Sprintf("mean %s ms, p50 in (%s, %s] ms, p99 in (%s, %s] ms (histogram buckets, n=%d)",
		msOf(h.MeanMs), msOf(h.P50LoMs), msOf(h.P50Ms), msOf(h.P99LoMs), msOf(h.P99Ms), h.Count)
}

// msOf writes milliseconds with three significant digits, so that a
// bucket bound of 0.001 ms does not print as 0.00; -1 is above the last
// bucket.
func msOf(v float64) string {
	if v < 0 {
		return "+Inf"
	}
	return strconv.FormatFloat(v, 'g', 3, 64)
}

// histos reads the named histograms (in seconds) from reg.
func histos(reg prometheus.Gatherer, names ...string) map[string]Histo {
	out := map[string]Histo{}
	mfs, err := reg.Gather()
	if err != nil {
		return out
	}
	for _, mf := range mfs {
		if !slices.Contains(names, mf.GetName()) || len(mf.GetMetric()) != 1 || mf.GetMetric()[0].GetHistogram() == nil {
			continue
		}
		out[mf.GetName()] = histoOf(mf.GetMetric()[0].GetHistogram())
	}
	return out
}

// histoOf finds the buckets of the median and the 99th percentile.
func histoOf(h *dto.Histogram) Histo {
	n := h.GetSampleCount()
	r := Histo{Count: n}
	if n == 0 {
		return r
	}
	r.MeanMs = h.GetSampleSum() / float64(n) * 1000
	r.P50Ms, r.P99Ms = math.Inf(1), math.Inf(1)
	lo := 0.0
	for _, b := range h.GetBucket() {
		c, up := float64(b.GetCumulativeCount()), b.GetUpperBound()*1000
		if math.IsInf(r.P50Ms, 1) && c >= 0.5*float64(n) {
			r.P50LoMs, r.P50Ms = lo, up
		}
		if math.IsInf(r.P99Ms, 1) && c >= 0.99*float64(n) {
			r.P99LoMs, r.P99Ms = lo, up
		}
		lo = up
	}
	// Above the last bucket: -1, as JSON has no infinity.
	if math.IsInf(r.P50Ms, 1) {
		r.P50LoMs, r.P50Ms = lo, -1
	}
	if math.IsInf(r.P99Ms, 1) {
		r.P99LoMs, r.P99Ms = lo, -1
	}
	return r
}

// schedulerTimings are the scheduler's own histograms, as table rows, and
// beside them the exact samples the bench takes of the same thing where
// it can: the scheduler's agent calls, timed on the shared transport when
// the scheduler runs in this process.
func schedulerTimings(reg prometheus.Gatherer, applies Dist) (map[string]Histo, []Row) {
	const (
		place     = "persys_scheduler_placement_duration_seconds"
		reconcile = "persys_scheduler_reconcile_duration_seconds"
		apply     = "persys_scheduler_apply_duration_seconds"
	)
	hs := histos(reg, place, reconcile, apply)
	exact := applies.String()
	if applies.N == 0 {
		exact = "- (taken only with the scheduler in this process on the shared transport)"
	}
	return hs, []Row{
		{Metric: "scheduler: placement function", Value: hs[place].String()},
		{Metric: "scheduler: one reconcile (etcd; applies handed off)", Value: hs[reconcile].String()},
		{Metric: "scheduler: agent ApplyWorkload call", Value: hs[apply].String()},
		{Metric: "scheduler: agent ApplyWorkload call, exact (bench-side samples)", Value: exact},
	}
}

// maxSamples bounds the durations a durSamples keeps (8 MiB of them).
const maxSamples = 1 << 20

// durSamples collects durations for exact percentiles; the zero value is
// ready, and a nil one drops what it is given.
type durSamples struct {
	mu      sync.Mutex
	ds      []time.Duration
	dropped int
}

func (s *durSamples) add(d time.Duration) {
	if s == nil {
		return
	}
	s.mu.Lock()
	if len(s.ds) < maxSamples {
		s.ds = append(s.ds, d)
	} else {
		s.dropped++
	}
	s.mu.Unlock()
}

// dist is the distribution of what was added so far.
func (s *durSamples) dist() Dist {
	s.mu.Lock()
	defer s.mu.Unlock()
	return distOf(s.ds)
}

// ProcStats is the whole process: etcd, the scheduler, every agent and the
// bench itself share it.
type ProcStats struct {
	RSSMiB     float64 `json:"rss_mib"`
	PeakRSSMiB float64 `json:"peak_rss_mib"`
	HeapMiB    float64 `json:"heap_inuse_mib"`
	Goroutines int     `json:"goroutines"`
}

func procStats() ProcStats {
	var ms goruntime.MemStats
	goruntime.ReadMemStats(&ms)
	st := ProcStats{HeapMiB: float64(ms.HeapInuse) / (1 << 20), Goroutines: goruntime.NumGoroutine()}
	st.RSSMiB, st.PeakRSSMiB = rssOf("/proc/self/status")
	return st
}

// rssOf reads VmRSS and VmHWM (the peak) in MiB from a /proc status file.
func rssOf(path string) (rss, peak float64) {
	f, err := os.Open(path)
	if err != nil {
		return 0, 0
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		key, val, ok := strings.Cut(sc.Text(), ":")
		if !ok || (key != "VmRSS" && key != "VmHWM") {
			continue
		}
		fields := strings.Fields(val)
		if len(fields) == 0 {
			continue
		}
		kb, err := strconv.ParseFloat(fields[0], 64)
		if err != nil {
			continue
		}
		if key == "VmRSS" {
			rss = kb / 1024
		} else {
			peak = kb / 1024
		}
	}
	return rss, peak
}

// loadAverage returns the 1-minute load average (other work on the
// machine shows here), or -1.
func loadAverage() float64 {
	data, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return -1
	}
	fields := strings.Fields(string(data))
	if len(fields) == 0 {
		return -1
	}
	v, err := strconv.ParseFloat(fields[0], 64)
	if err != nil {
		return -1
	}
	return v
}

// Dist summarizes durations in milliseconds.
type Dist struct {
	N    int     `json:"n"`
	Min  float64 `json:"min_ms"`
	P50  float64 `json:"p50_ms"`
	P90  float64 `json:"p90_ms"`
	P99  float64 `json:"p99_ms"`
	Max  float64 `json:"max_ms"`
	Mean float64 `json:"mean_ms"`
}

// distOf computes the nearest-rank percentiles of ds.
func distOf(ds []time.Duration) Dist {
	if len(ds) == 0 {
		return Dist{}
	}
	s := append([]time.Duration(nil), ds...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	ms := func(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
	rank := func(p float64) time.Duration {
		i := int(math.Ceil(p/100*float64(len(s)))) - 1
		i = max(0, min(i, len(s)-1))
		return s[i]
	}
	var sum time.Duration
	for _, d := range s {
		sum += d
	}
	return Dist{N: len(s), Min: ms(s[0]), P50: ms(rank(50)), P90: ms(rank(90)), P99: ms(rank(99)), Max: ms(s[len(s)-1]),
		Mean: ms(sum / time.Duration(len(s)))}
}

func (d Dist) String() string {
	if d.N == 0 {
		return "-"
	}
	return fmt.Sprintf("p50 %.1f  p90 %.1f  p99 %.1f  max %.1f ms (n=%d)", d.P50, d.P90, d.P99, d.Max, d.N)
}
