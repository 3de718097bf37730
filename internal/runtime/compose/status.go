package compose

import (
	"context"
	"fmt"
	"maps"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"github.com/docker/compose/v5/pkg/api"
	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/client"

	persysv1 "github.com/persys-dev/compute/api/persys/v1"
	"github.com/persys-dev/compute/internal/runtime"
)

// containers lists every container (running or not) of the workload on
// this node.
func (r *Runtime) containers(ctx context.Context, name string) ([]container.Summary, error) {
	f := make(client.Filters).Add("label", runtime.LabelManaged+"=true").Add("label", api.ProjectLabel)
	if name != "" {
		f.Add("label", runtime.LabelWorkload+"="+name)
	}
	if r.cfg.NodeID != "" {
		f.Add("label", runtime.LabelNode+"="+r.cfg.NodeID)
	}
	cs, err := r.cli.ContainerList(ctx, client.ContainerListOptions{All: true, Filters: f})
	if err != nil {
		return nil, err
	}
	// The engine's filters cannot say "this cluster or no cluster label".
	return slices.DeleteFunc(cs.Items, func(c container.Summary) bool { return !r.cfg.Cluster.Owns(c.Labels[runtime.LabelCluster]) }), nil
}

// Status reports one workload; MISSING when nothing of it exists.
func (r *Runtime) Status(ctx context.Context, name string) (*persysv1.WorkloadStatus, error) {
	st, err := r.readState(name)
	if err != nil {
		st = nil
	}
	return r.status(ctx, name, st)
}

func (r *Runtime) status(ctx context.Context, name string, st *state) (*persysv1.WorkloadStatus, error) {
	ctrs, err := r.containers(ctx, name)
	if err != nil {
		return nil, err
	}
	return r.buildStatus(name, st, ctrs), nil
}

// List reports every compose workload this runtime manages on the node.
func (r *Runtime) List(ctx context.Context) ([]*persysv1.WorkloadStatus, error) {
	ctrs, err := r.containers(ctx, "")
	if err != nil {
		return nil, err
	}
	by := map[string][]container.Summary{}
	for _, c := range ctrs {
		n := c.Labels[runtime.LabelWorkload]
		by[n] = append(by[n], c)
	}
	out := make([]*persysv1.WorkloadStatus, 0, len(by))
	for _, n := range slices.Sorted(maps.Keys(by)) {
		st, err := r.readState(n)
		if err != nil {
			st = nil
		}
		out = append(out, r.buildStatus(n, st, by[n]))
	}
	return out, nil
}

// buildStatus sums a workload's containers per service. The revision is
// the applied one from the state file (unchanged services keep the
// revision label they were created with), else the highest label.
func (r *Runtime) buildStatus(name string, st *state, ctrs []container.Summary) *persysv1.WorkloadStatus {
	ws := &persysv1.WorkloadStatus{Name: name, NodeId: r.cfg.NodeID, Details: map[string]string{}}
	if st != nil {
		ws.Uid, ws.Revision = st.UID, st.Revision
		ws.Details["project"] = st.Project
		if st.Commit != "" {
			ws.Details["commit"] = st.Commit
		}
		// Containers of another uid are not this workload's.
		ctrs = slices.DeleteFunc(slices.Clone(ctrs), func(c container.Summary) bool { return c.Labels[runtime.LabelUID] != st.UID })
	}
	if len(ctrs) == 0 {
		ws.State = persysv1.ActualState_ACTUAL_STATE_MISSING
		return ws
	}
	svcs := servicesOf(ws, st, ctrs)
	desiredStopped := st != nil && st.Desired == desiredStop
	allRunning, anyRunning := true, false
	var failed, notStarted []string
	for _, sn := range slices.Sorted(maps.Keys(svcs)) {
		s := svcs[sn]
		slices.Sort(s.ContainerIds)
		s.State = serviceState(s, desiredStopped)
		switch {
		case s.State == persysv1.ActualState_ACTUAL_STATE_FAILED:
			failed = append(failed, fmt.Sprintf("service %s exited with code %d", sn, s.ExitCode))
			allRunning = false
		case s.State == persysv1.ActualState_ACTUAL_STATE_RUNNING:
			anyRunning = true
		case s.State == persysv1.ActualState_ACTUAL_STATE_CREATING:
			anyRunning, allRunning = true, false
		case !stoppedOnPurpose(s, desiredStopped):
			allRunning = false
			if s.Running == 0 && strings.HasSuffix(s.Message, neverStarted) {
				notStarted = append(notStarted, sn)
			}
		}
		ws.Services = append(ws.Services, s)
	}
	ws.RuntimeId = ws.Details["project"]
	setWorkloadState(ws, failed, desiredStopped, allRunning, anyRunning)
	if len(failed) == 0 && !desiredStopped && len(notStarted) > 0 {
		// Part of the project never started and nothing will start it:
		// stopped while it should run (the scheduler counts it and applies
		// the revision again, which starts the rest), never RUNNING.
		ws.State = persysv1.ActualState_ACTUAL_STATE_STOPPED
		ws.Message = "service " + strings.Join(notStarted, ", ") + ": " + neverStarted
	}
	setWorkloadHealth(ws)
	return ws
}

