// Package sim is a simulated CONTAINER runtime for scale tests, in the
// spirit of kubemark's hollow nodes: it keeps workloads in memory, runs
// nothing, and reports them RUNNING after a configurable delay. Scripted
// failures by image name, Kill and MakeZombie let tests drive failures. It
// is never the default runtime; an agent using it must say so loudly.
// With a ReadyDelay it also stands in for health checks: a running
// instance reports itself not ready (STARTING) until the delay passes,
// then ready (HEALTHY), without any probe.
//
// Callers build a Runtime with New and use it through runtime.Runtime,
// runtime.Watcher and runtime.Verifier; it is safe for concurrent use.
package sim

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"sync"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/persys-dev/compute/api/persys/contract"
	persysv1 "github.com/persys-dev/compute/api/persys/v1"
	"github.com/persys-dev/compute/internal/runtime"
)

// watchBuffer is each watcher's channel capacity; notifications beyond it
// are dropped while the watcher lags, which loses nothing the agent needs:
// one notification already triggers a report of every workload.
const watchBuffer = 64

// Options configure a simulated runtime.
type Options struct {
	// ApplyDelay is how long an apply stays CREATING before it reports
	// RUNNING (or STOPPED); zero is immediate.
	ApplyDelay time.Duration
	// FailImages scripts failures: an apply of a container with one of
	// these images fails with the reason after ApplyDelay, and the
	// workload is reported FAILED until the next apply or delete.
	FailImages map[string]persysv1.FailureReason
	// LoseStartImages scripts a start lost half-way, as when an agent
	// dies between creating a container and starting it: the first apply
	// of a revision of a container with one of these images returns, and
	// then reports, CREATING for ever; applying that revision again
	// finishes it.
	LoseStartImages []string
	// Seed makes the runtime ids reproducible: the same seed and the same
	// sequence of applies give the same ids.
	Seed int64
	// ReadyDelay simulates a readiness check: a RUNNING instance reports
	// ready = false (health STARTING) for this long after it started, then
	// ready (HEALTHY), and the watchers hear of it. Zero reports no health
	// at all, and the agent counts a running instance as ready.
	ReadyDelay time.Duration
}

// Runtime is the in-memory simulated runtime.
type Runtime struct {
	delay      time.Duration
	readyDelay time.Duration
	failImages map[string]persysv1.FailureReason
	loseStart  map[string]bool

	mu        sync.Mutex
	rnd       *rand.Rand
	workloads map[string]*entry
	// names is the workloads' names in order and order their entries,
	// index for index, kept so as names come and go: a hollow node lists
	// on every heartbeat, and sorting its hundred names, then looking
	// each up, was most of List (a cache miss per name at 10,000 nodes).
	names    []string
	order    []*entry
	watchers map[*watcher]struct{}
}

// entry is one workload's current revision.
type entry struct {
	status *persysv1.WorkloadStatus
	// desired is the spec's desired state; skipped applies compare it.
	desired persysv1.DesiredState
	// zombie: reported RUNNING, but Verify finds it dead.
	zombie bool
	// lost: the start of this revision was lost (LoseStartImages).
	lost bool
}

// edit replaces e's status with a copy changed by fn: List shares the
// status held with its callers, so it is never changed in place.
func (e *entry) edit(fn func(st *persysv1.WorkloadStatus)) {
	st := proto.Clone(e.status).(*persysv1.WorkloadStatus)
	fn(st)
	e.status = st
}

type watcher struct {
	ch chan string
}

// New validates opts and returns a Runtime.
func New(opts Options) (*Runtime, error) {
	if opts.ApplyDelay < 0 {
		return nil, fmt.Errorf("sim runtime: ApplyDelay %s is negative", opts.ApplyDelay)
	}
	if opts.ReadyDelay < 0 {
		return nil, fmt.Errorf("sim runtime: ReadyDelay %s is negative", opts.ReadyDelay)
	}
	fail := make(map[string]persysv1.FailureReason, len(opts.FailImages))
	for img, reason := range opts.FailImages {
		if img == "" {
			return nil, errors.New("sim runtime: FailImages has an empty image name")
		}
		if _, ok := persysv1.FailureReason_name[int32(reason)]; !ok || reason == persysv1.FailureReason_FAILURE_REASON_UNSPECIFIED {
			return nil, fmt.Errorf("sim runtime: FailImages[%q]: reason %d is not a failure reason", img, reason)
		}
		fail[img] = reason
	}
	lose := map[string]bool{}
	for _, img := range opts.LoseStartImages {
		lose[img] = true
	}
	return &Runtime{
		delay:      opts.ApplyDelay,
		readyDelay: opts.ReadyDelay,
		failImages: fail,
		loseStart:  lose,
		rnd:        rand.New(rand.NewPCG(uint64(opts.Seed), 0x5e11)),
		workloads:  map[string]*entry{},
		watchers:   map[*watcher]struct{}{},
	}, nil
}

