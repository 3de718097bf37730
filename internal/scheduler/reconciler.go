package scheduler

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strings"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/persys-dev/compute/api/persys/contract"
	persysv1 "github.com/persys-dev/compute/api/persys/v1"
	"github.com/persys-dev/compute/api/persys/v1/persysv1grpc"
	"github.com/persys-dev/compute/internal/failpoint"
	"github.com/persys-dev/compute/internal/model"
	"github.com/persys-dev/compute/internal/placement"
	"github.com/persys-dev/compute/internal/principal"
	"github.com/persys-dev/compute/internal/reconcile"
	"github.com/persys-dev/compute/internal/scheduler/statecache"
	"github.com/persys-dev/compute/internal/secretsvc"
	"github.com/persys-dev/compute/internal/store"
)

// reconcile brings one workload a step closer to its desired state. After a
// placement it continues at once with the apply, so a new workload reaches
// its node without waiting for the watch to echo the assignment.
//
// It reports whether it handed the workload off (an apply in flight): the
// queue's Done then comes when the call ends, not from the worker.
func (s *Scheduler) reconcile(ctx context.Context, name string) (handedOff bool) {
	start := time.Now()
	defer func() { s.metrics.reconcileDuration.Observe(time.Since(start).Seconds()) }()
	for step := 0; step < 3 && ctx.Err() == nil; step++ {
		next, handed := s.reconcileOnce(ctx, name)
		if handed {
			return true
		}
		if !next {
			return false
		}
	}
	return false
}

// view is a consistent copy of what one decision needs.
type view struct {
	w        *persysv1.Workload
	rev      int64
	assign   statecache.Assignment
	assignRv int64
	addr     string
	// report is what the assigned node last reported of the workload
	// (nil: nothing), read with the rest: the status a plan writes takes
	// the runtime's details from the very report the plan was decided on.
	report *persysv1.WorkloadStatus
	in     reconcile.Input
	// unreported is true while the assigned node is alive but has not sent
	// its full list since this scheduler started or since it came back:
	// the absence of a report then means nothing yet.
	unreported bool
}

// snapshotFor reads what the decision about workload name needs.
func (s *Scheduler) snapshotFor(name string) (view, bool) {
	r, ok := s.cache.Read(name)
	if !ok {
		return view{}, false
	}
	w := r.Workload
	v := view{w: w, rev: r.Rev, assign: r.Assignment, assignRv: r.AssignmentRev}
	v.in = reconcile.Input{
		Now:           s.cfg.Now(),
		Exists:        true,
		Deleting:      w.GetDeleting(),
		UID:           w.GetUid(),
		Revision:      w.GetRevision(),
		DesiredState:  model.DesiredState(w.GetSpec().GetDesiredState()),
		Attempts:      r.Attempts,
		NextAttemptAt: r.NextAttemptAt,
		MaxAttempts:   s.cfg.MaxAttempts,
		LastReason:    model.FailureReason(r.LastReason),
		LastMessage:   r.LastMessage,
		Grace:         s.cfg.RescheduleGrace,
		Reschedulable: w.GetSpec().GetNodeLossPolicy() != persysv1.NodeLossPolicy_NODE_LOSS_POLICY_WAIT,
	}
	if s.cfg.MaxAttempts < 0 {
		v.in.MaxAttempts = 0
	}
	if !r.Assignment.Exists() {
		return v, true
	}
	v.in.Node = r.Assignment.GetNodeId()
	v.in.PreviousNode = r.Assignment.GetPreviousNodeId()
	if r.NodeKnown {
		v.in.NodeReady = r.NodeAlive
		v.in.NodeDraining = r.NodeDraining && r.MoveBlocked == ""
		if !r.NodeAlive && !r.NodeLostAt.IsZero() {
			v.in.NodeLostFor = v.in.Now.Sub(r.NodeLostAt)
		}
		v.unreported = r.NodeAlive && !r.NodeReported
		v.addr = r.NodeAddress
		if rep := r.Report; rep != nil {
			v.report = rep
			v.in.Observed = &reconcile.Observed{UID: rep.GetUid(), Revision: rep.GetRevision(), State: model.ActualState(rep.GetState()),
				Reason: model.FailureReason(rep.GetReason()), Message: rep.GetMessage()}
			v.in.ObservedSince, v.in.TransitionTimeout = r.ReportSince, s.cfg.ApplyTimeout
		}
	}
	return v, true
}

