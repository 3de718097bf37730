package fedsvc

import "github.com/prometheus/client_golang/prometheus"

type metrics struct {
	divisions *prometheus.CounterVec
	calls     *prometheus.CounterVec
}

// Causes of a division, the label of persys_federation_service_divisions_total.
const (
	causeApply  = "apply"
	causeHealth = "health"
	// causeOffload: a member's placement said no node fits part of its
	// share, which went to the next members.
	causeOffload = "offload"
)

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		divisions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "persys", Subsystem: "federation", Name: "service_divisions_total",
			Help: "Divisions of a federated service's replicas stored, by cause: apply (a new revision), health (a member's share failed over or came back) or offload (part of a share no node of its member fits moved on).",
		}, []string{"cause"}),
		calls: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "persys", Subsystem: "federation", Name: "service_member_calls_total",
			Help: "Calls to members for federated services (apply of a share, delete), by result.",
		}, []string{"op", "result"}),
	}
	if reg != nil {
		reg.MustRegister(m.divisions, m.calls)
	}
	return m
}

func (m *metrics) call(op string, err error) {
	result := "ok"
	if err != nil {
		result = "error"
	}
	m.calls.WithLabelValues(op, result).Inc()
}