// Type reports WORKLOAD_TYPE_CONTAINER: the simulator stands in for the
// docker runtime.
func (r *Runtime) Type() persysv1.WorkloadType {
	return persysv1.WorkloadType_WORKLOAD_TYPE_CONTAINER
}

func validate(inst runtime.Instance) error {
	switch {
	case inst.Name == "":
		return runtime.Fail(persysv1.FailureReason_FAILURE_REASON_INVALID_SPEC, nil, "name: empty")
	case inst.UID == "":
		return runtime.Fail(persysv1.FailureReason_FAILURE_REASON_INVALID_SPEC, nil, "uid: empty")
	case inst.Spec == nil:
		return runtime.Fail(persysv1.FailureReason_FAILURE_REASON_INVALID_SPEC, nil, "spec: missing")
	case inst.Spec.GetType() != persysv1.WorkloadType_WORKLOAD_TYPE_CONTAINER:
		return runtime.Fail(persysv1.FailureReason_FAILURE_REASON_INVALID_SPEC, nil, "spec.type: %s is not CONTAINER", inst.Spec.GetType())
	case inst.Spec.GetContainer().GetImage() == "":
		return runtime.Fail(persysv1.FailureReason_FAILURE_REASON_INVALID_SPEC, nil, "spec.container.image: empty")
	}
	return nil
}

// Apply records the instance as CREATING, waits ApplyDelay and then reports
// it RUNNING (STOPPED when the desired state is STOPPED), or FAILED with
// the scripted reason of its image. Applying the (uid, revision) that
// already is in its desired state is skipped. A context that ends during
// the delay aborts the apply and leaves the instance FAILED.
func (r *Runtime) Apply(ctx context.Context, inst runtime.Instance) (*persysv1.WorkloadStatus, bool, error) {
	if err := validate(inst); err != nil {
		return nil, false, err
	}
	desired := inst.Spec.GetDesiredState()
	if desired == persysv1.DesiredState_DESIRED_STATE_UNSPECIFIED {
		desired = persysv1.DesiredState_DESIRED_STATE_RUNNING
	}
	target := persysv1.ActualState_ACTUAL_STATE_RUNNING
	if desired == persysv1.DesiredState_DESIRED_STATE_STOPPED {
		target = persysv1.ActualState_ACTUAL_STATE_STOPPED
	}

	r.mu.Lock()
	if e, ok := r.workloads[inst.Name]; ok && e.status.GetUid() == inst.UID &&
		e.status.GetRevision() == inst.Revision && e.desired == desired && e.status.GetState() == target {
		st := proto.Clone(e.status).(*persysv1.WorkloadStatus)
		r.mu.Unlock()
		return st, true, nil
	}
	if e, ok := r.workloads[inst.Name]; ok && e.lost && e.status.GetUid() == inst.UID && e.status.GetRevision() == inst.Revision {
		e.lost = false // applied again: this time it starts
	} else if r.loseStart[inst.Spec.GetContainer().GetImage()] {
		st := r.recordLostLocked(inst, desired)
		r.mu.Unlock()
		return st, false, nil
	}
	e := &entry{desired: desired, status: &persysv1.WorkloadStatus{
		Name:      inst.Name,
		Uid:       inst.UID,
		Revision:  inst.Revision,
		State:     persysv1.ActualState_ACTUAL_STATE_CREATING,
		RuntimeId: fmt.Sprintf("sim-%016x", r.rnd.Uint64()),
		UpdatedAt: timestamppb.Now(),
	}}
	r.setLocked(inst.Name, e)
	r.mu.Unlock()

	var abort error
	if r.delay > 0 {
		t := time.NewTimer(r.delay)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			abort = ctx.Err()
		}
	}

	r.mu.Lock()
	defer r.mu.Unlock()
	// Statuses are copied on write: List hands out the ones held.
	st := proto.Clone(e.status).(*persysv1.WorkloadStatus)
	if r.workloads[inst.Name] != e {
		// A later apply or a delete took over: report what this apply
		// was without touching the current record.
		return proto.Clone(st).(*persysv1.WorkloadStatus), false,
			runtime.Fail(persysv1.FailureReason_FAILURE_REASON_RUNTIME_ERROR, nil, "apply superseded")
	}
	if st.GetState() == persysv1.ActualState_ACTUAL_STATE_FAILED {
		// Killed while creating.
		return proto.Clone(st).(*persysv1.WorkloadStatus), false, runtime.Fail(st.GetReason(), nil, "%s", st.GetMessage())
	}
	var err error
	reason, scripted := r.failImages[inst.Spec.GetContainer().GetImage()]
	switch {
	case abort != nil:
		st.State, st.Reason, st.Message = persysv1.ActualState_ACTUAL_STATE_FAILED,
			persysv1.FailureReason_FAILURE_REASON_RUNTIME_ERROR, "apply aborted"
		err = runtime.Fail(persysv1.FailureReason_FAILURE_REASON_RUNTIME_ERROR, abort, "apply aborted")
	case scripted:
		st.State, st.Reason = persysv1.ActualState_ACTUAL_STATE_FAILED, reason
		st.Message = fmt.Sprintf("simulated failure for image %q", inst.Spec.GetContainer().GetImage())
		err = runtime.Fail(reason, nil, "%s", st.Message)
	default:
		st.State = target
	}
	st.UpdatedAt = timestamppb.Now()
	e.status = st
	if st.State == persysv1.ActualState_ACTUAL_STATE_RUNNING && r.readyDelay > 0 {
		r.startReadinessLocked(inst.Name, e)
	}
	return proto.Clone(e.status).(*persysv1.WorkloadStatus), false, err
}

