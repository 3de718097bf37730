// Package reconcile compares one workload's desired state with what its node
// reports and says what to do next. It is a pure function: the caller passes
// every input, the current time among them, and carries out the returned
// plan. It never performs I/O, so every decision is a table test.
package reconcile

import (
	"fmt"
	"time"

	"github.com/persys-dev/compute/internal/model"
)

// Observed is what the assigned node last said about the workload.
type Observed struct {
	UID      string
	Revision uint64
	State    model.ActualState
	Reason   model.FailureReason
	Message  string
}

// Input is everything one decision needs.
type Input struct {
	Now time.Time

	// Desired state; Exists is false once the workload's key is gone.
	Exists       bool
	Deleting     bool
	UID          string
	Revision     uint64
	DesiredState model.DesiredState

	// Assignment; Node is empty when the workload is not placed.
	Node      string
	NodeReady bool
	// PreviousNode still runs the old copy of a workload that moves
	// (drain); it is removed once the copy on Node reached its state.
	PreviousNode string

	// NodeLostFor is how long Node has been NotReady (zero while ready).
	// After Grace a workload that may move (Reschedulable) is placed again.
	NodeLostFor time.Duration
	// NodeDraining: the node is being drained; the workload moves (with
	// its old copy kept until the new one runs).
	NodeDraining  bool
	Grace         time.Duration
	Reschedulable bool

	// Observed is nil when the node has not reported the workload (missing,
	// or not yet known).
	Observed *Observed
	// ObservedSince is when the node's report of this revision entered its
	// current state (zero: unknown). TransitionTimeout bounds how long a
	// transitional state (CREATING) may last before the revision is
	// applied again (0: no bound); applies are idempotent by revision, so
	// a second one finishes what the first left.
	ObservedSince     time.Time
	TransitionTimeout time.Duration

	// Backoff state for re-applies of this revision: attempts so far that did
	// not reach the desired state, and the earliest time of the next one.
	Attempts      int
	NextAttemptAt time.Time
	// MaxAttempts ends the retries (0: retry for ever); LastReason and
	// LastMessage describe the last failed attempt.
	MaxAttempts int
	LastReason  model.FailureReason
	LastMessage string
}

// Action is the single step the caller takes.
type Action int

const (
	// Nothing: the workload is where it should be.
	Nothing Action = iota
	// Place: choose a node and commit the assignment.
	Place
	// Apply: send the desired revision to the assigned node.
	Apply
	// DeleteOnNode: remove the workload from its node.
	DeleteOnNode
	// RemoveKeys: the workload is gone from every node; delete its keys.
	RemoveKeys
	// Wait: something outside must change (node comes back, backoff ends).
	Wait
	// Reschedule: the node is lost past the grace; place the workload on
	// another node.
	Reschedule
	// RemovePrevious: the moved copy runs; remove the old one.
	RemovePrevious
)

func (a Action) String() string {
	switch a {
	case Nothing:
		return "nothing"
	case Place:
		return "place"
	case Apply:
		return "apply"
	case DeleteOnNode:
		return "delete-on-node"
	case RemoveKeys:
		return "remove-keys"
	case Wait:
		return "wait"
	case Reschedule:
		return "reschedule"
	case RemovePrevious:
		return "remove-previous"
	}
	return "unknown"
}

// Plan is the decision: one action, the status to record when it differs
// from the stored one (State is UNSPECIFIED when the status is left alone),
// and when to look again (zero means only when an event arrives).
type Plan struct {
	Action  Action
	State   model.ActualState
	Reason  model.FailureReason
	Message string
	Requeue time.Duration
	// Resend: the Apply re-sends a revision the node has not finished
	// within TransitionTimeout; the caller records an event saying so.
	Resend bool
}

