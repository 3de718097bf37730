package scheduler

import (
	"context"
	"fmt"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/persys-dev/compute/api/persys/contract"
	persysv1 "github.com/persys-dev/compute/api/persys/v1"
	"github.com/persys-dev/compute/internal/obs"
)

type metrics struct {
	placements        prometheus.Counter
	unschedulable     prometheus.Counter
	placementDuration prometheus.Histogram
	reconcileDuration prometheus.Histogram
	applyDuration     prometheus.Histogram
	applies           *prometheus.CounterVec
	applyResends      prometheus.Counter
	failures          *prometheus.CounterVec
	heartbeats        prometheus.Counter
	digestOnly        *prometheus.CounterVec
	deltas            *prometheus.CounterVec
	nodeLosses        prometheus.Counter
	leaseExtensions   prometheus.Counter
	leasesRenewed     prometheus.Counter
	orphansRemoved    prometheus.Counter
	rescheduled       prometheus.Counter
	moves             prometheus.Counter
	retries           *prometheus.CounterVec
	grpc              *obs.GRPCServer
}

func newMetrics(reg prometheus.Registerer, s *Scheduler) *metrics {
	m := &metrics{
		placements: prometheus.NewCounter(prometheus.CounterOpts{Namespace: "persys", Subsystem: "scheduler",
			Name: "placements_total", Help: "Placements committed to etcd."}),
		unschedulable: prometheus.NewCounter(prometheus.CounterOpts{Namespace: "persys", Subsystem: "scheduler",
			Name: "unschedulable_total", Help: "Placement attempts that found no feasible node."}),
		placementDuration: prometheus.NewHistogram(prometheus.HistogramOpts{Namespace: "persys", Subsystem: "scheduler",
			Name: "placement_duration_seconds", Help: "Time of the pure placement function.",
			Buckets: prometheus.ExponentialBuckets(1e-6, 4, 12)}),
		reconcileDuration: prometheus.NewHistogram(prometheus.HistogramOpts{Namespace: "persys", Subsystem: "scheduler",
			Name: "reconcile_duration_seconds", Help: "Time to reconcile one workload: etcd commits and deletes included, apply calls not (they are handed to the node's outbox).",
			Buckets: prometheus.ExponentialBuckets(1e-4, 4, 10)}),
		applyDuration: prometheus.NewHistogram(prometheus.HistogramOpts{Namespace: "persys", Subsystem: "scheduler",
			Name: "apply_duration_seconds", Help: "Agent ApplyWorkload call duration seen by the scheduler.",
			Buckets: prometheus.ExponentialBuckets(1e-3, 2, 16)}),
		applies: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: "persys", Subsystem: "scheduler",
			Name: "applies_total", Help: "Agent applies by result."}, []string{"result"}),
		applyResends: prometheus.NewCounter(prometheus.CounterOpts{Namespace: "persys", Subsystem: "scheduler",
			Name: "apply_resends_total", Help: "Revisions applied again because their node reported them CREATING for longer than the apply timeout (a start lost in a crash); each is an ApplyResent event."}),
		failures: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: "persys", Subsystem: "scheduler",
			Name: "workload_failures_total", Help: "Workloads that turned Failed, by reason."}, []string{"reason"}),
		heartbeats: prometheus.NewCounter(prometheus.CounterOpts{Namespace: "persys", Subsystem: "scheduler",
			Name: "heartbeats_total", Help: "Node heartbeats handled."}),
		digestOnly: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: "persys", Subsystem: "scheduler",
			Name: "heartbeats_digest_only_total",
			Help: "Heartbeats (counted in heartbeats_total too) that carried only the digest of the node's unchanged list, by result: served from the list held, or resend_full when none with that digest was held."},
			[]string{"result"}),
		deltas: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: "persys", Subsystem: "scheduler",
			Name: "heartbeats_delta_total",
			Help: "Heartbeats (counted in heartbeats_total too) that carried only the changes to the node's list, by result: applied, or send_full_list when the list held could not give the agent's."},
			[]string{"result"}),
		nodeLosses: prometheus.NewCounter(prometheus.CounterOpts{Namespace: "persys", Subsystem: "scheduler",
			Name: "node_losses_total", Help: "Nodes turned NotReady because their lease expired."}),
		leaseExtensions: prometheus.NewCounter(prometheus.CounterOpts{Namespace: "persys", Subsystem: "scheduler",
			Name: "node_lease_extensions_total", Help: "Node leases moved to a longer TTL as the cluster grew (so that heartbeats could spread out)."}),
		leasesRenewed: prometheus.NewCounter(prometheus.CounterOpts{Namespace: "persys", Subsystem: "scheduler",
			Name: "term_leases_renewed_total", Help: "Node leases renewed as this scheduler began to lead (each node then has a full TTL to reach it)."}),
		orphansRemoved: prometheus.NewCounter(prometheus.CounterOpts{Namespace: "persys", Subsystem: "scheduler",
			Name: "orphans_removed_total", Help: "Workload copies removed from nodes that should not run them."}),
		rescheduled: prometheus.NewCounter(prometheus.CounterOpts{Namespace: "persys", Subsystem: "scheduler",
			Name: "rescheduled_total", Help: "Workloads placed again because their node was lost."}),
		moves: prometheus.NewCounter(prometheus.CounterOpts{Namespace: "persys", Subsystem: "scheduler",
			Name: "moves_total", Help: "Workloads moved off a draining node (old copy removed after the new one ran)."}),
		retries: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: "persys", Subsystem: "scheduler",
			Name: "retry_attempts_total", Help: "Failed apply attempts that the retry engine recorded, by reason."}, []string{"reason"}),
		grpc: obs.NewGRPCServer("scheduler"),
	}
	for _, r := range []string{"served", "resend_full"} {
		m.digestOnly.WithLabelValues(r) // both series from the start, at 0
	}
	for _, r := range []string{"applied", "send_full_list"} {
		m.deltas.WithLabelValues(r)
	}
	if reg == nil {
		return m
	}
	reg.MustRegister(m.placements, m.unschedulable, m.placementDuration, m.reconcileDuration, m.applyDuration,
		m.applies, m.applyResends, m.failures, m.heartbeats, m.digestOnly, m.deltas, m.nodeLosses, m.leaseExtensions, m.leasesRenewed, m.orphansRemoved, m.rescheduled, m.moves, m.retries, &stateCollector{s: s})
	reg.MustRegister(m.grpc.Collectors()...)
	return m
}