// setWorkloadHealth sums the health of the services that have a
// healthcheck (Docker runs it) into the workload's: the worst of them,
// and ready while it runs and every one of them is healthy. Without any
// healthcheck the health stays unspecified and the agent decides.
func setWorkloadHealth(ws *persysv1.WorkloadStatus) {
	worst := persysv1.HealthState_HEALTH_STATE_UNSPECIFIED
	for _, s := range ws.Services {
		worst = worseHealth(worst, s.Health)
	}
	if worst == persysv1.HealthState_HEALTH_STATE_UNSPECIFIED {
		return
	}
	ws.Health = worst
	ws.Ready = ws.State == persysv1.ActualState_ACTUAL_STATE_RUNNING && worst == persysv1.HealthState_HEALTH_STATE_HEALTHY
	ws.HealthCheck = "compose healthcheck"
}

// healthRank orders health states from best to worst.
var healthRank = map[persysv1.HealthState]int{
	persysv1.HealthState_HEALTH_STATE_UNSPECIFIED: 0,
	persysv1.HealthState_HEALTH_STATE_HEALTHY:     1,
	persysv1.HealthState_HEALTH_STATE_STARTING:    2,
	persysv1.HealthState_HEALTH_STATE_UNHEALTHY:   3,
}

func worseHealth(a, b persysv1.HealthState) persysv1.HealthState {
	if healthRank[b] > healthRank[a] {
		return b
	}
	return a
}

// containerHealth reads a running container's healthcheck state from the
// list view: its Health summary (Engine API 1.52 and later) or, from older
// engines, the status text ("Up 5 seconds (healthy)").
func containerHealth(c container.Summary) persysv1.HealthState {
	if c.Health != nil {
		switch c.Health.Status {
		case container.Healthy:
			return persysv1.HealthState_HEALTH_STATE_HEALTHY
		case container.Unhealthy:
			return persysv1.HealthState_HEALTH_STATE_UNHEALTHY
		case container.Starting:
			return persysv1.HealthState_HEALTH_STATE_STARTING
		}
		return persysv1.HealthState_HEALTH_STATE_UNSPECIFIED
	}
	switch {
	case strings.Contains(c.Status, "(unhealthy)"):
		return persysv1.HealthState_HEALTH_STATE_UNHEALTHY
	case strings.Contains(c.Status, "(healthy)"):
		return persysv1.HealthState_HEALTH_STATE_HEALTHY
	case strings.Contains(c.Status, "(health: starting)"):
		return persysv1.HealthState_HEALTH_STATE_STARTING
	}
	return persysv1.HealthState_HEALTH_STATE_UNSPECIFIED
}

// servicesOf groups the containers per service and adds the services the
// applied file has but no container runs. Without a state file it takes
// the workload's uid, revision and project from the labels.
func servicesOf(ws *persysv1.WorkloadStatus, st *state, ctrs []container.Summary) map[string]*persysv1.ServiceStatus {
	svcs := map[string]*persysv1.ServiceStatus{}
	for _, c := range ctrs {
		if st == nil {
			rev, _ := strconv.ParseUint(c.Labels[runtime.LabelRevision], 10, 64)
			if rev >= ws.Revision {
				ws.Revision, ws.Uid = rev, c.Labels[runtime.LabelUID]
			}
			ws.Details["project"] = c.Labels[api.ProjectLabel]
		}
		sn := c.Labels[api.ServiceLabel]
		s := svcs[sn]
		if s == nil {
			s = &persysv1.ServiceStatus{Name: sn, Image: c.Image}
			if st != nil {
				s.Desired = int32(st.Replicas[sn])
			} else if n, err := strconv.Atoi(c.Labels[labelReplicas]); err == nil {
				s.Desired = int32(n)
			}
			svcs[sn] = s
		}
		addContainer(s, c)
	}
	if st != nil {
		for sn, n := range st.Replicas {
			if _, ok := svcs[sn]; !ok && n > 0 {
				svcs[sn] = &persysv1.ServiceStatus{Name: sn, Desired: int32(n), Message: "no container"}
			}
		}
	}
	return svcs
}

