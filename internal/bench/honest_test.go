package bench

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"google.golang.org/protobuf/proto"

	persysv1 "github.com/persys-dev/compute/api/persys/v1"
	"github.com/persys-dev/compute/internal/testutil/need"
)

func TestGoalFor(t *testing.T) {
	tp := func(nodes, workloads int, delay time.Duration) shape {
		return shape{Scenario: ScenarioThroughput, Nodes: nodes, Workloads: workloads, ApplyDelay: delay}
	}
	ext := func(s shape) shape { s.EtcdMembers = 3; return s }
	tests := []struct {
		name, metric string
		at           shape
		want         string // a part of the goal; "" for none
	}{
		{"rate at its size", goalPlacementRate, ext(tp(5000, 50000, 0)), "≥ 3,750/s (throughput, 5,000 nodes, 50,000 workloads, apply delay 0s, 3 etcd members over TLS)"},
		{"rate on the embedded etcd", goalPlacementRate, tp(5000, 50000, 0), ""},
		{"rate on another cluster size", goalPlacementRate, shape{Scenario: ScenarioThroughput, Nodes: 5000, Workloads: 50000, EtcdMembers: 5}, ""},
		{"running on the cluster", goalAllRunning, ext(tp(1000, 5000, 0)), "< 5 s"},
		{"rate at another node count", goalPlacementRate, tp(1000, 50000, 0), ""},
		{"rate at another workload count", goalPlacementRate, tp(5000, 5000, 0), ""},
		{"rate of another scenario", goalPlacementRate, shape{Scenario: ScenarioLatency, Nodes: 5000, Workloads: 50000}, ""},
		{"running without apply delay", goalAllRunning, tp(1000, 5000, 0), "< 5 s"},
		{"running with 900ms apply delay", goalAllRunning, tp(1000, 5000, 900*time.Millisecond), "< 2 s"},
		{"running with another apply delay", goalAllRunning, tp(1000, 5000, 500*time.Millisecond), ""},
		{"density", goalAllRunning, tp(1, 5000, 0), "< 10 s"},
		{"density with more nodes", goalAllRunning, tp(2, 5000, 0), ""},
		{"idle latency", goalLatencyP50, shape{Scenario: ScenarioLatency, Nodes: 4, Workloads: 1, Rate: 50}, "< 200 ms"},
		{"latency under load", goalLatencyP99, shape{Scenario: ScenarioLatency, Nodes: 1000, Workloads: 60000, Rate: 1000}, "< 1 s"},
		{"latency at a lower rate", goalLatencyP99, shape{Scenario: ScenarioLatency, Nodes: 1000, Workloads: 60000, Rate: 50}, ""},
		{"rss in any scenario", goalSchedulerRSS, shape{Scenario: ScenarioChurn, Nodes: 10000, Workloads: 150000}, "≤ 2 GiB"},
		{"rss smaller", goalSchedulerRSS, tp(1000, 5000, 0), ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := goalFor(tc.metric, tc.at)
			if tc.want == "" {
				if got != "" {
					t.Fatalf("goalFor(%s, %+v) = %q, want none", tc.metric, tc.at, got)
				}
				return
			}
			if !strings.Contains(got, tc.want) {
				t.Fatalf("goalFor(%s, %+v) = %q, want it to hold %q", tc.metric, tc.at, got, tc.want)
			}
		})
	}
	// Every goal names the sizes it belongs to.
	for _, g := range goals {
		text := g.String()
		for _, part := range []string{g.at.Scenario, plural(g.at.Nodes, "node"), plural(g.at.Workloads, "workload"), "apply delay " + g.at.ApplyDelay.String()} {
			if strings.HasPrefix(part, "0 ") {
				continue
			}
			if !strings.Contains(text, part) {
				t.Errorf("goal %q does not name %q", text, part)
			}
		}
	}
}

