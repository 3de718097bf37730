package agent

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/persys-dev/compute/api/persys/contract"
	"github.com/persys-dev/compute/api/persys/contract/rpcreason"
	persysv1 "github.com/persys-dev/compute/api/persys/v1"
	"github.com/persys-dev/compute/api/persys/v1/persysv1grpc"
	"github.com/persys-dev/compute/internal/hostaccess/specaccess"
	"github.com/persys-dev/compute/internal/runtime"
)

const healthTimeout = 5 * time.Second

// opTimeout bounds one apply or delete. Runtime operations run detached
// from the caller's context: a scheduler that gives up mid-apply must not
// leave a half-made workload behind; its retry waits for the workload's
// lock and then sees the finished result.
const opTimeout = 10 * time.Minute

func detach(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.WithoutCancel(ctx), opTimeout)
}

// service adapts the Agent to AgentService.
type service struct {
	persysv1grpc.UnimplementedAgentServiceServer
	a *Agent
}

var _ persysv1grpc.AgentServiceServer = (*service)(nil)

func invalidSpec(err error) error {
	return rpcreason.Error(codes.InvalidArgument, persysv1.FailureReason_FAILURE_REASON_INVALID_SPEC, err.Error())
}

// runtimeError translates a runtime error of a call without a status in
// its response (delete, status, list) at the gRPC boundary.
func runtimeError(ctx context.Context, op string, err error) error {
	if ctx.Err() != nil {
		return status.FromContextError(ctx.Err()).Err()
	}
	return rpcreason.Error(codes.Unavailable, runtime.ReasonOf(err), fmt.Sprintf("%s: %v", op, err))
}

func runtimeName(t persysv1.WorkloadType) string {
	return strings.ToLower(strings.TrimPrefix(t.String(), "WORKLOAD_TYPE_"))
}

// reasonLabel is the reason label of an apply: the canonical spelling
// (IMAGE_NOT_FOUND), or "none" for an apply without a failure.
func reasonLabel(r persysv1.FailureReason) string {
	if r == persysv1.FailureReason_FAILURE_REASON_UNSPECIFIED {
		return "none"
	}
	return contract.Name(r)
}

const maxNameLen = 253

func validateName(name string) error {
	switch {
	case name == "":
		return errors.New("name is required")
	case len(name) > maxNameLen:
		return fmt.Errorf("name is longer than %d characters", maxNameLen)
	case strings.ContainsAny(name, "/ \t\n\x00"):
		return fmt.Errorf("name %q contains a slash, a space or a control character", name)
	}
	return nil
}

func validateApply(req *persysv1.ApplyWorkloadRequest) error {
	if err := validateName(req.GetName()); err != nil {
		return err
	}
	if req.GetUid() == "" {
		return errors.New("uid is required")
	}
	spec := req.GetSpec()
	if spec == nil {
		return errors.New("spec is required")
	}
	if spec.GetType() == persysv1.WorkloadType_WORKLOAD_TYPE_UNSPECIFIED {
		return errors.New("spec.type is required")
	}
	if _, ok := persysv1.WorkloadType_name[int32(spec.GetType())]; !ok {
		return fmt.Errorf("spec.type %d is not a known workload type", spec.GetType())
	}
	if _, ok := persysv1.DesiredState_name[int32(spec.GetDesiredState())]; !ok {
		return fmt.Errorf("spec.desired_state %d is not a known state", spec.GetDesiredState())
	}
	r := spec.GetResources()
	switch {
	case r.GetCpuMillis() < 0:
		return fmt.Errorf("spec.resources.cpu_millis %d is negative", r.GetCpuMillis())
	case r.GetMemoryBytes() < 0:
		return fmt.Errorf("spec.resources.memory_bytes %d is negative", r.GetMemoryBytes())
	case r.GetDiskBytes() < 0:
		return fmt.Errorf("spec.resources.disk_bytes %d is negative", r.GetDiskBytes())
	}
	return nil
}

