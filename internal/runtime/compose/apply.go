package compose

import (
	"context"
	"log/slog"
	"os"
	"slices"
	"time"

	"github.com/compose-spec/compose-go/v2/types"
	"github.com/docker/compose/v5/pkg/api"
	"github.com/moby/moby/api/types/container"

	"github.com/persys-dev/compute/api/persys/contract"
	persysv1 "github.com/persys-dev/compute/api/persys/v1"
	"github.com/persys-dev/compute/internal/failpoint"
	"github.com/persys-dev/compute/internal/runtime"
)

const (
	desiredRun  = "running"
	desiredStop = "stopped"
)

func invalid(format string, args ...any) *runtime.Failure {
	return runtime.Fail(persysv1.FailureReason_FAILURE_REASON_INVALID_SPEC, nil, format, args...)
}

// Apply makes the instance's revision of the project run (or exist
// stopped). See runtime.Runtime.
func (r *Runtime) Apply(ctx context.Context, inst runtime.Instance) (*persysv1.WorkloadStatus, bool, error) {
	if inst.Name == "" {
		return nil, false, invalid("name: empty")
	}
	spec := inst.Spec.GetCompose()
	if spec == nil {
		return nil, false, invalid("spec.compose: required for a compose workload")
	}
	desired := desiredRun
	if inst.Spec.GetDesiredState() == persysv1.DesiredState_DESIRED_STATE_STOPPED {
		desired = desiredStop
	}
	if r.cfg.Cluster != nil && r.cfg.Cluster.ID() == "" {
		return nil, false, runtime.Fail(persysv1.FailureReason_FAILURE_REASON_RUNTIME_ERROR, nil, "apply %s: the agent does not know its cluster id yet", inst.Name)
	}
	r.locks.Lock(inst.Name)
	defer r.locks.Unlock(inst.Name)
	log := r.log.With("workload", inst.Name, "uid", inst.UID, "revision", inst.Revision)
	projectName := r.project(inst.Name)

	prev, err := r.readState(inst.Name)
	if err != nil {
		log.Warn("unreadable compose state, applying afresh", "error", err)
		prev = nil
	}
	if prev != nil && prev.Complete && prev.UID == inst.UID && prev.Revision == inst.Revision && prev.Desired == desired {
		st, err := r.status(ctx, inst.Name, prev)
		if err == nil && settled(st, desired) {
			return st, true, nil
		}
	}
	if prev == nil || prev.UID != inst.UID {
		if err := r.removeOtherUID(ctx, log, inst, prev); err != nil {
			return nil, false, err
		}
	}

	project, commit, err := r.load(ctx, inst)
	if err != nil {
		return nil, false, err
	}
	if err := r.ensureImages(ctx, log, inst, project); err != nil {
		return nil, false, err
	}

	st := &state{
		Name: inst.Name, UID: inst.UID, Revision: inst.Revision, Desired: desired, Project: projectName,
		RetainVolume: spec.GetVolumeRetain() == persysv1.RetainPolicy_RETAIN_POLICY_RETAIN,
		Replicas:     map[string]int{}, Commit: commit,
	}
	for name, s := range project.Services {
		st.Replicas[name] = replicas(s)
	}
	// Recorded before up, so a delete after a half-done up still knows
	// the project and its retain policy.
	if err := r.writeState(st); err != nil {
		return nil, false, runtime.Fail(persysv1.FailureReason_FAILURE_REASON_STORAGE, err, "record state of %s", inst.Name)
	}

	start := time.Now()
	err = r.up(ctx, project, projectName, desired)
	status, serr := r.status(ctx, inst.Name, st)
	if err != nil {
		// A service that exited is a status, not an apply error.
		if serr == nil && status.GetState() == persysv1.ActualState_ACTUAL_STATE_FAILED {
			st.Complete = true
			_ = r.writeState(st)
			log.Warn("compose project applied with a failed service", "project", projectName, "message", status.GetMessage())
			return status, false, nil
		}
		return nil, false, runtime.Fail(classify(err), err, "compose up %s", projectName)
	}
	if serr != nil {
		return nil, false, runtime.Fail(persysv1.FailureReason_FAILURE_REASON_RUNTIME_ERROR, serr, "status of %s", projectName)
	}
	st.Complete = true
	if err := r.writeState(st); err != nil {
		return nil, false, runtime.Fail(persysv1.FailureReason_FAILURE_REASON_STORAGE, err, "record state of %s", inst.Name)
	}
	log.Info("compose project applied", "project", projectName, "services", len(project.Services),
		"state", contract.Name(status.GetState()), "duration", time.Since(start).Round(time.Millisecond).String())
	return status, false, nil
}

// removeOtherUID removes what another incarnation of the name left: the
// project recorded in prev (with its volumes unless it kept them), and a
// project of another uid found without a state file (the state folder was
// lost), whose containers would be taken for this one's.
func (r *Runtime) removeOtherUID(ctx context.Context, log *slog.Logger, inst runtime.Instance, prev *state) error {
	if prev != nil {
		if err := r.down(ctx, prev.Project, !prev.RetainVolume); err != nil {
			return runtime.Fail(persysv1.FailureReason_FAILURE_REASON_RUNTIME_ERROR, err, "remove project %s of uid %s", prev.Project, prev.UID)
		}
		log.Info("removed project of another uid", "project", prev.Project, "old_uid", prev.UID)
	}
	ctrs, err := r.containers(ctx, inst.Name)
	if err != nil {
		return runtime.Fail(persysv1.FailureReason_FAILURE_REASON_RUNTIME_ERROR, err, "list containers of %s", inst.Name)
	}
	for _, c := range ctrs {
		if c.Labels[runtime.LabelUID] != inst.UID {
			if err := r.down(ctx, c.Labels[api.ProjectLabel], false); err != nil {
				return runtime.Fail(persysv1.FailureReason_FAILURE_REASON_RUNTIME_ERROR, err, "remove project %s of uid %s", c.Labels[api.ProjectLabel], c.Labels[runtime.LabelUID])
			}
			log.Info("removed unrecorded project of another uid", "project", c.Labels[api.ProjectLabel], "old_uid", c.Labels[runtime.LabelUID])
			break
		}
	}
	return nil
}