// reconcileOnce takes one decision and carries it out; it reports whether
// another step should follow at once, and whether an apply was handed
// off.
func (s *Scheduler) reconcileOnce(ctx context.Context, name string) (next, handedOff bool) {
	v, ok := s.snapshotFor(name)
	if !ok {
		return false, false
	}
	if v.unreported && !v.in.Deleting {
		// Wait for the node's report instead of re-applying blindly; the
		// report queues this workload again (processReports).
		return false, false
	}
	plan := reconcile.Decide(v.in)
	if s.failedAfterReach(ctx, name, v, plan) {
		return false, false
	}
	switch plan.Action {
	case reconcile.Place:
		return s.place(ctx, name, v, model.CauseNew), false
	case reconcile.Reschedule:
		s.recordPlan(ctx, name, v, plan)
		return s.reschedule(ctx, name, v), false
	case reconcile.RemovePrevious:
		s.recordPlan(ctx, name, v, plan)
		s.removePrevious(ctx, name, v)
	case reconcile.Apply:
		return false, s.apply(ctx, name, v, plan)
	case reconcile.DeleteOnNode:
		s.recordPlan(ctx, name, v, plan)
		return s.deleteOnNode(ctx, name, v), false
	case reconcile.RemoveKeys:
		s.removeKeys(ctx, name, v)
	case reconcile.Wait, reconcile.Nothing:
		s.recordPlan(ctx, name, v, plan)
		if plan.Requeue > 0 {
			s.queue.AddAfter(name, plan.Requeue)
		}
		if plan.Action == reconcile.Nothing {
			s.settle(name)
		}
	}
	return false, false
}

// recordPlan stores the status a plan carries, keeping the node's report
// details (runtime id, exit code) when the plan agrees with the report.
func (s *Scheduler) recordPlan(ctx context.Context, name string, v view, plan reconcile.Plan) {
	if plan.State == model.StateUnspecified {
		return
	}
	st := &persysv1.WorkloadStatus{Name: name, Uid: v.w.GetUid(), State: persysv1.ActualState(plan.State), Reason: persysv1.FailureReason(plan.Reason),
		Message: plan.Message, NodeId: v.in.Node, Revision: v.w.GetRevision()}
	if plan.State == model.StateFailed {
		st.Attempts = int32(v.in.Attempts)
	}
	if r := v.report; r != nil && model.ActualState(r.GetState()) == plan.State {
		st.RuntimeId, st.ExitCode, st.RestartCount, st.Revision = r.GetRuntimeId(), r.GetExitCode(), r.GetRestartCount(), r.GetRevision()
		// The agent's health checks (ready is what a Service counts).
		st.Ready, st.Health, st.HealthOutput, st.HealthCheckedAt, st.HealthCheck =
			r.GetReady(), r.GetHealth(), r.GetHealthOutput(), r.GetHealthCheckedAt(), r.GetHealthCheck()
		// Where it runs and what describe shows: a status written for a
		// readiness change must not drop the addresses a service's
		// endpoints carry.
		st.Addresses, st.Details, st.Services = r.GetAddresses(), r.GetDetails(), r.GetServices()
	}
	s.setStatus(ctx, name, v, st)
}

// resetAttempts ends the retry record of a workload that reached its state.
func (s *Scheduler) resetAttempts(name string) {
	if s.cache.ResetAttempts(name) {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := s.store.DeleteRetry(ctx, name); err != nil {
			s.log.Warn("delete retry record", "workload", name, "err", err)
		}
	}
}