// ApplyWorkload applies one revision through the runtime of its type. A
// runtime failure or a refusal is an OK response whose status is FAILED
// with the reason; only transport problems and invalid requests are gRPC
// errors.
func (s *service) ApplyWorkload(ctx context.Context, req *persysv1.ApplyWorkloadRequest) (*persysv1.ApplyWorkloadResponse, error) {
	a := s.a
	if err := validateApply(req); err != nil {
		return nil, invalidSpec(err)
	}
	// The scheduler chose the dynamic ports: from here on they are
	// published, reserved and reported like static ones.
	spec, err := specaccess.BindDynamic(req.GetSpec(), req.GetDynamicHostPorts())
	if err != nil {
		return nil, invalidSpec(err)
	}
	req.Spec = spec
	rt, ok := a.runtimes[req.GetSpec().GetType()]
	if !ok {
		return nil, invalidSpec(fmt.Errorf("spec.type %s: this node has no runtime for it", contract.Name(req.GetSpec().GetType())))
	}
	unlock, err := a.locks.lock(ctx, req.GetName())
	if err != nil {
		return nil, status.FromContextError(err).Err()
	}
	defer unlock()

	start := time.Now()
	opCtx, cancel := detach(ctx)
	defer cancel()
	resp, reason, err := a.apply(opCtx, rt, req)
	elapsed := time.Since(start)
	rtName := runtimeName(rt.Type())
	result := "applied"
	switch {
	case err != nil:
		result = "error"
	case resp.GetStatus().GetState() == persysv1.ActualState_ACTUAL_STATE_FAILED:
		result = "failed"
	case resp.GetSkipped():
		result = "skipped"
	}
	a.metrics.applyDuration.WithLabelValues(rtName, result).Observe(elapsed.Seconds())
	a.metrics.applies.WithLabelValues(result, reasonLabel(reason)).Inc()
	fields := []any{"workload", req.GetName(), "uid", req.GetUid(), "revision", req.GetRevision(),
		"runtime", rtName, "result", result, "duration", elapsed.String()}
	switch {
	case err != nil:
		a.log.Warn("apply aborted", append(fields, "err", err)...)
		return nil, err
	case result == "failed":
		a.log.Warn("apply failed", append(fields, "reason", contract.Name(reason), "message", resp.GetStatus().GetMessage())...)
	default:
		a.log.Info("apply", append(fields, "state", contract.Name(resp.GetStatus().GetState()))...)
	}
	return resp, nil
}