// up has the Compose SDK create the project and start it (waiting up to
// StartTimeout for the services), or only create and stop it when it is
// desired stopped.
func (r *Runtime) up(ctx context.Context, project *types.Project, projectName, desired string) error {
	stop := r.cfg.StopTimeout
	create := api.CreateOptions{
		RemoveOrphans:        true,
		Recreate:             api.RecreateDiverged,
		RecreateDependencies: api.RecreateDiverged,
		Inherit:              true,
		Timeout:              &stop,
		QuietPull:            true,
	}
	if desired == desiredStop {
		if err := r.svc.Create(ctx, project, create); err != nil {
			return err
		}
		return r.svc.Stop(ctx, projectName, api.StopOptions{Project: project, Timeout: &stop})
	}
	upCtx, cancel := context.WithTimeout(ctx, r.cfg.StartTimeout)
	defer cancel()
	// Create, then start: an up in two steps, so that a crash between
	// them is a failpoint of its own (the restarted agent reports the
	// project stopped, and the scheduler counts it and applies it again).
	if err := r.svc.Create(upCtx, project, create); err != nil {
		return err
	}
	failpoint.Inject(failpoint.ComposeAfterCreate)
	if first := firstService(project); first != "" {
		// One service first, then the rest: a crash between them leaves
		// a project partly up, a failpoint of its own (the next apply of
		// the revision starts the rest).
		one, err := project.WithSelectedServices([]string{first}, types.IgnoreDependencies)
		if err != nil {
			return err
		}
		// A first service that fails to start does not keep the others
		// down: the start of the whole project below reports it with the
		// state of all.
		if err := r.svc.Start(upCtx, projectName, api.StartOptions{Project: one, Wait: true, WaitTimeout: r.cfg.StartTimeout}); err == nil {
			failpoint.Inject(failpoint.ComposeBetweenServices)
		}
	}
	return r.svc.Start(upCtx, projectName, api.StartOptions{Project: project, Wait: true, WaitTimeout: r.cfg.StartTimeout})
}

// firstService is the service of a project of several that starts first:
// the first by name of those that depend on none; "" for a project of one
// (nothing comes between its services) or when every one depends on
// another.
func firstService(p *types.Project) string {
	if len(p.Services) < 2 {
		return ""
	}
	names := p.ServiceNames()
	slices.Sort(names)
	for _, n := range names {
		if len(p.Services[n].DependsOn) == 0 {
			return n
		}
	}
	return ""
}

// settled reports that an applied revision needs nothing more.
func settled(st *persysv1.WorkloadStatus, desired string) bool {
	switch desired {
	case desiredStop:
		return st.GetState() == persysv1.ActualState_ACTUAL_STATE_STOPPED
	default:
		return st.GetState() == persysv1.ActualState_ACTUAL_STATE_RUNNING
	}
}

func replicas(s types.ServiceConfig) int {
	if s.Deploy != nil && s.Deploy.Replicas != nil {
		return *s.Deploy.Replicas
	}
	if s.Scale != nil {
		return *s.Scale
	}
	return 1
}

// down removes a project's containers and networks (and its volumes when
// volumes is set), also when the compose file is gone.
func (r *Runtime) down(ctx context.Context, project string, volumes bool) error {
	stop := r.cfg.StopTimeout
	return r.svc.Down(ctx, project, api.DownOptions{RemoveOrphans: true, Volumes: volumes, Timeout: &stop})
}

// Delete runs down on the workload's project (volumes kept when the
// applied spec said RETAIN) and removes its secret files and Git cache.
func (r *Runtime) Delete(ctx context.Context, name, uid string) (bool, error) {
	if name == "" {
		return false, invalid("name: empty")
	}
	r.locks.Lock(name)
	defer r.locks.Unlock(name)
	st, err := r.readState(name)
	if err != nil {
		r.log.Warn("unreadable compose state on delete", "workload", name, "error", err)
		st = nil
	}
	ctrs, err := r.containers(ctx, name)
	if err != nil {
		return false, runtime.Fail(persysv1.FailureReason_FAILURE_REASON_RUNTIME_ERROR, err, "list containers of %s", name)
	}
	if uid != "" {
		if st != nil && st.UID != uid {
			st = nil
		}
		ctrs = slices.DeleteFunc(ctrs, func(c container.Summary) bool { return c.Labels[runtime.LabelUID] != uid })
	}
	if st == nil && len(ctrs) == 0 {
		return false, nil
	}
	projects := map[string]bool{}
	retain := false
	if st != nil {
		projects[st.Project] = true
		retain = st.RetainVolume
	}
	for _, c := range ctrs {
		projects[c.Labels[api.ProjectLabel]] = true
	}
	for p := range projects {
		if p == "" {
			continue
		}
		if err := r.down(ctx, p, !retain); err != nil {
			return true, runtime.Fail(persysv1.FailureReason_FAILURE_REASON_RUNTIME_ERROR, err, "compose down %s", p)
		}
	}
	if err := os.RemoveAll(r.workDir(name)); err != nil {
		return true, runtime.Fail(persysv1.FailureReason_FAILURE_REASON_STORAGE, err, "remove files of %s", name)
	}
	r.log.Info("compose project deleted", "workload", name, "uid", uid, "volumes_kept", retain)
	return true, nil
}
