package reconcile

import (
	"testing"
	"time"

	persysv1 "github.com/persys-dev/compute/api/persys/v1"
	"github.com/persys-dev/compute/internal/model"
)

// benchInputs are the decisions the scheduler's workers take most often,
// weighted roughly as a busy cluster sees them: most workloads are where
// they should be (the resync and every changed report land here), then new
// ones to place, applies, creations in progress, lost nodes and deletions.
func benchInputs(now time.Time) map[string]Input {
	running := &Observed{UID: "u1", Revision: 3, State: model.StateRunning}
	base := Input{Now: now, Exists: true, UID: "u1", Revision: 3,
		DesiredState: model.DesiredRunning, Node: "node-1", NodeReady: true,
		Grace: 10 * time.Second, Reschedulable: true, MaxAttempts: 6}
	with := func(f func(in *Input)) Input {
		in := base
		f(&in)
		return in
	}
	return map[string]Input{
		"steady": with(func(in *Input) { in.Observed = running }),
		"place":  with(func(in *Input) { in.Node, in.NodeReady = "", false }),
		"apply-missing": with(func(in *Input) {
			in.Observed = nil
		}),
		"creating": with(func(in *Input) {
			in.Observed = &Observed{UID: "u1", Revision: 3, State: model.StateCreating}
		}),
		"failed-backoff": with(func(in *Input) {
			in.Observed = &Observed{UID: "u1", Revision: 3, State: model.StateFailed,
				Reason: model.FailureReason(persysv1.FailureReason_FAILURE_REASON_CONTAINER_EXITED), Message: "exited with code 1"}
			in.Attempts, in.NextAttemptAt = 2, now.Add(5*time.Second)
		}),
		"gave-up": with(func(in *Input) {
			in.Observed = &Observed{UID: "u1", Revision: 3, State: model.StateFailed}
			in.Attempts, in.LastMessage = 6, "image not found"
		}),
		"node-lost-grace": with(func(in *Input) {
			in.NodeReady, in.NodeLostFor, in.Observed = false, 3*time.Second, running
		}),
		"node-lost-reschedule": with(func(in *Input) {
			in.NodeReady, in.NodeLostFor, in.Observed = false, 11*time.Second, running
		}),
		"deleting": with(func(in *Input) { in.Deleting, in.Observed = true, running }),
	}
}

// BenchmarkReconcileDecide measures Decide, the pure step every reconcile
// of every workload takes, per case and over a weighted mix.
func BenchmarkReconcileDecide(b *testing.B) {
	now := time.Unix(1_700_000_000, 0)
	inputs := benchInputs(now)
	for _, name := range []string{"steady", "place", "apply-missing", "creating", "failed-backoff",
		"gave-up", "node-lost-grace", "node-lost-reschedule", "deleting"} {
		in := inputs[name]
		b.Run(name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				sink = Decide(in)
			}
		})
	}
	// A mix: 70% steady, 10% place, 10% creating, 5% apply, 5% others.
	var mix []Input
	add := func(name string, n int) {
		for range n {
			mix = append(mix, inputs[name])
		}
	}
	add("steady", 14)
	add("place", 2)
	add("creating", 2)
	add("apply-missing", 1)
	add("node-lost-grace", 1)
	b.Run("mix", func(b *testing.B) {
		b.ReportAllocs()
		i := 0
		for b.Loop() {
			sink = Decide(mix[i%len(mix)])
			i++
		}
	})
}

var sink Plan
