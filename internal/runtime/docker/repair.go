package docker

import (
	"context"
	"fmt"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/client"

	persysv1 "github.com/persys-dev/compute/api/persys/v1"
	"github.com/persys-dev/compute/internal/runtime"
)

// Repair actions.
const (
	RepairStarted = "started created container"
	RepairRemoved = "removed created container that would not start"
)

// Repair finishes what a crash between create and start left: a
// container of this node, labelled to run, that was created and never
// started. It is started as Apply would have; one that will not start is
// removed, so the agent reports the workload missing and the scheduler
// applies it again. Each candidate is looked at again under the workload's
// lock, where no Apply is in flight (Apply holds it from create to start).
func (r *Runtime) Repair(ctx context.Context) ([]runtime.Repair, error) {
	all, err := r.listContainers(ctx, "", "")
	if err != nil {
		return nil, runtime.Fail(persysv1.FailureReason_FAILURE_REASON_RUNTIME_ERROR, err, "list containers")
	}
	var done []runtime.Repair
	for _, c := range all {
		name := c.Labels[runtime.LabelWorkload]
		if name == "" || c.State != container.StateCreated || c.Labels[LabelDesired] != desiredRun {
			continue
		}
		rep, err := r.repairCreated(ctx, name, c.ID)
		if err != nil {
			return done, err
		}
		if rep != nil {
			done = append(done, *rep)
		}
	}
	return done, nil
}

func (r *Runtime) repairCreated(ctx context.Context, name, id string) (*runtime.Repair, error) {
	r.locks.Lock(name)
	defer r.locks.Unlock(name)
	res, err := r.cli.ContainerInspect(ctx, id, client.ContainerInspectOptions{})
	if cerrdefs.IsNotFound(err) {
		return nil, nil
	}
	if err != nil {
		return nil, runtime.Fail(persysv1.FailureReason_FAILURE_REASON_RUNTIME_ERROR, err, "inspect container %s", shortID(id))
	}
	if res.Container.State == nil || res.Container.State.Status != container.StateCreated {
		return nil, nil // an Apply finished it meanwhile
	}
	label := containerLabel(container.Summary{ID: id, Names: []string{res.Container.Name}})
	_, startErr := r.cli.ContainerStart(ctx, id, client.ContainerStartOptions{})
	if startErr == nil {
		r.log.Info("repair: started a container created but never started (the agent stopped between create and start)",
			"workload", name, "container", label)
		return &runtime.Repair{Workload: name, Action: RepairStarted, Detail: label}, nil
	}
	if err := r.remove(ctx, id); err != nil {
		return nil, runtime.Fail(persysv1.FailureReason_FAILURE_REASON_RUNTIME_ERROR, err, "remove created container %s", label)
	}
	r.log.Warn("repair: removed a created container that would not start; the scheduler applies the workload again",
		"workload", name, "container", label, "start_error", startErr)
	return &runtime.Repair{Workload: name, Action: RepairRemoved, Detail: fmt.Sprintf("%s: %v", label, startErr)}, nil
}

var _ runtime.Repairer = (*Runtime)(nil)
