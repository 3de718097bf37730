package agent

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/persys-dev/compute/api/persys/contract"
	persysv1 "github.com/persys-dev/compute/api/persys/v1"
	"github.com/persys-dev/compute/internal/obs"
)

const metricsNamespace = "persys_agent"

type metrics struct {
	grpc          *obs.GRPCServer
	applyDuration *prometheus.HistogramVec
	applies       *prometheus.CounterVec
	deletes       *prometheus.CounterVec
	workloads     *prometheus.GaugeVec
	// byState is workloads bound to each state once: setWorkloads runs on
	// every heartbeat and must not format label values each time.
	byState []stateGauge
	// unspecifiedShown: the unspecified state's series exists (loop only).
	unspecifiedShown  bool
	heartbeatFailures prometheus.Counter
	staleLists        prometheus.Counter
	fullResends       prometheus.Counter
	registrations     prometheus.Counter
	registerFailures  prometheus.Counter
	watcherEvents     *prometheus.CounterVec
	zombies           *prometheus.CounterVec
	repairs           *prometheus.CounterVec
	leaderChanges     prometheus.Counter
	streamConnects    prometheus.Counter
	healthChecks      *prometheus.CounterVec
	livenessFailures  prometheus.Counter
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		grpc: obs.NewGRPCServer("agent"),
		applyDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: metricsNamespace, Name: "apply_duration_seconds",
			Help:    "Time to apply a workload revision, by runtime and result.",
			Buckets: []float64{0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120},
		}, []string{"runtime", "result"}),
		applies: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: metricsNamespace, Name: "applies_total",
			Help: "Applies by result (applied, skipped, failed, error) and failure reason.",
		}, []string{"result", "reason"}),
		deletes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: metricsNamespace, Name: "deletes_total",
			Help: "Deletes by kind (orphan: the scheduler's cleanup of an instance it does not assign, named by uid; workload: an ordinary delete) and result (deleted, absent, failed).",
		}, []string{"kind", "result"}),
		workloads: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Namespace: metricsNamespace, Name: "workloads",
			Help: "Workloads on the node by observed state, refreshed on each heartbeat.",
		}, []string{"state"}),
		heartbeatFailures: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: metricsNamespace, Name: "heartbeat_failures_total",
			Help: "Heartbeats that did not reach the scheduler.",
		}),
		staleLists: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: metricsNamespace, Name: "heartbeats_with_previous_list_total",
			Help: "Heartbeats sent on time with the last complete workload list because listing the runtimes took too long.",
		}),
		fullResends: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: metricsNamespace, Name: "heartbeat_full_resends_total",
			Help: "Heartbeats that carried only the digest of an unchanged workload list and that the scheduler answered with resend_full (it held no list with that digest); the full list followed at once.",
		}),
		registrations: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: metricsNamespace, Name: "registrations_total",
			Help: "Successful registrations with the scheduler.",
		}),
		registerFailures: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: metricsNamespace, Name: "registration_failures_total",
			Help: "Registration attempts that failed (the scheduler unreachable or refusing); each is retried with backoff.",
		}),
		watcherEvents: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: metricsNamespace, Name: "watcher_events_total",
			Help: "Workload changes reported by runtime watchers.",
		}, []string{"runtime"}),
		repairs: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: metricsNamespace, Name: "repairs_total",
			Help: "Leftovers of a crash in the middle of an apply that the agent finished (for example a container created but never started), by runtime and action.",
		}, []string{"runtime", "action"}),
		zombies: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: metricsNamespace, Name: "zombies_detected_total",
			Help: "Workloads a runtime reported running although they were dead, found by the audit.",
		}, []string{"runtime"}),
		leaderChanges: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: metricsNamespace, Name: "scheduler_leader_changes_total",
			Help: "Times the agent moved to another scheduler and registered with it.",
		}),
		streamConnects: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: metricsNamespace, Name: "control_stream_connects_total",
			Help: "Times a scheduler accepted the node's control stream (the first connect, then each reconnect).",
		}),
		healthChecks: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: metricsNamespace, Name: "health_checks_total",
			Help: "Health checks run, by check (startup, liveness, readiness), type (http, tcp, exec) and result (pass, fail).",
		}, []string{"check", "type", "result"}),
		livenessFailures: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: metricsNamespace, Name: "liveness_failures_total",
			Help: "Instances that failed their liveness (or startup) check past its threshold and were stopped and reported HEALTH_CHECK_FAILED.",
		}),
	}
	for _, c := range append([]prometheus.Collector{m.healthChecks, m.livenessFailures, m.applyDuration, m.applies, m.deletes, m.workloads,
		m.heartbeatFailures, m.staleLists, m.fullResends, m.registrations, m.registerFailures, m.watcherEvents, m.zombies, m.repairs, m.leaderChanges, m.streamConnects},
		m.grpc.Collectors()...) {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	for v := range persysv1.ActualState_name {
		if s := persysv1.ActualState(v); s != persysv1.ActualState_ACTUAL_STATE_UNSPECIFIED {
			m.byState = append(m.byState, stateGauge{state: s, gauge: m.workloads.WithLabelValues(contract.Name(s))})
		}
	}
	return m, nil
}

type stateGauge struct {
	state persysv1.ActualState
	gauge prometheus.Gauge
}

// setWorkloads refreshes the gauge of workloads by state, zero included.
// Only the loop goroutine calls it.
func (m *metrics) setWorkloads(ws []*persysv1.WorkloadStatus) {
	counts := map[persysv1.ActualState]float64{}
	for _, w := range ws {
		counts[w.GetState()]++
	}
	for _, sg := range m.byState {
		sg.gauge.Set(counts[sg.state])
	}
	// The unspecified state's series appears once a workload has it.
	if n := counts[persysv1.ActualState_ACTUAL_STATE_UNSPECIFIED]; n > 0 || m.unspecifiedShown {
		m.unspecifiedShown = true
		m.workloads.WithLabelValues(contract.Name(persysv1.ActualState_ACTUAL_STATE_UNSPECIFIED)).Set(n)
	}
}

// healthCheck counts one health check's result.
func (m *metrics) healthCheck(check string, typ persysv1.HealthCheckType, ok bool) {
	result := "fail"
	if ok {
		result = "pass"
	}
	m.healthChecks.WithLabelValues(check, contract.Name(typ), result).Inc()
}