// recordAttempt is the retry engine: a failed attempt is persisted under
// retries/ (so a restarted scheduler keeps the schedule), counted, told as
// an event, and shown in the status (attempts, next attempt); the last one
// allowed turns the status FAILED for good until a retry resets it.
func (s *Scheduler) recordAttempt(ctx context.Context, name string, v view, attempt int, delay time.Duration, st *persysv1.WorkloadStatus) {
	next := s.cfg.Now().Add(delay)
	final := s.cfg.MaxAttempts > 0 && attempt >= s.cfg.MaxAttempts
	if !final {
		st.Message += s.repickDynamic(ctx, name, v, st)
	}
	s.cache.NoteFailure(name, st.GetReason(), st.GetMessage())
	st.Attempts = int32(attempt)
	msg := fmt.Sprintf("attempt %d failed: %s", attempt, st.GetMessage())
	if final {
		st.State = persysv1.ActualState_ACTUAL_STATE_FAILED
		st.Message = fmt.Sprintf("gave up after %d attempts: %s", attempt, st.GetMessage())
		msg += "; no more attempts (persysctl workload retry " + name + " starts over)"
	} else {
		st.NextAttemptAt = timestamppb.New(next)
		msg += fmt.Sprintf("; next attempt in %s", delay)
	}
	s.metrics.retries.WithLabelValues(contract.Name(st.GetReason())).Inc()
	s.events.Add(model.EventAttemptFailed, &persysv1.Event{Workload: name, NodeId: st.GetNodeId(), Reason: st.GetReason(),
		Message: msg, Revision: v.w.GetRevision()})
	r := &persysv1.RetryState{Name: name, Uid: v.w.GetUid(), Revision: v.w.GetRevision(), Attempts: int32(attempt),
		LastReason: st.GetReason(), LastMessage: st.GetMessage()}
	if !final {
		r.NextAttemptAt = timestamppb.New(next)
	}
	if err := s.store.PutRetry(ctx, r); err != nil && !errors.Is(err, store.ErrNotFound) && ctx.Err() == nil {
		s.log.Warn("persist retry record", "workload", name, "err", err)
	}
}

// place runs the pure placement over a snapshot of the nodes and commits
// the result in one etcd transaction guarded by the revisions it read.
func (s *Scheduler) place(ctx context.Context, name string, v view, cause model.AssignmentCause) bool {
	return s.placeFrom(ctx, name, v, cause, "")
}

// placeFrom places workload name, which is on node previous ("" for none;
// a drain keeps the old copy there until the new one runs), in four steps:
//
//  1. choose a node and hold its resources in the cached snapshot, so that
//     concurrent workers see the choice before it commits;
//  2. without a node: record why (pending, or a blocked move) and stop;
//  3. commit the assignment (which stands for the SCHEDULED status) in
//     one transaction guarded by the revisions read; on failure release
//     the hold and queue the workload again;
//  4. put what was committed into the cache, unless the watch brought it
//     first, and announce it.
func (s *Scheduler) placeFrom(ctx context.Context, name string, v view, cause model.AssignmentCause, previous string) bool {
	dec, held, took := s.cache.Choose(name, v.w.GetSpec())
	s.metrics.placementDuration.Observe(took.Seconds())
	if !dec.Placed() {
		s.unplaced(ctx, name, v, cause, dec)
		return false
	}
	a, st, write := placementRecords(name, v, dec, cause, previous, s.cfg.Now())
	a.DynamicHostPorts = held.DynamicPorts()
	if previous != "" {
		a.PreviousDynamicHostPorts = v.assign.GetDynamicHostPorts()
	}
	w := store.PlacementWrite{Assignment: a, WorkloadRev: v.rev, AssignmentRev: v.assignRv}
	if write {
		w.Status = st
	}
	rev, err := s.commitPlacement(ctx, w)
	if err != nil {
		s.cache.Release(name, held)
		s.requeueAfterCommit(name, err)
		return false
	}
	failpoint.Inject(failpoint.SchedulerAfterAssign)
	s.cache.Placed(statecache.Placement{Name: name, WorkloadRev: v.rev, Moved: v.assign.Exists() && cause != model.CauseNodeLost,
		Assignment: a, Status: st, Rev: rev})
	s.metrics.placements.Inc()
	s.log.Info("placed", "workload", name, "node", dec.NodeID, "revision", v.w.GetRevision(), "cause", cause,
		"previous", previous, "feasible", dec.Feasible, "total", dec.Total)
	evType := model.EventPlaced
	switch cause {
	case model.CauseNodeLost:
		evType = model.EventRescheduled
		s.metrics.rescheduled.Inc()
	case model.CauseDrain:
		evType = model.EventMoving
	}
	s.events.Add(evType, &persysv1.Event{Workload: name, NodeId: dec.NodeID, Revision: v.w.GetRevision(),
		Reason: st.Reason, Message: st.Message})
	return true
}

