package reconcile

import (
	"testing"
	"time"

	persysv1 "github.com/persys-dev/compute/api/persys/v1"
	"github.com/persys-dev/compute/internal/model"
)

const (
	running  = model.StateRunning
	stopped  = model.StateStopped
	failed   = model.StateFailed
	creating = model.StateCreating
	missing  = model.StateMissing
)

func TestDecide(t *testing.T) {
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	base := Input{Now: now, Exists: true, UID: "u1", Revision: 2,
		DesiredState: model.DesiredRunning, Node: "n1", NodeReady: true}
	with := func(f func(*Input)) Input { in := base; f(&in); return in }
	obs := func(uid string, rev uint64, st model.ActualState) *Observed {
		return &Observed{UID: uid, Revision: rev, State: st}
	}

	tests := []struct {
		name    string
		in      Input
		action  Action
		state   model.ActualState
		requeue bool
	}{
		{"gone workload does nothing", with(func(i *Input) { i.Exists = false }), Nothing, 0, false},
		{"unplaced workload is placed", with(func(i *Input) { i.Node = "" }), Place, 0, false},
		{"running and reported running: nothing", with(func(i *Input) { i.Observed = obs("u1", 2, running) }), Nothing, running, false},
		{"running but missing: apply at once", with(func(i *Input) { i.Observed = nil }), Apply, 0, false},
		{"reported missing explicitly: apply", with(func(i *Input) { i.Observed = obs("u1", 2, missing) }), Apply, 0, false},
		{"old revision on node: apply new", with(func(i *Input) { i.Observed = obs("u1", 1, running) }), Apply, 0, false},
		{"old uid on node: apply", with(func(i *Input) { i.Observed = obs("u0", 2, running) }), Apply, 0, false},
		{"failed: recreate and keep failure", with(func(i *Input) { i.Observed = obs("u1", 2, failed) }), Apply, failed, false},
		{"failed within backoff: wait", with(func(i *Input) {
			i.Observed = obs("u1", 2, failed)
			i.Attempts = 2
			i.NextAttemptAt = now.Add(5 * time.Second)
		}), Wait, failed, true},
		{"backoff elapsed: apply", with(func(i *Input) {
			i.Observed = obs("u1", 2, failed)
			i.Attempts = 2
			i.NextAttemptAt = now.Add(-time.Second)
		}), Apply, failed, false},
		{"creating: wait and look again", with(func(i *Input) { i.Observed = obs("u1", 2, creating) }), Wait, creating, true},
		{"creating within its deadline: wait", with(func(i *Input) {
			i.Observed = obs("u1", 2, creating)
			i.ObservedSince, i.TransitionTimeout = now.Add(-30*time.Second), time.Minute
		}), Wait, creating, true},
		{"creating past its deadline: apply again", with(func(i *Input) {
			i.Observed = obs("u1", 2, creating)
			i.ObservedSince, i.TransitionTimeout = now.Add(-61*time.Second), time.Minute
		}), Apply, creating, false},
		{"creating since an unknown time: wait", with(func(i *Input) {
			i.Observed = obs("u1", 2, creating)
			i.TransitionTimeout = time.Minute
		}), Wait, creating, true},
		{"desired stopped but running: apply (stop)", with(func(i *Input) {
			i.DesiredState = model.DesiredStopped
			i.Observed = obs("u1", 2, running)
		}), Apply, 0, false},
		{"desired stopped and stopped: nothing", with(func(i *Input) {
			i.DesiredState = model.DesiredStopped
			i.Observed = obs("u1", 2, stopped)
		}), Nothing, stopped, false},
		{"desired running but stopped: a counted failure, apply again", with(func(i *Input) { i.Observed = obs("u1", 2, stopped) }), Apply, failed, false},
		{"node not ready: wait as unknown", with(func(i *Input) { i.NodeReady = false; i.Observed = obs("u1", 2, running) }), Wait, model.StateUnknown, false},
		{"node lost within grace: wait and look again at grace", with(func(i *Input) {
			i.NodeReady, i.Reschedulable, i.Grace, i.NodeLostFor = false, true, 10*time.Second, 3*time.Second
		}), Wait, model.StateUnknown, true},
		{"node lost past grace: reschedule", with(func(i *Input) {
			i.NodeReady, i.Reschedulable, i.Grace, i.NodeLostFor = false, true, 10*time.Second, 10*time.Second
		}), Reschedule, model.StateUnknown, false},
		{"node lost, policy wait: never reschedule", with(func(i *Input) {
			i.NodeReady, i.Reschedulable, i.Grace, i.NodeLostFor = false, false, 10*time.Second, time.Hour
		}), Wait, model.StateUnknown, false},
		{"draining node: move", with(func(i *Input) { i.NodeDraining = true; i.Observed = obs("u1", 2, running) }), Reschedule, 0, false},
		{"moved copy runs: remove the previous one", with(func(i *Input) {
			i.PreviousNode = "n0"
			i.Observed = obs("u1", 2, running)
		}), RemovePrevious, running, false},
		{"moved copy not yet running: apply, keep previous", with(func(i *Input) { i.PreviousNode = "n0" }), Apply, 0, false},
		{"attempts exhausted: failed for good", with(func(i *Input) {
			i.Observed = obs("u1", 2, failed)
			i.Attempts, i.MaxAttempts = 5, 5
			i.LastReason = model.FailureReason(persysv1.FailureReason_FAILURE_REASON_IMAGE_NOT_FOUND)
		}), Wait, failed, false},
		{"deleting and running: delete on node", with(func(i *Input) { i.Deleting = true; i.Observed = obs("u1", 2, running) }), DeleteOnNode, model.StateDeleting, false},
		{"deleting, unreported: delete on node anyway", with(func(i *Input) { i.Deleting = true }), DeleteOnNode, model.StateDeleting, false},
		{"deleting, unplaced: remove keys", with(func(i *Input) { i.Deleting = true; i.Node = "" }), RemoveKeys, 0, false},
		{"deleting, node lost: remove keys", with(func(i *Input) { i.Deleting = true; i.NodeReady = false }), RemoveKeys, 0, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := Decide(tt.in)
			if got.Action != tt.action {
				t.Fatalf("action = %v, want %v", got.Action, tt.action)
			}
			if got.State != tt.state {
				t.Fatalf("state = %v, want %v", got.State, tt.state)
			}
			if (got.Requeue > 0) != tt.requeue {
				t.Fatalf("requeue = %v, want requeue %v", got.Requeue, tt.requeue)
			}
		})
	}
}