func TestHistoOf(t *testing.T) {
	bucket := func(le float64, n uint64) *dto.Bucket {
		return &dto.Bucket{UpperBound: proto.Float64(le), CumulativeCount: proto.Uint64(n)}
	}
	tests := []struct {
		name string
		h    *dto.Histogram
		want Histo
	}{
		{"empty", &dto.Histogram{SampleCount: proto.Uint64(0)}, Histo{}},
		{"p50 and p99 in different buckets", &dto.Histogram{SampleCount: proto.Uint64(100), SampleSum: proto.Float64(1),
			Bucket: []*dto.Bucket{bucket(0.001, 10), bucket(0.01, 60), bucket(0.1, 98), bucket(1, 100)}},
			Histo{Count: 100, MeanMs: 10, P50LoMs: 1, P50Ms: 10, P99LoMs: 100, P99Ms: 1000}},
		{"in the first bucket", &dto.Histogram{SampleCount: proto.Uint64(4), SampleSum: proto.Float64(0.002),
			Bucket: []*dto.Bucket{bucket(0.001, 4)}},
			Histo{Count: 4, MeanMs: 0.5, P50LoMs: 0, P50Ms: 1, P99LoMs: 0, P99Ms: 1}},
		{"above the last bucket", &dto.Histogram{SampleCount: proto.Uint64(10), SampleSum: proto.Float64(100),
			Bucket: []*dto.Bucket{bucket(1, 2)}},
			Histo{Count: 10, MeanMs: 10000, P50LoMs: 1000, P50Ms: -1, P99LoMs: 1000, P99Ms: -1}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := histoOf(tc.h)
			near := func(a, b float64) bool { return a-b < 1e-9 && b-a < 1e-9 }
			if got.Count != tc.want.Count || !near(got.MeanMs, tc.want.MeanMs) || !near(got.P50LoMs, tc.want.P50LoMs) ||
				!near(got.P50Ms, tc.want.P50Ms) || !near(got.P99LoMs, tc.want.P99LoMs) || !near(got.P99Ms, tc.want.P99Ms) {
				t.Fatalf("histoOf = %+v, want %+v", got, tc.want)
			}
			if tc.want.Count > 0 && !strings.Contains(got.String(), "histogram buckets") {
				t.Fatalf("%q does not say the figures are bucket bounds", got.String())
			}
		})
	}
}

func TestDurSamplesExact(t *testing.T) {
	var s durSamples
	for i := 1000; i >= 1; i-- {
		s.add(time.Duration(i) * time.Microsecond)
	}
	var none *durSamples
	none.add(time.Second) // a nil collector drops it
	d := s.dist()
	if d.N != 1000 || d.Min != 0.001 || d.P50 != 0.5 || d.P99 != 0.99 || d.Max != 1 {
		t.Fatalf("dist = %+v, want the exact nearest-rank figures", d)
	}
}

func TestDecisionReason(t *testing.T) {
	rej := func(r persysv1.RejectReason) *persysv1.NodeRejection { return &persysv1.NodeRejection{Reason: r} }
	tests := []struct {
		name string
		d    *persysv1.PlacementDecision
		want string
	}{
		{"none", nil, "no placement decision yet"},
		{"no nodes", &persysv1.PlacementDecision{}, "no nodes registered"},
		{"some feasible", &persysv1.PlacementDecision{TotalNodes: 3, FeasibleNodes: 1}, "1 of 3 nodes feasible"},
		{"counts by reason", &persysv1.PlacementDecision{TotalNodes: 3, Rejections: []*persysv1.NodeRejection{
			rej(persysv1.RejectReason_REJECT_REASON_INSUFFICIENT_CPU), rej(persysv1.RejectReason_REJECT_REASON_NODE_CORDONED),
			rej(persysv1.RejectReason_REJECT_REASON_INSUFFICIENT_CPU)}},
			"every node ruled out (insufficient_cpu: 2, node_cordoned: 1)"},
		{"sampled", &persysv1.PlacementDecision{TotalNodes: 10, Rejections: []*persysv1.NodeRejection{
			rej(persysv1.RejectReason_REJECT_REASON_INSUFFICIENT_MEMORY)}},
			"every node ruled out (1 of 10 scanned) (insufficient_memory: 1)"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := decisionReason(tc.d); got != tc.want {
				t.Fatalf("decisionReason = %q, want %q", got, tc.want)
			}
		})
	}
}