// unplaced records that no node fits: a drained workload keeps running
// where it is and drain reports why; any other stays PENDING with the
// decision kept for describe. No timer: a node joining or capacity
// freeing queues it again.
func (s *Scheduler) unplaced(ctx context.Context, name string, v view, cause model.AssignmentCause, dec placement.Decision) {
	s.metrics.unschedulable.Inc()
	why := summarizeRejections(dec)
	if cause == model.CauseDrain {
		s.cache.SetMoveBlocked(name, why)
		s.events.Add(model.EventMoveBlocked, &persysv1.Event{Workload: name, NodeId: v.in.Node,
			Reason: persysv1.FailureReason_FAILURE_REASON_NO_FEASIBLE_NODE, Message: why})
		return
	}
	s.cache.SetPending(name, decisionProto(dec))
	msg := why
	if cause == model.CauseNodeLost {
		msg = "node " + v.in.Node + " lost and no other node fits: " + msg
	}
	s.setStatus(ctx, name, v, &persysv1.WorkloadStatus{Name: name, Uid: v.w.GetUid(),
		State:    persysv1.ActualState_ACTUAL_STATE_PENDING,
		Reason:   pendingReason(dec),
		Message:  msg,
		NodeId:   v.in.Node,
		Revision: v.w.GetRevision()})
}

// placementRecords are the assignment that commits a placement and the
// SCHEDULED status it leaves the workload in. write reports whether the
// status must be stored: it need not when it is the one the assignment
// implies (store.ScheduledStatus), which every reader derives; a
// rescheduling after a node loss stores its own, which says why.
func placementRecords(name string, v view, dec placement.Decision, cause model.AssignmentCause, previous string, now time.Time) (a *persysv1.Assignment, st *persysv1.WorkloadStatus, write bool) {
	a = &persysv1.Assignment{Name: name, Uid: v.w.GetUid(), NodeId: dec.NodeID, Revision: v.w.GetRevision(),
		PlacedAt: timestamppb.New(now), Decision: decisionProto(dec), PreviousNodeId: previous, Cause: string(cause)}
	st = store.ScheduledStatus(a)
	if cause != model.CauseNodeLost {
		return a, st, false
	}
	st.Reason = persysv1.FailureReason_FAILURE_REASON_NODE_LOST
	st.Message = fmt.Sprintf("node %s lost; rescheduled on %s", v.in.Node, dec.NodeID)
	return a, st, true
}

// requeueAfterCommit queues a workload whose placement did not commit.
func (s *Scheduler) requeueAfterCommit(name string, err error) {
	if errors.Is(err, store.ErrConflict) {
		// Someone changed the workload or placed it meanwhile: the watch
		// brings the new state and queues the workload again.
		s.log.Info("placement conflict, will retry", "workload", name)
		s.queue.AddAfter(name, 100*time.Millisecond)
		return
	}
	s.log.Error("commit placement", "workload", name, "err", err)
	s.queue.AddAfter(name, time.Second)
}

// apply sends the desired revision to the assigned node and records what
// the agent answered.
//
// The agent call does not hold the worker: it is handed to the node's
// outbox (dispatcher), and apply reports true; the workload stays being
// processed in the queue until the call's answer is recorded.
func (s *Scheduler) apply(ctx context.Context, name string, v view, plan reconcile.Plan) (handedOff bool) {
	attempt, delay, ok := s.cache.BeginAttempt(name)
	if !ok {
		return false
	}

	node := v.in.Node
	if plan.Resend {
		// A start the node never finished (its agent died between two
		// steps, say): said as an event, and the deadline starts over.
		s.cache.RestartReportClock(node, name)
		s.metrics.applyResends.Inc()
		s.log.Warn("applying a revision again: its start did not finish", "workload", name, "node", node, "message", plan.Message)
		s.events.Add(model.EventApplyResent, &persysv1.Event{Workload: name, NodeId: node, Message: plan.Message})
	}
	s.dispatch.submit(node, func() {
		defer s.queue.Done(name)
		if ctx.Err() != nil {
			return // the term ended while the call waited its turn
		}
		if s.callApply(ctx, name, v, attempt, delay) {
			// A move whose new copy runs continues at once: the old
			// copy goes (after Done, as the queue holds it till then).
			s.queue.Add(name)
		}
	})
	return true
}

