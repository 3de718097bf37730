package servicectl

import "github.com/prometheus/client_golang/prometheus"

// metrics are the controller's Prometheus series.
type metrics struct {
	steps     prometheus.Counter
	stepTime  prometheus.Histogram
	replicas  *prometheus.CounterVec
	rollbacks prometheus.Counter
	failed    prometheus.Counter
}

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		steps: prometheus.NewCounter(prometheus.CounterOpts{Name: "persys_service_steps_total",
			Help: "Rollout steps the service controller took."}),
		stepTime: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "persys_service_step_duration_seconds",
			Help: "Duration of one rollout step, replica applies and deletes included.", Buckets: prometheus.ExponentialBuckets(0.0005, 4, 10)}),
		replicas: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "persys_service_replicas_total",
			Help: "Replicas the service controller created or deleted, by action."}, []string{"action"}),
		rollbacks: prometheus.NewCounter(prometheus.CounterOpts{Name: "persys_service_rollbacks_total",
			Help: "Automatic rollbacks of failed updates."}),
		failed: prometheus.NewCounter(prometheus.CounterOpts{Name: "persys_service_rollouts_failed_total",
			Help: "Updates that failed and stopped (no rollback)."}),
	}
	if reg != nil {
		reg.MustRegister(m.steps, m.stepTime, m.replicas, m.rollbacks, m.failed)
	}
	return m
}
