package qemu

import (
	"context"
	"os"
	"strconv"
	"time"

	persysv1 "github.com/persys-dev/compute/api/persys/v1"
	"github.com/persys-dev/compute/internal/runtime"
)

// StopInstance stops the VM whose QEMU runs as pid runtimeID, because its
// liveness (or startup) check failed: ACPI power-down, then after the
// spec's stop timeout a hard stop, as a stop does. The record keeps the
// stopped instance's id, so the VM is reported FAILED with
// HEALTH_CHECK_FAILED under that same id (the agent keeps the check's
// verdict for it) until an Apply of its revision boots it again. A VM
// that is gone already is fine.
func (r *Runtime) StopInstance(ctx context.Context, runtimeID string) error {
	rec := r.recordOfPid(runtimeID)
	if rec == nil {
		return nil
	}
	r.locks.Lock(rec.Name)
	defer r.locks.Unlock(rec.Name)
	rec, err := r.loadRecord(rec.Name)
	if err != nil {
		return nil // deleted meanwhile
	}
	pid, up := r.pid(rec)
	if !up || strconv.Itoa(pid) != runtimeID {
		return nil // stopped or replaced meanwhile
	}
	rec.LivenessStopped = runtimeID
	if err := r.saveRecord(rec); err != nil {
		return runtime.Fail(persysv1.FailureReason_FAILURE_REASON_RUNTIME_ERROR, err, "save the state of VM %s", rec.Name)
	}
	how := r.stop(ctx, rec, pid, time.Duration(rec.StopSeconds)*time.Second)
	r.log.Warn("VM stopped: its liveness check failed", "workload", rec.Name, "pid", pid, "how", how)
	if how == "failed" {
		return runtime.Fail(persysv1.FailureReason_FAILURE_REASON_RUNTIME_ERROR, nil, "QEMU pid %d of VM %s does not die", pid, rec.Name)
	}
	return nil
}

// recordOfPid finds the record of the running VM whose QEMU is pid id.
func (r *Runtime) recordOfPid(id string) *record {
	if _, err := strconv.Atoi(id); err != nil {
		return nil
	}
	entries, err := os.ReadDir(r.cfg.StateDir)
	if err != nil {
		return nil
	}
	for _, e := range entries {
		if !e.IsDir() {
			continue
		}
		rec, err := r.loadRecord(e.Name())
		if err != nil {
			continue
		}
		if pid, up := r.pid(rec); up && strconv.Itoa(pid) == id {
			return rec
		}
	}
	return nil
}

// livenessStatus fills st for a VM that StopInstance stopped: FAILED with
// HEALTH_CHECK_FAILED under the stopped instance's id. It reports whether
// rec is one.
func livenessStatus(rec *record, st *persysv1.WorkloadStatus) bool {
	if rec.LivenessStopped == "" {
		return false
	}
	st.State = persysv1.ActualState_ACTUAL_STATE_FAILED
	st.Reason = persysv1.FailureReason_FAILURE_REASON_HEALTH_CHECK_FAILED
	st.Message = "stopped after its liveness check failed"
	st.RuntimeId = rec.LivenessStopped
	return true
}

// Interface guard: the agent's liveness handling stops VMs through it.
var _ interface {
	StopInstance(ctx context.Context, runtimeID string) error
} = (*Runtime)(nil)