// callApply makes the agent call of apply and records what the agent
// answered; it reports whether a move's next step should follow at once.
func (s *Scheduler) callApply(ctx context.Context, name string, v view, attempt int, delay time.Duration) bool {
	node := v.in.Node
	var resp *persysv1.ApplyWorkloadResponse
	var start time.Time // once the node's call slot is held
	err := s.agents().call(ctx, node, s.cfg.ApplyTimeout, func(cctx context.Context, cli persysv1grpc.AgentServiceClient) error {
		start = time.Now()
		// Only the agent that runs the workload receives the values of the
		// secrets it references; a missing one fails this attempt, and the
		// retry engine tries again (the secret may be created meanwhile).
		secrets, serr := s.secrets.ValuesFor(cctx, principal.OfWorkload(v.w), v.w.GetSpec())
		if serr != nil {
			reason := persysv1.FailureReason_FAILURE_REASON_SECRET_NOT_FOUND
			if errors.Is(serr, secretsvc.ErrDenied) {
				reason = persysv1.FailureReason_FAILURE_REASON_POLICY_DENIED
			}
			resp = &persysv1.ApplyWorkloadResponse{Status: &persysv1.WorkloadStatus{
				Name: name, Uid: v.w.GetUid(), Revision: v.w.GetRevision(),
				State:   persysv1.ActualState_ACTUAL_STATE_FAILED,
				Reason:  reason,
				Message: serr.Error()}}
			return nil
		}
		var err error
		resp, err = cli.ApplyWorkload(cctx, &persysv1.ApplyWorkloadRequest{
			Name: name, Uid: v.w.GetUid(), Revision: v.w.GetRevision(), Spec: v.w.GetSpec(),
			Secrets: secrets, DynamicHostPorts: v.assign.GetDynamicHostPorts()})
		return err
	})
	elapsed := time.Since(start)
	if err != nil {
		if ctx.Err() != nil {
			return false
		}
		s.metrics.applies.WithLabelValues("error").Inc()
		s.log.Warn("apply failed", "workload", name, "node", node, "revision", v.w.GetRevision(), "attempt", attempt, "err", err)
		// Not FAILED: the call is retried with backoff, and the agent may
		// well have applied it. The reason says why it is not running yet.
		st := &persysv1.WorkloadStatus{Name: name, Uid: v.w.GetUid(), NodeId: node,
			Revision: v.w.GetRevision(), State: persysv1.ActualState_ACTUAL_STATE_SCHEDULED,
			Reason:  persysv1.FailureReason_FAILURE_REASON_AGENT_UNREACHABLE,
			Message: "agent call failed: " + err.Error()}
		s.recordAttempt(ctx, name, v, attempt, delay, st)
		s.setStatus(ctx, name, v, st)
		s.queue.AddAfter(name, delay)
		return false
	}
	failpoint.Inject(failpoint.SchedulerAfterAgentAnswer)
	s.metrics.applyDuration.Observe(elapsed.Seconds())
	st := resp.GetStatus()
	if st == nil {
		st = &persysv1.WorkloadStatus{State: persysv1.ActualState_ACTUAL_STATE_UNKNOWN}
	}
	st.Name, st.NodeId = name, node
	if st.GetUid() == "" {
		st.Uid = v.w.GetUid()
	}
	if st.GetRevision() == 0 {
		st.Revision = v.w.GetRevision()
	}
	result := "applied"
	if resp.GetSkipped() {
		result = "skipped"
	}
	if st.GetState() == persysv1.ActualState_ACTUAL_STATE_FAILED {
		result = "failed"
	}
	s.metrics.applies.WithLabelValues(result).Inc()

	s.cache.SetReport(node, name, st)
	reached := st.GetState() == persysv1.ActualState_ACTUAL_STATE_RUNNING
	if v.w.GetSpec().GetDesiredState() == persysv1.DesiredState_DESIRED_STATE_STOPPED {
		reached = st.GetState() == persysv1.ActualState_ACTUAL_STATE_STOPPED
	}
	s.log.Info("apply", "workload", name, "node", node, "revision", v.w.GetRevision(), "result", result,
		"state", contract.Name(st.GetState()), "reason", contract.Name(st.GetReason()), "duration_ms", elapsed.Milliseconds())
	if reached {
		s.reachedState(name)
	} else if st.GetState() != persysv1.ActualState_ACTUAL_STATE_CREATING {
		st = proto.Clone(st).(*persysv1.WorkloadStatus)
		s.recordAttempt(ctx, name, v, attempt, delay, st)
	}
	s.setStatus(ctx, name, v, st)
	if !reached {
		if st.GetState() == persysv1.ActualState_ACTUAL_STATE_CREATING {
			s.queue.AddAfter(name, time.Second)
		} else {
			s.queue.AddAfter(name, delay)
		}
		return false
	}
	// A move whose new copy runs continues at once: the old copy goes.
	return v.in.PreviousNode != ""
}