// addContainer counts one container of service s.
func addContainer(s *persysv1.ServiceStatus, c container.Summary) {
	s.ContainerIds = append(s.ContainerIds, c.ID)
	switch c.State {
	case container.StateRunning, container.StateRestarting:
		s.Running++
		s.Health = worseHealth(s.Health, containerHealth(c))
	case container.StateExited, container.StateDead:
		if code := exitCode(c.Status); code != 0 || c.State == container.StateDead {
			s.ExitCode = int32(code)
			s.Message = fmt.Sprintf("container %s: %s", strings.TrimPrefix(first(c.Names), "/"), c.Status)
		}
	case container.StateCreated:
		// Never started (a crash between create and start, or between two
		// services): not a one-shot service that finished.
		s.Message = fmt.Sprintf("container %s: %s", strings.TrimPrefix(first(c.Names), "/"), neverStarted)
	}
}

// neverStarted ends the message of a service whose container was created
// and never started.
const neverStarted = "created, never started"

// serviceState is the state of one service from its counted containers.
func serviceState(s *persysv1.ServiceStatus, desiredStopped bool) persysv1.ActualState {
	switch {
	case s.Running > 0 && s.Running >= s.Desired:
		return persysv1.ActualState_ACTUAL_STATE_RUNNING
	case s.ExitCode != 0 && !desiredStopped:
		return persysv1.ActualState_ACTUAL_STATE_FAILED
	case stoppedOnPurpose(s, desiredStopped):
		return persysv1.ActualState_ACTUAL_STATE_STOPPED
	case s.Running > 0:
		return persysv1.ActualState_ACTUAL_STATE_CREATING
	default:
		return persysv1.ActualState_ACTUAL_STATE_STOPPED
	}
}

// stoppedOnPurpose: scaled to zero, or a one-shot service that exited 0.
// Such a service does not keep the workload from counting as running.
func stoppedOnPurpose(s *persysv1.ServiceStatus, desiredStopped bool) bool {
	return s.Desired == 0 || (len(s.ContainerIds) > 0 && s.Running == 0 && s.Message == "" && !desiredStopped)
}

// setWorkloadState sums the services' states into the workload's.
func setWorkloadState(ws *persysv1.WorkloadStatus, failed []string, desiredStopped, allRunning, anyRunning bool) {
	switch {
	case len(failed) > 0:
		ws.State = persysv1.ActualState_ACTUAL_STATE_FAILED
		ws.Reason = persysv1.FailureReason_FAILURE_REASON_CONTAINER_EXITED
		ws.Message = strings.Join(failed, "; ")
		for _, s := range ws.Services {
			if s.State == persysv1.ActualState_ACTUAL_STATE_FAILED {
				ws.ExitCode = s.ExitCode
				break
			}
		}
	case desiredStopped && !anyRunning:
		ws.State = persysv1.ActualState_ACTUAL_STATE_STOPPED
	case allRunning && anyRunning:
		ws.State = persysv1.ActualState_ACTUAL_STATE_RUNNING
	case !anyRunning:
		ws.State = persysv1.ActualState_ACTUAL_STATE_STOPPED
	default:
		ws.State = persysv1.ActualState_ACTUAL_STATE_CREATING
	}
}

var exitRe = regexp.MustCompile(`Exited \((-?\d+)\)`)

// exitCode reads the exit code from the list view's status text
// ("Exited (1) 3 seconds ago").
func exitCode(status string) int {
	m := exitRe.FindStringSubmatch(status)
	if m == nil {
		return 0
	}
	n, _ := strconv.Atoi(m[1])
	return n
}

func first(s []string) string {
	if len(s) == 0 {
		return ""
	}
	return s[0]
}

func shortID(id string) string {
	if len(id) > 12 {
		return id[:12]
	}
	return id
}
