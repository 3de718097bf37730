package scheduler

import (
	"context"

	persysv1 "github.com/persys-dev/compute/api/persys/v1"
	"github.com/persys-dev/compute/internal/model"
	"github.com/persys-dev/compute/internal/reconcile"
)

// Crash-loop backoff: an apply that reaches the desired state does not
// forget the failed attempts before it at once. If the workload fails
// again soon after (a container that exits, a guest that panics), the next
// apply waits out the backoff and counts towards MaxAttempts, as any failed
// attempt does; only a state that held for Config.StableAfter resets the
// count.

// reachedState notes that an apply of the workload reached its desired
// state.
func (s *Scheduler) reachedState(name string) {
	s.cache.MarkReached(name)
}

// settle forgets the failed attempts of a workload that is in its desired
// state once that held for StableAfter; before that it looks again when
// the time is up.
func (s *Scheduler) settle(name string) {
	s.cache.SeenReached(name)
	if wait := s.cache.StableWait(name, s.cfg.StableAfter); wait > 0 {
		s.queue.AddAfter(name, wait)
		return
	}
	s.resetAttempts(name)
}

// failedAfterReach records, once, that a workload that ran in its desired
// state was then reported FAILED (or stopped) by its node: the apply that
// reached it was a failed attempt after all, or, after a run long enough
// for its attempts to be forgotten, this failure is attempt 1. Either way
// it is told (an event, the retry record, the reason the retry engine
// shows) before the workload runs again, never restarted in silence. The
// backoff counts from now, not from the apply (which may be long past),
// and the status shows FAILED with the attempts and the next attempt until
// then, as after an apply that failed at once. It reports whether it
// handled the plan.
func (s *Scheduler) failedAfterReach(ctx context.Context, name string, v view, plan reconcile.Plan) bool {
	if plan.State != model.StateFailed {
		return false
	}
	attempt, delay := s.cache.FailedAfterReach(name)
	if attempt == 0 {
		return false
	}
	st := &persysv1.WorkloadStatus{Name: name, Uid: v.w.GetUid(), State: persysv1.ActualState(plan.State), Reason: persysv1.FailureReason(plan.Reason),
		Message: plan.Message, NodeId: v.in.Node, Revision: v.w.GetRevision()}
	s.recordAttempt(ctx, name, v, attempt, delay, st)
	s.setStatus(ctx, name, v, st)
	s.queue.AddAfter(name, delay)
	return true
}