// deleteOnNode removes the workload from its node, then its keys.
func (s *Scheduler) deleteOnNode(ctx context.Context, name string, v view) bool {
	node := v.in.Node
	err := s.agents().call(ctx, node, s.cfg.ApplyTimeout, func(cctx context.Context, cli persysv1grpc.AgentServiceClient) error {
		_, err := cli.DeleteWorkload(cctx, &persysv1.DeleteWorkloadRequest{Name: name})
		return err
	})
	if err != nil {
		if ctx.Err() == nil {
			s.log.Warn("delete on node failed", "workload", name, "node", node, "err", err)
			s.queue.AddAfter(name, s.cfg.RetryBase)
		}
		return false
	}
	failpoint.Inject(failpoint.SchedulerAfterNodeDelete)
	s.cache.SetReport(node, name, nil)
	s.log.Info("removed from node", "workload", name, "node", node)
	s.removeKeys(ctx, name, v)
	return false
}

// removeKeys deletes the workload's keys, guarded by the revision read, and
// wakes workloads waiting for capacity.
func (s *Scheduler) removeKeys(ctx context.Context, name string, v view) {
	if err := s.store.DeleteWorkloadKeys(ctx, name, v.rev); err != nil {
		if errors.Is(err, store.ErrConflict) || errors.Is(err, store.ErrNotFound) {
			s.queue.AddAfter(name, 100*time.Millisecond)
			return
		}
		s.log.Error("delete workload keys", "workload", name, "err", err)
		s.queue.AddAfter(name, time.Second)
		return
	}
	s.cache.KeysDeleted(name, v.rev)
	s.log.Info("deleted", "workload", name)
	s.events.Add(model.EventDeleted, &persysv1.Event{Workload: name, NodeId: v.in.Node, Message: "workload removed"})
	s.queuePending()
}

// queuePending queues every workload waiting for a feasible node, in one
// pass shortly after for all the calls that come meanwhile (coalesce.go).
func (s *Scheduler) queuePending() {
	s.pendingPass.kick()
}

// pendingPassDelay is how long a pass of queuePending waits for more
// triggers to share it.
const pendingPassDelay = 50 * time.Millisecond

// pendingPassSpacing keeps queuePending's passes to at most a fifth of
// the time while triggers keep coming (coalesce.go).
const pendingPassSpacing = 4

func (s *Scheduler) queuePendingNow() {
	for _, n := range s.cache.Pending() {
		s.queue.Add(n)
	}
}

// setStatus writes the status when it differs from the stored one (so an
// idle cluster writes nothing), emits an event on a state change and wakes
// watchers. v is what the decision read: the write is compared on the
// workload revision read when st is of that workload (its uid).
func (s *Scheduler) setStatus(ctx context.Context, name string, v view, st *persysv1.WorkloadStatus) {
	// Of prev, only the state and the reason are read unless both equal
	// st's (StatusBefore).
	prev, ok := s.cache.StatusBefore(name, st)
	if !ok || sameStatus(prev, st) {
		return
	}

	st.UpdatedAt = timestamppb.New(s.cfg.Now())
	var wrev int64
	if v.w != nil && v.w.GetName() == name && v.w.GetUid() == st.GetUid() {
		wrev = v.rev
	}
	rev, err := s.putStatus(ctx, st, wrev)
	if err != nil {
		if !errors.Is(err, store.ErrNotFound) && ctx.Err() == nil {
			s.log.Error("write status", "workload", name, "err", err)
		}
		return
	}
	if s.cache.StatusWritten(name, st, rev) {
		// What it held on its node may be where a pending workload fits.
		s.queuePending()
	}

	if prev.GetState() != st.GetState() || prev.GetReason() != st.GetReason() {
		if st.GetState() == persysv1.ActualState_ACTUAL_STATE_FAILED {
			s.metrics.failures.WithLabelValues(contract.Name(st.GetReason())).Inc()
		}
		s.events.Add(eventType(st.GetState()), &persysv1.Event{Workload: name, NodeId: st.GetNodeId(),
			Reason: st.GetReason(), Message: st.GetMessage(), Revision: st.GetRevision()})
	} else if st.GetState() == persysv1.ActualState_ACTUAL_STATE_RUNNING &&
		(prev.GetHealth() != st.GetHealth() || prev.GetReady() != st.GetReady()) {
		s.events.Add(model.EventHealthChanged, &persysv1.Event{Workload: name, NodeId: st.GetNodeId(),
			Message: healthMessage(st), Revision: st.GetRevision()})
	}
}