func TestBackoff(t *testing.T) {
	base, max := 5*time.Second, 120*time.Second
	tests := []struct {
		attempt int
		want    time.Duration
	}{
		{0, 0}, {1, 0}, {2, 5 * time.Second}, {3, 10 * time.Second}, {4, 20 * time.Second},
		{5, 40 * time.Second}, {6, 80 * time.Second}, {7, 120 * time.Second}, {30, 120 * time.Second},
	}
	for _, tt := range tests {
		if got := Backoff(tt.attempt, base, max); got != tt.want {
			t.Errorf("Backoff(%d) = %v, want %v", tt.attempt, got, tt.want)
		}
	}
}

// A deleted or stopped workload never gets placed, whatever was observed.
func TestNeverPlacesDeletingWorkloads(t *testing.T) {
	states := []model.ActualState{0, running, stopped, failed, creating, missing}
	for _, node := range []string{"", "n1"} {
		for _, ready := range []bool{true, false} {
			for _, st := range states {
				in := Input{Now: time.Unix(0, 0), Exists: true, Deleting: true, UID: "u", Revision: 1, Node: node, NodeReady: ready}
				if st != 0 {
					in.Observed = &Observed{UID: "u", Revision: 1, State: st}
				}
				if a := Decide(in).Action; a == Place || a == Apply {
					t.Fatalf("deleting workload got %v (node %q ready %v state %v)", a, node, ready, st)
				}
			}
		}
	}
}
