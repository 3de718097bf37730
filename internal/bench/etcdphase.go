package bench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// etcd's own metrics, read from each member process over a measured
// phase: they say whether the disk (fsync), the backend's commits or the
// raft proposals bound a run on the external cluster.
const (
	metricWALFsync      = "etcd_disk_wal_fsync_duration_seconds"
	metricBackendCommit = "etcd_disk_backend_commit_duration_seconds"
	metricProposals     = "etcd_server_proposals_committed_total"
)

// etcdCounters are one member's cumulative figures at one moment.
type etcdCounters struct {
	Fsyncs, FsyncSeconds   float64
	Commits, CommitSeconds float64
	Proposals              float64
	// CPUSeconds is the member process's CPU time (from /proc).
	CPUSeconds float64
}

func (a etcdCounters) minus(b etcdCounters) etcdCounters {
	return etcdCounters{a.Fsyncs - b.Fsyncs, a.FsyncSeconds - b.FsyncSeconds, a.Commits - b.Commits, a.CommitSeconds - b.CommitSeconds,
		a.Proposals - b.Proposals, a.CPUSeconds - b.CPUSeconds}
}

// readEtcdCounters gathers a member's counters.
func readEtcdCounters(g prometheus.Gatherer) (etcdCounters, error) {
	mfs, err := g.Gather()
	if err != nil {
		return etcdCounters{}, err
	}
	var c etcdCounters
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			switch mf.GetName() {
			case metricWALFsync:
				c.Fsyncs += float64(m.GetHistogram().GetSampleCount())
				c.FsyncSeconds += m.GetHistogram().GetSampleSum()
			case metricBackendCommit:
				c.Commits += float64(m.GetHistogram().GetSampleCount())
				c.CommitSeconds += m.GetHistogram().GetSampleSum()
			case metricProposals:
				c.Proposals += m.GetGauge().GetValue()
			}
		}
	}
	return c, nil
}

// EtcdPhase is what each member did over a measured phase.
type EtcdPhase struct {
	Seconds float64           `json:"seconds"`
	Members []EtcdMemberPhase `json:"members"`
	Stats   []EtcdMemberStats `json:"stats,omitempty"`
}

// EtcdMemberPhase is one member's share of a phase.
type EtcdMemberPhase struct {
	Name string `json:"name"`
	// Proposals committed by raft, per second of the phase.
	ProposalsPerSec float64 `json:"proposals_per_s"`
	// Fsyncs of the WAL per second, their mean latency and the share of
	// the phase the member spent in them.
	FsyncsPerSec float64 `json:"fsyncs_per_s"`
	FsyncMeanMs  float64 `json:"fsync_mean_ms"`
	FsyncBusy    float64 `json:"fsync_busy"`
	// Backend (bbolt) commits per second and their mean latency.
	CommitsPerSec float64 `json:"backend_commits_per_s"`
	CommitMeanMs  float64 `json:"backend_commit_mean_ms"`
	// CPU is the member process's CPU time per second of the phase (1: one
	// core busy all along).
	CPU float64 `json:"cpu"`
}

// phaseCounters reads every member's counters.
func (c *EtcdCluster) phaseCounters() ([]etcdCounters, error) {
	out := make([]etcdCounters, len(c.members))
	for i, m := range c.members {
		var err error
		if out[i], err = readEtcdCounters(m); err != nil {
			return nil, fmt.Errorf("bench: etcd member %s: metrics: %w", c.names[i], err)
		}
		out[i].CPUSeconds = m.stats().CPUSeconds
	}
	return out, nil
}

// phaseOf is each member's share of a phase of sec seconds between the
// counters at its start and at its end.
func (c *EtcdCluster) phaseOf(start, end []etcdCounters, sec float64) (*EtcdPhase, error) {
	if len(start) != len(c.members) || len(end) != len(c.members) || sec <= 0 {
		return nil, errors.New("bench: etcd phase: no counters")
	}
	p := &EtcdPhase{Seconds: sec}
	for i := range c.members {
		d := end[i].minus(start[i])
		mp := EtcdMemberPhase{Name: c.names[i], ProposalsPerSec: d.Proposals / sec, FsyncsPerSec: d.Fsyncs / sec,
			FsyncBusy: d.FsyncSeconds / sec, CommitsPerSec: d.Commits / sec, CPU: d.CPUSeconds / sec}
		if d.Fsyncs > 0 {
			mp.FsyncMeanMs = 1000 * d.FsyncSeconds / d.Fsyncs
		}
		if d.Commits > 0 {
			mp.CommitMeanMs = 1000 * d.CommitSeconds / d.Commits
		}
		p.Members = append(p.Members, mp)
	}
	return p, nil
}

// WriteTable writes one line per member.
func (p *EtcdPhase) WriteTable(w io.Writer) error {
	var b strings.Builder
	fmt.Fprintf(&b, "etcd members over the measured phase (%.1fs):\n", p.Seconds)
	fmt.Fprintf(&b, "%6s %7s %12s %10s %10s %10s %12s %12s %8s %10s %9s\n", "MEMBER", "LEADER", "PROPOSALS/S", "FSYNCS/S", "FSYNC_MS", "FSYNC_BUSY", "COMMITS/S", "COMMIT_MS", "CPU", "DB_MIB", "RSS_MIB")
	for i, m := range p.Members {
		var st EtcdMemberStats
		if i < len(p.Stats) {
			st = p.Stats[i]
		}
		fmt.Fprintf(&b, "%6s %7v %12.0f %10.0f %10.2f %9.0f%% %12.0f %12.2f %7.0f%% %10.1f %9.0f\n", m.Name, st.Leader, m.ProposalsPerSec, m.FsyncsPerSec,
			m.FsyncMeanMs, 100*m.FsyncBusy, m.CommitsPerSec, m.CommitMeanMs, 100*m.CPU, float64(st.DBSize)/(1<<20), st.RSSMiB)
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// EtcdMeter measures the members over one measured phase.
type EtcdMeter struct {
	c       *EtcdCluster
	profile bool

	start     []etcdCounters
	end       []etcdCounters
	began, at time.Time
	err       error
	stopProf  func() error
}

// Meter is a meter of c; with profile every member's CPU profile runs
// over the phase too.
func (c *EtcdCluster) Meter(profile bool) *EtcdMeter { return &EtcdMeter{c: c, profile: profile} }

// Begin starts the phase; the function it returns ends it.
func (m *EtcdMeter) Begin() (end func()) {
	m.began = time.Now()
	m.start, m.err = m.c.phaseCounters()
	if m.profile && m.err == nil {
		m.stopProf, m.err = m.c.ProfileMembers()
	}
	return func() {
		m.at = time.Now()
		if m.stopProf != nil {
			m.err = errors.Join(m.err, m.stopProf())
		}
		if m.err == nil {
			m.end, m.err = m.c.phaseCounters()
		}
	}
}

// Result is each member's share of the phase with its database size and
// process figures now; nil when no phase was measured (the run failed
// before it).
func (m *EtcdMeter) Result(ctx context.Context) (*EtcdPhase, error) {
	if m.err != nil {
		return nil, m.err
	}
	if m.end == nil {
		return nil, nil
	}
	p, err := m.c.phaseOf(m.start, m.end, m.at.Sub(m.began).Seconds())
	if err != nil {
		return nil, err
	}
	if p.Stats, err = m.c.Stats(ctx); err != nil {
		return p, err
	}
	return p, nil
}