// Decide follows the decision matrix of DESIGN §4:
// Running/Missing → apply, Running/Failed → recreate (with backoff),
// Stopped/Running → stop, Deleted/Exists → delete, equal → nothing.
func Decide(in Input) Plan {
	if !in.Exists {
		return Plan{Action: Nothing}
	}
	if in.Deleting {
		switch {
		case in.Node == "":
			return Plan{Action: RemoveKeys}
		case !in.NodeReady:
			// The node cannot confirm; its copy becomes an orphan that the
			// agent removes as soon as it reports again.
			return Plan{Action: RemoveKeys}
		default:
			// Delete is idempotent, so a stale "missing" report costs one call.
			return Plan{Action: DeleteOnNode, State: model.StateDeleting}
		}
	}
	if in.Node == "" {
		return Plan{Action: Place}
	}
	if !in.NodeReady {
		plan := Plan{Action: Wait, State: model.StateUnknown,
			Reason: model.ReasonNodeLost, Message: "node " + in.Node + " is not ready"}
		if in.Reschedulable {
			if in.NodeLostFor >= in.Grace {
				plan.Action = Reschedule
				return plan
			}
			plan.Requeue = in.Grace - in.NodeLostFor
		}
		return plan
	}

	if in.NodeDraining && in.PreviousNode == "" {
		return Plan{Action: Reschedule}
	}

	obs := in.Observed
	current := obs != nil && obs.UID == in.UID && obs.Revision == in.Revision
	if current && reached(obs.State, in.DesiredState) {
		action := Nothing
		if in.PreviousNode != "" {
			action = RemovePrevious
		}
		return Plan{Action: action, State: obs.State, Reason: obs.Reason, Message: obs.Message}
	}
	if current && obs.State == model.StateCreating {
		return decideCreating(in)
	}

	// Missing, another revision, failed, or in the wrong run state: apply,
	// at once the first time and with backoff after that, until the
	// attempts run out.
	if in.MaxAttempts > 0 && in.Attempts >= in.MaxAttempts {
		return Plan{Action: Wait, State: model.StateFailed, Reason: in.LastReason,
			Message: fmt.Sprintf("gave up after %d attempts: %s", in.Attempts, in.LastMessage)}
	}
	plan := Plan{Action: Apply}
	switch {
	case current && obs.State == model.StateFailed:
		plan.State, plan.Reason, plan.Message = obs.State, obs.Reason, obs.Message
	case current && obs.State == model.StateStopped:
		// Stopped though it should run (its process exited 0, or the
		// engine stopped it on a restart): a failure like any other exit,
		// counted and backed off, never restarted in silence.
		plan.State, plan.Reason = model.StateFailed, model.ReasonContainerExited
		plan.Message = "stopped while it should run"
		if obs.Message != "" {
			plan.Message += ": " + obs.Message
		}
	}
	if in.Attempts > 0 && in.Now.Before(in.NextAttemptAt) {
		plan.Action = Wait
		plan.Requeue = in.NextAttemptAt.Sub(in.Now)
	}
	return plan
}

// decideCreating decides for a revision the node reports CREATING: the runtime
// is still starting it (or restarting it under its own restart policy), so
// wait and look again shortly — until TransitionTimeout passes, when the
// start is taken as lost (its process died between two steps) and the
// revision is applied again.
func decideCreating(in Input) Plan {
	plan := Plan{Action: Wait, State: model.StateCreating, Requeue: time.Second}
	if in.TransitionTimeout <= 0 || in.ObservedSince.IsZero() {
		return plan
	}
	stuck := in.Now.Sub(in.ObservedSince)
	if stuck < in.TransitionTimeout {
		if left := in.TransitionTimeout - stuck; left < plan.Requeue {
			plan.Requeue = left
		}
		return plan
	}
	plan.Action, plan.Requeue, plan.Resend = Apply, 0, true
	plan.Message = fmt.Sprintf("CREATING for %s, longer than %s: applying revision %d again",
		stuck.Round(time.Second), in.TransitionTimeout, in.Revision)
	return plan
}

func reached(state model.ActualState, desired model.DesiredState) bool {
	if desired == model.DesiredStopped {
		return state == model.StateStopped
	}
	return state == model.StateRunning
}

// Backoff is the delay before re-apply attempt n (1-based): zero for the
// first, then base, 2×base, 4×base … capped at max.
func Backoff(attempt int, base, max time.Duration) time.Duration {
	if attempt <= 1 {
		return 0
	}
	d := base
	for i := 2; i < attempt; i++ {
		d *= 2
		if d >= max {
			return max
		}
	}
	if d > max {
		return max
	}
	return d
}
