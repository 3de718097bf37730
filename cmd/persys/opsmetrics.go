package main

import (
	"context"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/persys-dev/compute/internal/opsmetrics"
	"github.com/persys-dev/compute/internal/scheduler"
	"github.com/persys-dev/compute/internal/store"
)

// registerSchedulerOpsMetrics adds the gauges the alert rules in
// monitoring/ need from a scheduler: its certificates, whether it leads,
// and etcd's database size against the quota. An external etcd's quota is
// not readable over the client API; etcd's default is the same 2 GiB as the
// embedded one's, so that is what is reported.
func registerSchedulerOpsMetrics(reg prometheus.Registerer, certs opsmetrics.CertSource, sched *scheduler.Scheduler, st *store.Store) error {
	if err := opsmetrics.RegisterCerts(reg, "scheduler", certs); err != nil {
		return err
	}
	if err := opsmetrics.RegisterLeader(reg, sched.Leading); err != nil {
		return err
	}
	return opsmetrics.RegisterEtcd(reg, store.DefaultQuotaBackendBytes, func(ctx context.Context) (int64, int64, error) {
		s, err := st.DBStatus(ctx)
		return s.DBSize, s.DBSizeInUse, err
	})
}
