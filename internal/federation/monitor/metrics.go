package monitor

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/persys-dev/compute/internal/federation/fedapi"
	"github.com/persys-dev/compute/internal/federation/health"
)

type metrics struct {
	members     *prometheus.GaugeVec
	reachable   *prometheus.GaugeVec
	duration    *prometheus.HistogramVec
	transitions *prometheus.CounterVec
	expiry      *prometheus.GaugeVec
}

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		members: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Namespace: "persys", Subsystem: "federation", Name: "members",
			Help: "Member clusters by health state after the last probe round.",
		}, []string{"state"}),
		reachable: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Namespace: "persys", Subsystem: "federation", Name: "member_reachable",
			Help: "1 when the last probe of the member's gateway succeeded, else 0.",
		}, []string{"cluster"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: "persys", Subsystem: "federation", Name: "member_probe_duration_seconds",
			Help:    "Time of one probe of a member gateway (its cluster summary), by result.",
			Buckets: []float64{.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5},
		}, []string{"result"}),
		transitions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "persys", Subsystem: "federation", Name: "member_transitions_total",
			Help: "Member health transitions, by the state entered.",
		}, []string{"state"}),
		expiry: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Namespace: "persys", Subsystem: "federation", Name: "member_identity_expiry_timestamp_seconds",
			Help: "When the identity the member issued to the federation expires (Unix seconds); renew it before.",
		}, []string{"cluster"}),
	}
	if reg != nil {
		reg.MustRegister(m.members, m.reachable, m.duration, m.transitions, m.expiry)
	}
	return m
}

func (m *metrics) probe(cluster string, ok bool, d time.Duration) {
	result, v := "error", 0.0
	if ok {
		result, v = "ok", 1
	}
	m.reachable.WithLabelValues(cluster).Set(v)
	m.duration.WithLabelValues(result).Observe(d.Seconds())
}

func (m *metrics) transition(tr health.Transition) { m.transitions.WithLabelValues(string(tr)).Inc() }

func (m *metrics) forget(cluster string) {
	m.reachable.DeleteLabelValues(cluster)
	m.expiry.DeleteLabelValues(cluster)
}

func (m *metrics) setStates(counts map[fedapi.State]int) {
	for _, s := range []fedapi.State{fedapi.StatePending, fedapi.StateReady, fedapi.StateUnreachable, fedapi.StateLost} {
		m.members.WithLabelValues(string(s)).Set(float64(counts[s]))
	}
}