// stateCollector reports cache-derived gauges at scrape time, so nothing
// is recomputed on the hot path.
type stateCollector struct{ s *Scheduler }

var (
	workloadsDesc = prometheus.NewDesc("persys_scheduler_workloads", "Workloads by observed state.", []string{"state"}, nil)
	nodesDesc     = prometheus.NewDesc("persys_scheduler_nodes", "Nodes by state.", []string{"state"}, nil)
	queueDesc     = prometheus.NewDesc("persys_scheduler_queue_depth", "Workloads waiting in the reconcile queue.", nil, nil)
	revisionDesc  = prometheus.NewDesc("persys_scheduler_etcd_revision", "Current etcd revision (read at scrape time); its growth is the write rate.", nil, nil)
	watchHubDesc  = prometheus.NewDesc("persys_scheduler_watch_hub_active", "1 while the watch hub holds its copy of the cluster for watchers, 0 while it is dormant (no watcher for a while).", nil, nil)
)

func (c *stateCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- workloadsDesc
	ch <- nodesDesc
	ch <- queueDesc
	ch <- revisionDesc
	ch <- watchHubDesc
}

func (c *stateCollector) Collect(ch chan<- prometheus.Metric) {
	counts, ready, notReady := c.s.cache.Stats()
	collectWorkloads(ch, counts)
	ch <- prometheus.MustNewConstMetric(nodesDesc, prometheus.GaugeValue, float64(ready), contract.Name(persysv1.NodeState_NODE_STATE_READY))
	ch <- prometheus.MustNewConstMetric(nodesDesc, prometheus.GaugeValue, float64(notReady), contract.Name(persysv1.NodeState_NODE_STATE_NOT_READY))
	ch <- prometheus.MustNewConstMetric(queueDesc, prometheus.GaugeValue, float64(c.s.queue.Len()))
	active := 0.0
	if c.s.hub.Active() {
		active = 1
	}
	ch <- prometheus.MustNewConstMetric(watchHubDesc, prometheus.GaugeValue, active)
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	if rev, err := c.s.store.Revision(ctx); err == nil {
		ch <- prometheus.MustNewConstMetric(revisionDesc, prometheus.GaugeValue, float64(rev))
	}
}

// collectWorkloads sends the workloads gauge, every state present (0 when
// no workload is in it).
func collectWorkloads(ch chan<- prometheus.Metric, counts map[persysv1.ActualState]int) {
	byState := map[string]int{}
	for v := range persysv1.ActualState_name {
		if s := persysv1.ActualState(v); s != persysv1.ActualState_ACTUAL_STATE_UNSPECIFIED {
			byState[contract.Name(s)] = 0
		}
	}
	for st, n := range counts {
		byState[contract.Name(st)] = n
	}
	for k, v := range byState {
		ch <- prometheus.MustNewConstMetric(workloadsDesc, prometheus.GaugeValue, float64(v), k)
	}
}

// RegisterProgress registers in reg what shows a run's progress alone:
// placements_total and the workloads gauge, the same series as on the
// scheduler's registry. A caller that polls progress often (the bench,
// ten times a second) gathers these instead of every metric: a whole
// gather also walks every node, reads etcd's revision and renders every
// histogram, 2 % of a 10,000-node scheduler's CPU at that rate, and more
// in the collections its garbage caused.
func (s *Scheduler) RegisterProgress(reg prometheus.Registerer) error {
	for _, c := range []prometheus.Collector{s.metrics.placements, workloadsCollector{s}} {
		if err := reg.Register(c); err != nil {
			return fmt.Errorf("scheduler: register progress metrics: %w", err)
		}
	}
	return nil
}

// workloadsCollector reports the workloads gauge alone.
type workloadsCollector struct{ s *Scheduler }

func (c workloadsCollector) Describe(ch chan<- *prometheus.Desc) { ch <- workloadsDesc }

func (c workloadsCollector) Collect(ch chan<- prometheus.Metric) {
	collectWorkloads(ch, c.s.cache.StateCounts())
}
