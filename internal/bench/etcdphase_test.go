package bench

import (
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
)

// TestReadEtcdCounters reads etcd's metric names from a registry as a
// member process serves them.
func TestReadEtcdCounters(t *testing.T) {
	reg := prometheus.NewRegistry()
	fsync := prometheus.NewHistogram(prometheus.HistogramOpts{Name: metricWALFsync})
	commit := prometheus.NewHistogram(prometheus.HistogramOpts{Name: metricBackendCommit})
	proposals := prometheus.NewGauge(prometheus.GaugeOpts{Name: metricProposals})
	other := prometheus.NewCounter(prometheus.CounterOpts{Name: "etcd_other_total"})
	reg.MustRegister(fsync, commit, proposals, other)
	for _, v := range []float64{0.002, 0.004, 0.006} {
		fsync.Observe(v)
	}
	commit.Observe(0.01)
	proposals.Set(42)
	other.Add(7)
	got, err := readEtcdCounters(reg)
	if err != nil {
		t.Fatal(err)
	}
	want := etcdCounters{Fsyncs: 3, FsyncSeconds: 0.012, Commits: 1, CommitSeconds: 0.01, Proposals: 42}
	if got.Fsyncs != want.Fsyncs || !near(got.FsyncSeconds, want.FsyncSeconds) || got.Commits != want.Commits ||
		!near(got.CommitSeconds, want.CommitSeconds) || got.Proposals != want.Proposals {
		t.Fatalf("counters %+v, want %+v", got, want)
	}
}

func near(a, b float64) bool { return a-b < 1e-9 && b-a < 1e-9 }

func TestEtcdPhaseOf(t *testing.T) {
	c := &EtcdCluster{names: []string{"m0", "m1"}, members: make([]*childProc, 2)}
	start := []etcdCounters{{Fsyncs: 10, FsyncSeconds: 0.1, Proposals: 100, CPUSeconds: 1}, {}}
	end := []etcdCounters{
		{Fsyncs: 110, FsyncSeconds: 1.1, Commits: 20, CommitSeconds: 0.2, Proposals: 300, CPUSeconds: 2},
		{Fsyncs: 50, FsyncSeconds: 0.5, Proposals: 200},
	}
	p, err := c.phaseOf(start, end, 2)
	if err != nil {
		t.Fatal(err)
	}
	m0 := EtcdMemberPhase{Name: "m0", ProposalsPerSec: 100, FsyncsPerSec: 50, FsyncMeanMs: 10, FsyncBusy: 0.5, CommitsPerSec: 10, CommitMeanMs: 10, CPU: 0.5}
	m1 := EtcdMemberPhase{Name: "m1", ProposalsPerSec: 100, FsyncsPerSec: 25, FsyncMeanMs: 10, FsyncBusy: 0.25}
	for i, want := range []EtcdMemberPhase{m0, m1} {
		got := p.Members[i]
		if got.Name != want.Name || !near(got.ProposalsPerSec, want.ProposalsPerSec) || !near(got.FsyncsPerSec, want.FsyncsPerSec) ||
			!near(got.FsyncMeanMs, want.FsyncMeanMs) || !near(got.FsyncBusy, want.FsyncBusy) || !near(got.CommitsPerSec, want.CommitsPerSec) ||
			!near(got.CommitMeanMs, want.CommitMeanMs) || !near(got.CPU, want.CPU) {
			t.Errorf("member %d: %+v, want %+v", i, got, want)
		}
	}
	p.Stats = []EtcdMemberStats{{Name: "m0", Leader: true, DBSize: 3 << 20, RSSMiB: 100}}
	var b strings.Builder
	if err := p.WriteTable(&b); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(b.String(), "m0") || !strings.Contains(b.String(), "3.0") || strings.Count(b.String(), "\n") != 4 {
		t.Errorf("table:\n%s", b.String())
	}
	for _, bad := range []struct {
		name       string
		start, end []etcdCounters
		sec        float64
	}{
		{"no counters", nil, nil, 1},
		{"a member missing", start[:1], end, 1},
		{"no time", start, end, 0},
	} {
		if _, err := c.phaseOf(bad.start, bad.end, bad.sec); err == nil {
			t.Errorf("%s: no error", bad.name)
		}
	}
}
