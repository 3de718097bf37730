package agent

import (
	"testing"
	"time"

	persysv1 "github.com/persys-dev/compute/api/persys/v1"
	"github.com/persys-dev/compute/internal/agent/probe"
)

func TestVMProbeAddress(t *testing.T) {
	spec := &persysv1.WorkloadSpec{Vm: &persysv1.VMSpec{Networks: []*persysv1.VMNetwork{
		{Mode: "bridge", PortForwards: []*persysv1.VMPortForward{{HostPort: 1, GuestPort: 80}}},
		{PortForwards: []*persysv1.VMPortForward{
			{HostPort: 5353, GuestPort: 53, Protocol: "udp"},
			{HostPort: 18080, GuestPort: 80},
			{HostPort: 2222, GuestPort: 22, HostIp: "10.0.0.5"},
			{HostPort: 4443, GuestPort: 443, HostIp: "0.0.0.0"},
		}},
	}}}
	tests := []struct {
		port uint32
		want string
	}{
		{80, "127.0.0.1:18080"}, // not the bridge network's forward
		{22, "10.0.0.5:2222"},
		{443, "127.0.0.1:4443"},
		{53, ""}, // udp only
		{8080, ""},
	}
	for _, tc := range tests {
		got, err := vmProbeAddress(spec, tc.port)
		if got != tc.want || (err == nil) != (tc.want != "") {
			t.Errorf("vmProbeAddress(%d) = %q, %v; want %q", tc.port, got, err, tc.want)
		}
	}
}

// TestHealthOverlay: a liveness failure is reported for its instance only;
// a replaced instance (another runtime id) is reported as the runtime
// says, and a running workload without checks is ready.
func TestHealthOverlay(t *testing.T) {
	h := newHealthChecks(&Agent{ledger: &ledger{entries: map[string]allocation{}}})
	running := func(id string) *persysv1.WorkloadStatus {
		return &persysv1.WorkloadStatus{Name: "w", Uid: "u", Revision: 1, RuntimeId: id, State: persysv1.ActualState_ACTUAL_STATE_RUNNING}
	}
	if st := h.overlay(running("a")); !st.GetReady() || st.GetHealth() != persysv1.HealthState_HEALTH_STATE_UNSPECIFIED {
		t.Fatalf("without checks: ready %v health %s", st.GetReady(), st.GetHealth())
	}
	h.remember("w", "u", 1, healthSpec(&persysv1.WorkloadSpec{ReadinessCheck: &persysv1.HealthCheck{Type: persysv1.HealthCheckType_HEALTH_CHECK_TYPE_TCP, Port: 1}}))
	if st := h.overlay(running("a")); st.GetReady() || st.GetHealth() != persysv1.HealthState_HEALTH_STATE_STARTING {
		t.Fatalf("checks not started: ready %v health %s", st.GetReady(), st.GetHealth())
	}
	h.failures["w"] = healthFailure{inst: instanceOf(running("a")), detail: "liveness check failed: x", since: time.Unix(5, 0),
		snap: probe.Snapshot{Output: "x", Check: probe.Liveness}}
	stopped := running("a")
	stopped.State = persysv1.ActualState_ACTUAL_STATE_STOPPED
	if st := h.overlay(stopped); st.GetState() != persysv1.ActualState_ACTUAL_STATE_FAILED ||
		st.GetReason() != persysv1.FailureReason_FAILURE_REASON_HEALTH_CHECK_FAILED || st.GetHealthOutput() != "x" {
		t.Fatalf("failed instance reported %s %s %q", st.GetState(), st.GetReason(), st.GetHealthOutput())
	}
	out := h.sync([]*persysv1.WorkloadStatus{running("b")})
	if st := out[0]; st.GetState() != persysv1.ActualState_ACTUAL_STATE_RUNNING || st.GetReason() != persysv1.FailureReason_FAILURE_REASON_UNSPECIFIED {
		t.Fatalf("replaced instance reported %s %s", st.GetState(), st.GetReason())
	}
	if _, ok := h.failures["w"]; ok {
		t.Fatal("the failure of a replaced instance is kept")
	}
}

// TestSyncMemoWhileQuiet: statuses listed again are overlaid from the last
// listing (the same results) while no instance has a prober or a failure;
// a liveness failure is reported at once, not hidden by the memo.
func TestSyncMemoWhileQuiet(t *testing.T) {
	h := newHealthChecks(&Agent{ledger: &ledger{entries: map[string]allocation{}}})
	running := func(name string) *persysv1.WorkloadStatus {
		return &persysv1.WorkloadStatus{Name: name, Uid: "u-" + name, Revision: 1, RuntimeId: "r-" + name, State: persysv1.ActualState_ACTUAL_STATE_RUNNING}
	}
	a, b := running("a"), running("b")
	first := h.sync([]*persysv1.WorkloadStatus{a, b})
	again := h.sync([]*persysv1.WorkloadStatus{a, b})
	for i := range first {
		if !first[i].GetReady() || again[i] != first[i] {
			t.Fatalf("%s listed again: ready %v, same overlay %v; want ready and the same", first[i].GetName(), first[i].GetReady(), again[i] == first[i])
		}
	}
	h.mu.Lock()
	h.failures["a"] = healthFailure{inst: instanceOf(a), detail: "liveness check failed: x", since: time.Unix(5, 0)}
	h.mu.Unlock()
	out := h.sync([]*persysv1.WorkloadStatus{a, b})
	if out[0].GetState() != persysv1.ActualState_ACTUAL_STATE_FAILED || out[0].GetReason() != persysv1.FailureReason_FAILURE_REASON_HEALTH_CHECK_FAILED {
		t.Fatalf("a after its liveness failed: %s %s, want FAILED HEALTH_CHECK_FAILED", out[0].GetState(), out[0].GetReason())
	}
	if out[1] != first[1] {
		t.Fatal("b, unchanged and without checks, is overlaid anew")
	}
}
