package qemu

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"time"

	persysv1 "github.com/persys-dev/compute/api/persys/v1"
	"github.com/persys-dev/compute/internal/runtime"
	"github.com/persys-dev/compute/internal/runtime/logfollow"
)

// serialPoll is how often a followed serial console is checked for new
// output (QEMU appends to a plain file).
const serialPoll = 200 * time.Millisecond

// FollowLogs streams the VM's serial console: its tail, then what QEMU
// appends, across the runtime's cuts of the file, until ctx ends or the VM
// is deleted. The console keeps no times, so f.Since is refused. See
// runtime.Follower.
func (r *Runtime) FollowLogs(ctx context.Context, name string, f runtime.LogFollow, emit func([]byte) error) error {
	switch {
	case !f.Since.IsZero():
		return fmt.Errorf("the serial console of VM %s: %w", name, runtime.ErrLogSince)
	case f.Service != "":
		return fmt.Errorf("workload %s is a VM, not a compose stack: %w", name, runtime.ErrLogService)
	}
	if _, err := r.loadRecord(name); err != nil {
		if errors.Is(err, errNoRecord) {
			return runtime.Fail(persysv1.FailureReason_FAILURE_REASON_RUNTIME_ERROR, nil, "no VM %s on node %s", name, r.cfg.NodeID)
		}
		return fmt.Errorf("qemu runtime: logs of %s: %w", name, err)
	}
	r.capSerial(name)
	f.Start()
	tail := f.TailBytes
	if tail <= 0 || tail > r.cfg.SerialLogCap {
		tail = r.cfg.SerialLogCap
	}
	return logfollow.File(ctx, filepath.Join(r.stateDir(name), serialLog), tail, serialPoll, emit)
}

var _ runtime.Follower = (*Runtime)(nil)