// startReadinessLocked reports the running entry e not ready until
// ReadyDelay passes, then ready, as a passing readiness check would.
// r.mu is held.
func (r *Runtime) startReadinessLocked(name string, e *entry) {
	e.edit(func(st *persysv1.WorkloadStatus) {
		st.Ready, st.Health = false, persysv1.HealthState_HEALTH_STATE_STARTING
	})
	time.AfterFunc(r.readyDelay, func() {
		r.mu.Lock()
		defer r.mu.Unlock()
		if r.workloads[name] != e || e.status.GetState() != persysv1.ActualState_ACTUAL_STATE_RUNNING {
			return // replaced, deleted or killed meanwhile
		}
		e.edit(func(st *persysv1.WorkloadStatus) {
			st.Ready, st.Health = true, persysv1.HealthState_HEALTH_STATE_HEALTHY
			st.UpdatedAt = timestamppb.Now()
		})
		r.notifyLocked(name)
	})
}

// notifyLocked tells the watchers that name changed; a lagging watcher
// misses it, which loses nothing (see watchBuffer). r.mu is held.
func (r *Runtime) notifyLocked(name string) {
	for w := range r.watchers {
		select {
		case w.ch <- name:
		default:
		}
	}
}

// recordLostLocked records inst as a start lost half-way and returns its
// CREATING status. r.mu is held.
func (r *Runtime) recordLostLocked(inst runtime.Instance, desired persysv1.DesiredState) *persysv1.WorkloadStatus {
	e := &entry{desired: desired, lost: true, status: &persysv1.WorkloadStatus{
		Name: inst.Name, Uid: inst.UID, Revision: inst.Revision,
		State:     persysv1.ActualState_ACTUAL_STATE_CREATING,
		RuntimeId: fmt.Sprintf("sim-%016x", r.rnd.Uint64()),
		UpdatedAt: timestamppb.Now(),
	}}
	r.setLocked(inst.Name, e)
	return proto.Clone(e.status).(*persysv1.WorkloadStatus)
}

// setLocked records e as name's entry. r.mu is held.
func (r *Runtime) setLocked(name string, e *entry) {
	i, had := slices.BinarySearch(r.names, name)
	if had {
		r.order[i] = e
	} else {
		r.names, r.order = slices.Insert(r.names, i, name), slices.Insert(r.order, i, e)
	}
	r.workloads[name] = e
}

