package agent

import (
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/persys-dev/compute/api/persys/contract"
	persysv1 "github.com/persys-dev/compute/api/persys/v1"
)

func TestSetWorkloadsGauge(t *testing.T) {
	reg := prometheus.NewRegistry()
	m, err := newMetrics(reg)
	if err != nil {
		t.Fatal(err)
	}
	st := func(s persysv1.ActualState) *persysv1.WorkloadStatus { return &persysv1.WorkloadStatus{State: s} }
	running, failed := persysv1.ActualState_ACTUAL_STATE_RUNNING, persysv1.ActualState_ACTUAL_STATE_FAILED
	unspecified := persysv1.ActualState_ACTUAL_STATE_UNSPECIFIED
	// series reads the gauge as a scrape would: state label to value.
	series := func() map[string]float64 {
		mfs, err := reg.Gather()
		if err != nil {
			t.Fatal(err)
		}
		out := map[string]float64{}
		for _, mf := range mfs {
			if mf.GetName() != "persys_agent_workloads" {
				continue
			}
			for _, mt := range mf.GetMetric() {
				for _, l := range mt.GetLabel() {
					if l.GetName() == "state" {
						out[l.GetValue()] = mt.GetGauge().GetValue()
					}
				}
			}
		}
		return out
	}
	gauge := func(s persysv1.ActualState) float64 { return series()[contract.Name(s)] }

	m.setWorkloads([]*persysv1.WorkloadStatus{st(running), st(running), st(failed)})
	if r, f := gauge(running), gauge(failed); r != 2 || f != 1 {
		t.Fatalf("running %v failed %v, want 2 and 1", r, f)
	}
	// Zero is shown for every known state; the unspecified one is absent
	// until a workload has it.
	if n := len(series()); n != len(persysv1.ActualState_name)-1 {
		t.Fatalf("%d series, want %d", n, len(persysv1.ActualState_name)-1)
	}
	m.setWorkloads([]*persysv1.WorkloadStatus{st(failed), st(unspecified)})
	if r, f, u := gauge(running), gauge(failed), gauge(unspecified); r != 0 || f != 1 || u != 1 {
		t.Fatalf("running %v failed %v unspecified %v, want 0, 1, 1", r, f, u)
	}
	m.setWorkloads(nil)
	if n := len(series()); n != len(persysv1.ActualState_name) {
		t.Fatalf("%d series after an unspecified state was seen, want %d", n, len(persysv1.ActualState_name))
	}
	if u := gauge(unspecified); u != 0 {
		t.Fatalf("unspecified %v after it went away, want 0", u)
	}
}