// apply runs under the workload's lock. It returns the response and its
// failure reason, or a gRPC error when the caller went away.
func (a *Agent) apply(ctx context.Context, rt runtime.Runtime, req *persysv1.ApplyWorkloadRequest) (*persysv1.ApplyWorkloadResponse, persysv1.FailureReason, error) {
	name := req.GetName()
	if err := a.removeZombie(ctx, name); err != nil {
		if ctx.Err() != nil {
			return nil, persysv1.FailureReason_FAILURE_REASON_UNSPECIFIED, status.FromContextError(ctx.Err()).Err()
		}
		reason := runtime.ReasonOf(err)
		return &persysv1.ApplyWorkloadResponse{Status: a.failedStatus(req, reason, runtime.MessageOf(err))}, reason, nil
	}
	// The node's own policy is the last lock: placement honours it, but
	// the agent does not trust that it did.
	if d, ok := a.cfg.Policy.Admits(specaccess.Of(req.GetSpec())); !ok {
		reason := persysv1.FailureReason_FAILURE_REASON_POLICY_DENIED
		return &persysv1.ApplyWorkloadResponse{Status: a.failedStatus(req, reason, d.Error())}, reason, nil
	}
	want := allocation{UID: req.GetUid(), Revision: req.GetRevision()}
	if req.GetSpec().GetDesiredState() != persysv1.DesiredState_DESIRED_STATE_STOPPED {
		want.setResources(req.GetSpec().GetResources())
		want.setPorts(req.GetSpec())
		want.Health = healthSpec(req.GetSpec())
	}

	// A re-apply of the revision that runs already is admitted as is, even
	// when the agent lost its record of it.
	recheck := true
	if _, known := a.ledger.get(name); !known {
		st, err := rt.Status(ctx, name)
		if err == nil && st.GetState() == persysv1.ActualState_ACTUAL_STATE_RUNNING &&
			st.GetUid() == want.UID && st.GetRevision() == want.Revision {
			recheck = false
		}
	}
	prev, hadPrev, refusal := a.ledger.reserve(name, want, a.capacity, a.cfg.UtilizationThreshold, recheck)
	if refusal != nil {
		reason := persysv1.FailureReason_FAILURE_REASON_INSUFFICIENT_RESOURCES
		return &persysv1.ApplyWorkloadResponse{Status: a.failedStatus(req, reason, refusal.Error())}, reason, nil
	}

	// An instance that failed its liveness check is replaced now (the
	// runtime recreates the stopped container of the same revision).
	if err := a.health.replaceFailed(ctx, rt, name); err != nil {
		a.ledger.restore(name, prev, hadPrev)
		if ctx.Err() != nil {
			return nil, persysv1.FailureReason_FAILURE_REASON_UNSPECIFIED, status.FromContextError(ctx.Err()).Err()
		}
		reason := runtime.ReasonOf(err)
		return &persysv1.ApplyWorkloadResponse{Status: a.failedStatus(req, reason, runtime.MessageOf(err))}, reason, nil
	}
	a.health.remember(name, want.UID, want.Revision, want.Health)
	st, skipped, err := rt.Apply(ctx, runtime.Instance{
		Name: name, UID: req.GetUid(), Revision: req.GetRevision(), Spec: req.GetSpec(),
		Secrets: secretsByName(req.GetSecrets()),
	})
	if err != nil {
		a.ledger.restore(name, prev, hadPrev)
		if ctx.Err() != nil {
			return nil, persysv1.FailureReason_FAILURE_REASON_UNSPECIFIED, status.FromContextError(ctx.Err()).Err()
		}
		reason := runtime.ReasonOf(err)
		out := a.failedStatus(req, reason, runtime.MessageOf(err))
		if st != nil {
			out.RuntimeId = st.GetRuntimeId()
			out.ExitCode = st.GetExitCode()
			out.RestartCount = st.GetRestartCount()
		}
		return &persysv1.ApplyWorkloadResponse{Status: out}, reason, nil
	}
	a.ledger.touch(name)
	if st == nil {
		st = &persysv1.WorkloadStatus{Name: name, Uid: req.GetUid(), Revision: req.GetRevision(),
			State: persysv1.ActualState_ACTUAL_STATE_RUNNING}
	}
	st = a.health.overlay(a.stamp(st))
	if st.GetUpdatedAt() == nil {
		st.UpdatedAt = timestamppb.Now()
	}
	return &persysv1.ApplyWorkloadResponse{Status: st, Skipped: skipped}, st.GetReason(), nil
}

func (a *Agent) failedStatus(req *persysv1.ApplyWorkloadRequest, reason persysv1.FailureReason, msg string) *persysv1.WorkloadStatus {
	return &persysv1.WorkloadStatus{
		Name:      req.GetName(),
		Uid:       req.GetUid(),
		Revision:  req.GetRevision(),
		State:     persysv1.ActualState_ACTUAL_STATE_FAILED,
		Reason:    reason,
		Message:   msg,
		NodeId:    a.cfg.NodeID,
		UpdatedAt: timestamppb.Now(),
	}
}

// DeleteWorkload removes the workload from every runtime. A delete that
// names a uid is the scheduler's orphan cleanup (its ordinary deletes name
// only the workload) and is counted as kind "orphan".
func (s *service) DeleteWorkload(ctx context.Context, req *persysv1.DeleteWorkloadRequest) (*persysv1.DeleteWorkloadResponse, error) {
	a := s.a
	if err := validateName(req.GetName()); err != nil {
		return nil, invalidSpec(err)
	}
	unlock, err := a.locks.lock(ctx, req.GetName())
	if err != nil {
		return nil, status.FromContextError(err).Err()
	}
	defer unlock()

	kind := "workload"
	if req.GetUid() != "" {
		kind = "orphan"
	}
	start := time.Now()
	opCtx, cancel := detach(ctx)
	defer cancel()
	existed := false
	var errs []error
	for _, rt := range a.order {
		ok, err := rt.Delete(opCtx, req.GetName(), req.GetUid())
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", runtimeName(rt.Type()), err))
			continue
		}
		existed = existed || ok
	}
	fields := []any{"workload", req.GetName(), "uid", req.GetUid(), "kind", kind, "duration", time.Since(start).String()}
	if err := errors.Join(errs...); err != nil {
		a.metrics.deletes.WithLabelValues(kind, "failed").Inc()
		a.log.Warn("delete", append(fields, "result", "failed", "err", err)...)
		return nil, runtimeError(opCtx, "delete "+req.GetName(), err)
	}
	a.ledger.remove(req.GetName(), req.GetUid())
	a.health.forget(req.GetName(), req.GetUid())
	if z, ok := a.zombies.get(req.GetName()); ok && (req.GetUid() == "" || z.uid == req.GetUid()) {
		a.zombies.remove(req.GetName())
	}
	result := "absent"
	if existed {
		result = "deleted"
	}
	a.metrics.deletes.WithLabelValues(kind, result).Inc()
	a.log.Info("delete", append(fields, "result", result)...)
	return &persysv1.DeleteWorkloadResponse{Existed: existed}, nil
}