// Delete forgets the workload (only when its uid matches, if uid is set).
func (r *Runtime) Delete(_ context.Context, name, uid string) (bool, error) {
	if name == "" {
		return false, runtime.Fail(persysv1.FailureReason_FAILURE_REASON_INVALID_SPEC, nil, "name: empty")
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	e, ok := r.workloads[name]
	if !ok || (uid != "" && e.status.GetUid() != uid) {
		return false, nil
	}
	delete(r.workloads, name)
	if i, ok := slices.BinarySearch(r.names, name); ok {
		r.names, r.order = slices.Delete(r.names, i, i+1), slices.Delete(r.order, i, i+1)
	}
	return true, nil
}

// Status reports the workload, or MISSING.
func (r *Runtime) Status(_ context.Context, name string) (*persysv1.WorkloadStatus, error) {
	if name == "" {
		return nil, runtime.Fail(persysv1.FailureReason_FAILURE_REASON_INVALID_SPEC, nil, "name: empty")
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if e, ok := r.workloads[name]; ok {
		return proto.Clone(e.status).(*persysv1.WorkloadStatus), nil
	}
	return &persysv1.WorkloadStatus{Name: name, State: persysv1.ActualState_ACTUAL_STATE_MISSING, UpdatedAt: timestamppb.Now()}, nil
}

// List reports every workload, ordered by name.
func (r *Runtime) List(_ context.Context) ([]*persysv1.WorkloadStatus, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make([]*persysv1.WorkloadStatus, len(r.order))
	for i, e := range r.order {
		// Shared, not copied: an entry's status is replaced, never
		// changed in place (entry.edit), and callers do not change what
		// List returns. Copying each status on every heartbeat was a
		// sixth of the CPU of 10,000 hollow nodes.
		out[i] = e.status
	}
	return out, nil
}

// Watch returns a channel that receives the name of each workload Kill
// fails or that turns ready after ReadyDelay; nothing else sends. The channel is closed when ctx ends.
func (r *Runtime) Watch(ctx context.Context) (<-chan string, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("sim watch: %w", err)
	}
	w := &watcher{ch: make(chan string, watchBuffer)}
	r.mu.Lock()
	r.watchers[w] = struct{}{}
	r.mu.Unlock()
	context.AfterFunc(ctx, func() {
		r.mu.Lock()
		delete(r.watchers, w)
		close(w.ch)
		r.mu.Unlock()
	})
	return w.ch, nil
}

// Kill makes the workload fail as if its container exited (FAILED with
// CONTAINER_EXITED, exit code 137) and notifies the watchers. Killing an
// unknown or already failed workload does nothing.
func (r *Runtime) Kill(name string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	e, ok := r.workloads[name]
	if !ok || e.status.GetState() == persysv1.ActualState_ACTUAL_STATE_FAILED {
		return
	}
	e.zombie = false
	e.edit(func(st *persysv1.WorkloadStatus) {
		st.State = persysv1.ActualState_ACTUAL_STATE_FAILED
		st.Reason = persysv1.FailureReason_FAILURE_REASON_CONTAINER_EXITED
		st.Message = "exited with code 137"
		st.ExitCode = 137
		st.Ready, st.Health = false, persysv1.HealthState_HEALTH_STATE_UNSPECIFIED
		st.UpdatedAt = timestamppb.Now()
	})
	r.notifyLocked(name)
}

// MakeZombie turns a RUNNING workload into a zombie: List and Status keep
// reporting it RUNNING, as a runtime that lost track of its process would,
// while Verify reports it dead. Like a real runtime it believes the
// instance runs, so applying that same instance again is skipped; applying
// another instance, Delete and Kill end it. Workloads not RUNNING are left
// alone.
func (r *Runtime) MakeZombie(name string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if e, ok := r.workloads[name]; ok && e.status.GetState() == persysv1.ActualState_ACTUAL_STATE_RUNNING {
		e.zombie = true
	}
}

// Verify reports whether the workload runs and is not a zombie. See
// runtime.Verifier.
func (r *Runtime) Verify(_ context.Context, name string) (bool, string, error) {
	if name == "" {
		return false, "", runtime.Fail(persysv1.FailureReason_FAILURE_REASON_INVALID_SPEC, nil, "name: empty")
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	e, ok := r.workloads[name]
	switch {
	case !ok:
		return false, "no instance", nil
	case e.zombie:
		return false, fmt.Sprintf("simulated zombie %s", e.status.GetRuntimeId()), nil
	case e.status.GetState() != persysv1.ActualState_ACTUAL_STATE_RUNNING:
		return false, "instance is " + contract.Name(e.status.GetState()), nil
	}
	return true, "", nil
}

var (
	_ runtime.Runtime  = (*Runtime)(nil)
	_ runtime.Watcher  = (*Runtime)(nil)
	_ runtime.Verifier = (*Runtime)(nil)
)