func sameStatus(a, b *persysv1.WorkloadStatus) bool {
	if a == nil || b == nil {
		return a == b
	}
	return a.GetState() == b.GetState() && a.GetReason() == b.GetReason() && a.GetMessage() == b.GetMessage() &&
		a.GetAttempts() == b.GetAttempts() &&
		a.GetNodeId() == b.GetNodeId() && a.GetRevision() == b.GetRevision() && a.GetUid() == b.GetUid() &&
		a.GetRuntimeId() == b.GetRuntimeId() && a.GetExitCode() == b.GetExitCode() && a.GetRestartCount() == b.GetRestartCount() &&
		a.GetReady() == b.GetReady() && a.GetHealth() == b.GetHealth() && a.GetHealthOutput() == b.GetHealthOutput() &&
		slices.Equal(a.GetAddresses(), b.GetAddresses())
}

func eventType(st persysv1.ActualState) model.EventType {
	switch st {
	case persysv1.ActualState_ACTUAL_STATE_PENDING:
		return model.EventPending
	case persysv1.ActualState_ACTUAL_STATE_SCHEDULED:
		return model.EventScheduled
	case persysv1.ActualState_ACTUAL_STATE_CREATING:
		return model.EventCreating
	case persysv1.ActualState_ACTUAL_STATE_RUNNING:
		return model.EventRunning
	case persysv1.ActualState_ACTUAL_STATE_STOPPED:
		return model.EventStopped
	case persysv1.ActualState_ACTUAL_STATE_FAILED:
		return model.EventFailed
	case persysv1.ActualState_ACTUAL_STATE_UNKNOWN:
		return model.EventUnknown
	case persysv1.ActualState_ACTUAL_STATE_DELETING:
		return model.EventDeleting
	}
	return model.EventStatusChanged
}

func decisionProto(d placement.Decision) *persysv1.PlacementDecision {
	out := &persysv1.PlacementDecision{NodeId: d.NodeID, Score: d.Score, FeasibleNodes: int32(d.Feasible),
		TotalNodes: int32(d.Total), Strategy: d.Strategy.String()}
	for _, r := range d.Rejections {
		nr := &persysv1.NodeRejection{NodeId: r.NodeID, Reason: persysv1.RejectReason(r.Reason), Detail: r.Detail()}
		for _, a := range r.Also(nil) {
			nr.Also = append(nr.Also, persysv1.RejectReason(a))
		}
		out.Rejections = append(out.Rejections, nr)
	}
	return out
}

func summarizeRejections(d placement.Decision) string {
	if d.Total == 0 {
		return "no nodes registered"
	}
	counts := map[string]int{}
	for _, r := range d.Rejections {
		counts[r.Reason.String()]++
	}
	keys := make([]string, 0, len(counts))
	for k := range counts {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	parts := make([]string, 0, len(keys))
	for _, k := range keys {
		parts = append(parts, fmt.Sprintf("%d %s", counts[k], k))
	}
	return fmt.Sprintf("0 of %d nodes feasible: %s", d.Total, strings.Join(parts, ", "))
}

// healthMessage describes a running workload's health for its
// HealthChanged event.
func healthMessage(st *persysv1.WorkloadStatus) string {
	msg := contract.Name(st.GetHealth())
	if st.GetReady() {
		msg += ", ready"
	} else {
		msg += ", not ready"
	}
	if out := st.GetHealthOutput(); out != "" {
		msg += " (" + st.GetHealthCheck() + ": " + out + ")"
	}
	return msg
}