// GetWorkloadStatus reports the workload from whichever runtime runs it,
// or state MISSING.
func (s *service) GetWorkloadStatus(ctx context.Context, req *persysv1.GetWorkloadStatusRequest) (*persysv1.WorkloadStatus, error) {
	a := s.a
	if err := validateName(req.GetName()); err != nil {
		return nil, invalidSpec(err)
	}
	var errs []error
	for _, rt := range a.order {
		st, err := rt.Status(ctx, req.GetName())
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", runtimeName(rt.Type()), err))
			continue
		}
		switch st.GetState() {
		case persysv1.ActualState_ACTUAL_STATE_MISSING, persysv1.ActualState_ACTUAL_STATE_UNSPECIFIED:
			continue
		}
		return a.health.overlay(a.stamp(st)), nil
	}
	if err := errors.Join(errs...); err != nil {
		return nil, runtimeError(ctx, "status "+req.GetName(), err)
	}
	return &persysv1.WorkloadStatus{
		Name:      req.GetName(),
		State:     persysv1.ActualState_ACTUAL_STATE_MISSING,
		NodeId:    a.cfg.NodeID,
		UpdatedAt: timestamppb.Now(),
	}, nil
}

// ListWorkloads reports every workload of every runtime.
func (s *service) ListWorkloads(ctx context.Context, _ *persysv1.ListAgentWorkloadsRequest) (*persysv1.ListAgentWorkloadsResponse, error) {
	ws, err := s.a.listAll(ctx)
	if err != nil {
		return nil, runtimeError(ctx, "list", err)
	}
	return &persysv1.ListAgentWorkloadsResponse{Workloads: ws}, nil
}

// healthChecker is an optional runtime ability; runtimes without it are
// healthy when they can list their workloads.
type healthChecker interface {
	Health(ctx context.Context) error
}

// HealthCheck probes every runtime.
func (s *service) HealthCheck(ctx context.Context, _ *persysv1.HealthCheckRequest) (*persysv1.HealthCheckResponse, error) {
	a := s.a
	resp := &persysv1.HealthCheckResponse{NodeId: a.cfg.NodeID, Healthy: true, Runtimes: map[string]string{}}
	for _, rt := range a.order {
		pctx, cancel := context.WithTimeout(ctx, healthTimeout)
		var err error
		if h, ok := rt.(healthChecker); ok {
			err = h.Health(pctx)
		} else {
			_, err = rt.List(pctx)
		}
		cancel()
		if ctx.Err() != nil {
			return nil, status.FromContextError(ctx.Err()).Err()
		}
		if err != nil {
			resp.Healthy = false
			resp.Runtimes[runtimeName(rt.Type())] = "unhealthy: " + err.Error()
			continue
		}
		resp.Runtimes[runtimeName(rt.Type())] = "ok"
	}
	return resp, nil
}

// secretsByName indexes the secret values an apply carries.
func secretsByName(list []*persysv1.SecretValue) map[string]*persysv1.SecretValue {
	if len(list) == 0 {
		return nil
	}
	out := make(map[string]*persysv1.SecretValue, len(list))
	for _, s := range list {
		out[s.GetName()] = s
	}
	return out
}
