package nodechannel

import (
	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc/status"
)

// Metrics counts a Hub's sessions and calls. A nil *Metrics counts
// nothing.
type Metrics struct {
	open     prometheus.Gauge
	accepted prometheus.Counter
	closes   *prometheus.CounterVec
	calls    *prometheus.CounterVec
	// agentCalls counts the agents' own calls (registration in the
	// hello, heartbeats).
	agentCalls *prometheus.CounterVec
}

// NewMetrics registers the Hub's metrics on reg (nil: not registered).
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		open: prometheus.NewGauge(prometheus.GaugeOpts{Namespace: "persys", Subsystem: "scheduler",
			Name: "node_streams", Help: "Nodes whose control stream is connected to this scheduler."}),
		accepted: prometheus.NewCounter(prometheus.CounterOpts{Namespace: "persys", Subsystem: "scheduler",
			Name: "node_streams_opened_total", Help: "Node control streams accepted."}),
		closes: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: "persys", Subsystem: "scheduler",
			Name: "node_streams_closed_total", Help: "Node control streams closed, by reason: replaced (the node connected again), stream_ended, leadership_lost, server_stopped, node_lost (its lease ran out or it was revoked)."},
			[]string{"reason"}),
		calls: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: "persys", Subsystem: "scheduler",
			Name: "node_stream_calls_total", Help: "AgentService calls sent over node control streams, by method and gRPC code of the outcome."},
			[]string{"method", "code"}),
		agentCalls: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: "persys", Subsystem: "scheduler",
			Name: "node_stream_agent_calls_total", Help: "Agents' calls on their control streams (RegisterNode in the hello, Heartbeat), by method and gRPC code of the answer; ResourceExhausted: a heartbeat sent while the node's previous one was in flight."},
			[]string{"method", "code"}),
	}
	if reg != nil {
		reg.MustRegister(m.open, m.accepted, m.closes, m.calls, m.agentCalls)
	}
	return m
}

func (m *Metrics) opened() {
	if m == nil {
		return
	}
	m.accepted.Inc()
	m.open.Inc()
}

func (m *Metrics) closed(reason string) {
	if m == nil {
		return
	}
	m.closes.WithLabelValues(reason).Inc()
	m.open.Dec()
}

func (m *Metrics) call(method string, err error) {
	if m == nil {
		return
	}
	m.calls.WithLabelValues(method, status.Code(err).String()).Inc()
}

func (m *Metrics) agentCall(method string, err error) {
	if m == nil {
		return
	}
	m.agentCalls.WithLabelValues(method, status.Code(err).String()).Inc()
}
