package qemu

import (
	"context"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	persysv1 "github.com/persys-dev/compute/api/persys/v1"
)

// TestStopInstance: a VM stopped for a failed liveness check is reported
// FAILED with HEALTH_CHECK_FAILED under the stopped instance's id, and an
// apply of the same revision boots it again as a new QEMU process, as the
// scheduler's retry does.
func TestStopInstance(t *testing.T) {
	pool := guestPool(t)
	r := newRuntime(t, t.TempDir(), map[string]string{"g": pool}, nil)
	ctx := context.Background()
	vm := &persysv1.VMSpec{
		MemoryBytes:        128 << 20,
		KernelBoot:         &persysv1.VMKernelBoot{Pool: "g", Kernel: "vmlinuz", Initrd: "initrd.img", Cmdline: "console=ttyS0 quiet"},
		StopTimeoutSeconds: 1,
	}
	inst := vmInstance("live", "u-live", 1, persysv1.DesiredState_DESIRED_STATE_RUNNING, vm)
	t.Cleanup(func() { _, _ = r.Delete(context.Background(), "live", "") })
	st, _, err := r.Apply(ctx, inst)
	if err != nil || st.GetState() != persysv1.ActualState_ACTUAL_STATE_RUNNING {
		t.Fatalf("Apply = %v %v", st, err)
	}
	first := st.GetRuntimeId()

	if err := r.StopInstance(ctx, "999999999"); err != nil {
		t.Fatalf("StopInstance of no VM: %v", err)
	}
	if err := r.StopInstance(ctx, first); err != nil {
		t.Fatalf("StopInstance: %v", err)
	}
	pid, _ := strconv.Atoi(first)
	if alive(pid, filepath.Join(r.stateDir("live"), pidFile)) {
		t.Fatalf("QEMU pid %d survives StopInstance", pid)
	}
	st, err = r.Status(ctx, "live")
	if err != nil {
		t.Fatal(err)
	}
	if st.GetState() != persysv1.ActualState_ACTUAL_STATE_FAILED || st.GetReason() != persysv1.FailureReason_FAILURE_REASON_HEALTH_CHECK_FAILED ||
		st.GetRuntimeId() != first {
		t.Fatalf("after StopInstance: %s/%s id %q (%s), want FAILED/HEALTH_CHECK_FAILED under id %s",
			st.GetState(), st.GetReason(), st.GetRuntimeId(), st.GetMessage(), first)
	}
	if err := r.StopInstance(ctx, first); err != nil {
		t.Fatalf("StopInstance again (gone already): %v", err)
	}

	st, skipped, err := r.Apply(ctx, inst)
	if err != nil || skipped || st.GetState() != persysv1.ActualState_ACTUAL_STATE_RUNNING {
		t.Fatalf("Apply after the stop = %v skipped=%v %v, want a new boot", st, skipped, err)
	}
	if st.GetRuntimeId() == first || st.GetRuntimeId() == "" {
		t.Fatalf("restarted VM runs as %q, want a new pid (was %s)", st.GetRuntimeId(), first)
	}
	eventually(t, 30*time.Second, "the restarted VM reported RUNNING", func() (bool, string) {
		st, err := r.Status(ctx, "live")
		return err == nil && st.GetState() == persysv1.ActualState_ACTUAL_STATE_RUNNING && st.GetReason() == 0, st.String()
	})
}
