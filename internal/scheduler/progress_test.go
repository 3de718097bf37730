package scheduler_test

import (
	"fmt"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"google.golang.org/protobuf/proto"

	persysv1 "github.com/persys-dev/compute/api/persys/v1"
	"github.com/persys-dev/compute/internal/pki"
	"github.com/persys-dev/compute/internal/principal"
	"github.com/persys-dev/compute/internal/scheduler"
	"github.com/persys-dev/compute/internal/store/storetest"
)

// TestProgressMetricsMatchTheRegistry checks that the progress registry
// (what the bench polls) holds the same placements_total and workloads
// series as the scheduler's own, and nothing else: three workloads with no
// node to run on show as PENDING in both.
func TestProgressMetricsMatchTheRegistry(t *testing.T) {
	st, _ := storetest.New(t)
	reg := prometheus.NewRegistry()
	ctx, s := startLeaseScheduler(t, scheduler.Config{Store: st, Registry: reg})
	progress := prometheus.NewRegistry()
	if err := s.RegisterProgress(progress); err != nil {
		t.Fatal(err)
	}
	admin := principal.Principal{Name: "admin", Role: pki.RoleAdmin}
	for i := range 3 {
		req := &persysv1.ApplyRequest{Name: fmt.Sprintf("progress-%d", i), Spec: containerSpec()}
		if _, _, err := s.ApplyWorkload(ctx, admin, req); err != nil {
			t.Fatal(err)
		}
	}
	names := []string{"persys_scheduler_placements_total", "persys_scheduler_workloads"}
	waitFor(t, "three workloads PENDING in the progress metrics", waitLong, func() (bool, string) {
		got := families(t, progress)
		if len(got) != len(names) {
			return false, fmt.Sprintf("%d families, want %d", len(got), len(names))
		}
		pending := 0.0
		for _, m := range got["persys_scheduler_workloads"].GetMetric() {
			if hasLabels(m, map[string]string{"state": "PENDING"}) {
				pending = m.GetGauge().GetValue()
			}
		}
		return pending == 3, fmt.Sprintf("PENDING %v", pending)
	})
	got, all := families(t, progress), families(t, reg)
	for _, name := range names {
		if !proto.Equal(got[name], all[name]) {
			t.Errorf("%s: progress registry %v, scheduler registry %v", name, got[name], all[name])
		}
	}
}

func families(t *testing.T, g prometheus.Gatherer) map[string]*dto.MetricFamily {
	t.Helper()
	mfs, err := g.Gather()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]*dto.MetricFamily{}
	for _, mf := range mfs {
		out[mf.GetName()] = mf
	}
	return out
}