func TestStallWatch(t *testing.T) {
	t0 := time.Unix(0, 0)
	s := newStallWatch(time.Second, t0)
	steps := []struct {
		at                       time.Duration
		placed, running, pending int
		want                     bool
	}{
		{0, 1, 0, 5, false},
		{900 * time.Millisecond, 1, 0, 5, false},
		{1500 * time.Millisecond, 2, 0, 4, false}, // a change starts the period again
		{2400 * time.Millisecond, 2, 0, 4, false},
		{2500 * time.Millisecond, 2, 0, 4, true},
	}
	for i, st := range steps {
		if got := s.stalled(t0.Add(st.at), st.placed, st.running, st.pending); got != st.want {
			t.Fatalf("step %d: stalled = %v, want %v", i, got, st.want)
		}
	}
}

// TestRunThatCannotFitSaysWhy runs scenarios whose nodes hold fewer
// workloads than they submit: each must end before its timeout, stopped
// by the stall check, with the reason the scheduler gives, and print no
// rate.
func TestRunThatCannotFitSaysWhy(t *testing.T) {
	if testing.Short() {
		need.Missing(t, "-short: this test starts etcd and a hollow cluster")
	}
	for _, scenario := range []string{ScenarioThroughput, ScenarioLatency} {
		t.Run(scenario, func(t *testing.T) {
			o := Options{
				// 100 mCPU, 80% usable: 8 workloads of 10 mCPU per node, 16 in all.
				Cluster: ClusterOptions{Nodes: 2, Dir: t.TempDir(), HeartbeatInterval: 500 * time.Millisecond, EtcdNoFsync: true,
					NodeCPUMillis: 100},
				Workloads: 24, Concurrency: 4, Rate: 200, Timeout: 10 * time.Minute, StallAfter: time.Second,
			}
			var progress bytes.Buffer
			o.Progress = &syncWriter{w: &progress}
			rep, err := Run(context.Background(), scenario, o)
			if err == nil {
				t.Fatal("run of 24 workloads on room for 16 succeeded")
			}
			checkUnfinished(t, rep, err)
		})
	}
}

// checkUnfinished checks the account of a run of 24 workloads on room
// for 16.
func checkUnfinished(t *testing.T, rep *Report, err error) {
	t.Helper()
	var u *Unfinished
	switch r := rep.Result.(type) {
	case ThroughputResult:
		u = r.Unfinished
	case LatencyResult:
		u = r.Unfinished
	}
	if u == nil {
		t.Fatalf("result %+v: no account of the unfinished run (err %v)", rep.Result, err)
	}
	if !u.Stalled || u.Total != 24 || u.Running != 16 || u.Pending != 8 || len(u.Why) != 1 || u.Why[0].Count != 8 ||
		u.Why[0].Reason != "every node ruled out (insufficient_cpu: 2)" {
		t.Fatalf("unfinished = %+v, want stalled with 16 RUNNING and 8 pending, every node ruled out by CPU", u)
	}
	if !strings.Contains(err.Error(), "16 of 24 placed, 16 RUNNING; stopped after") ||
		!strings.Contains(err.Error(), "8 pending: every node ruled out (insufficient_cpu: 2)") {
		t.Fatalf("error %q does not say how far it got and why", err)
	}
	var table bytes.Buffer
	if err := rep.WriteTable(&table); err != nil {
		t.Fatal(err)
	}
	for _, row := range rep.Table {
		if strings.Contains(row.Metric, "placements/s") || strings.Contains(row.Metric, "RUNNING after") ||
			strings.Contains(row.Metric, "RUNNING p") || strings.Contains(row.Value, "per workload") {
			t.Fatalf("unfinished run shows a rate: %+v\n%s", row, table.String())
		}
	}
	if !strings.Contains(table.String(), "8 pending") {
		t.Fatalf("table does not say why:\n%s", table.String())
	}
}
