package qemu

import (
	"context"
	"fmt"
	"os"
	"time"

	"github.com/persys-dev/compute/internal/runtime"
)

// WatchInterval is how often Watch checks the VMs' processes.
var WatchInterval = 2 * time.Second

// Watch sends a workload's name when its QEMU process starts or goes away
// (the guest powered off, QEMU crashed or was killed behind the runtime's
// back) and when its VM appears or is removed. QEMU has no event stream that
// outlives an agent, so the pidfiles are polled every WatchInterval. The
// channel is closed when ctx ends.
func (r *Runtime) Watch(ctx context.Context) (<-chan string, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("qemu watch: %w", err)
	}
	out := make(chan string, 64)
	// The baseline is taken before Watch returns: taken in the goroutine,
	// a VM that stopped right after the call (before the goroutine ran)
	// was in the baseline already stopped, and its stop never reported.
	prev := r.upSnapshot()
	go func() {
		defer close(out)
		t := time.NewTicker(WatchInterval)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
			cur := r.upSnapshot()
			var changed []string
			for name, up := range cur {
				if was, ok := prev[name]; !ok || was != up {
					changed = append(changed, name)
				}
			}
			for name := range prev {
				if _, ok := cur[name]; !ok {
					changed = append(changed, name)
				}
			}
			prev = cur
			for _, name := range changed {
				select {
				case out <- name:
				case <-ctx.Done():
					return
				}
			}
		}
	}()
	return out, nil
}

// upSnapshot maps every VM of this node to whether its QEMU is alive.
func (r *Runtime) upSnapshot() map[string]bool {
	snap := map[string]bool{}
	entries, err := os.ReadDir(r.cfg.StateDir)
	if err != nil {
		return snap
	}
	for _, e := range entries {
		if !e.IsDir() {
			continue
		}
		rec, err := r.loadRecord(e.Name())
		if err != nil {
			continue
		}
		_, up := r.pid(rec)
		if !up && rec.Desired == desiredRunning && !r.isBusy(rec.Name) {
			r.noteDown(rec)
		}
		snap[rec.Name] = up
	}
	return snap
}

var _ runtime.Watcher = (*Runtime)(nil)
