package agent

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"
	"sync"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	persysv1 "github.com/persys-dev/compute/api/persys/v1"
	"github.com/persys-dev/compute/internal/agent/probe"
	"github.com/persys-dev/compute/internal/runtime"
)

// Abilities of a runtime that the health checks use; a runtime without
// them gets checks that fail with a message saying so.
type (
	// probeAddresser tells where the agent reaches a port of a running
	// instance (by runtime id).
	probeAddresser interface {
		ProbeAddress(ctx context.Context, runtimeID string, port uint32) (string, error)
	}
	// probeExecer runs a command in a running instance.
	probeExecer interface {
		ProbeExec(ctx context.Context, runtimeID string, argv []string) (int, []byte, error)
	}
	// instanceStopper stops an instance that failed its liveness check,
	// so that it no longer serves while the scheduler's retry engine
	// waits to replace it.
	instanceStopper interface {
		StopInstance(ctx context.Context, runtimeID string) error
	}
)

// instance names one running instance of a workload.
type instance struct {
	uid       string
	revision  uint64
	runtimeID string
}

func instanceOf(st *persysv1.WorkloadStatus) instance {
	return instance{uid: st.GetUid(), revision: st.GetRevision(), runtimeID: st.GetRuntimeId()}
}

type runningProber struct {
	inst instance
	p    *probe.Prober
}

// healthFailure is an instance whose liveness (or startup) check failed:
// it is reported FAILED with HEALTH_CHECK_FAILED for as long as the
// runtime reports that very instance, until an apply replaces it.
type healthFailure struct {
	inst   instance
	detail string
	since  time.Time
	// The last check's snapshot, shown as the status's health output.
	snap probe.Snapshot
}

// healthChecks runs the health checks of the instances the node runs: a
// probe.Prober per running instance whose spec has checks, started and
// stopped by sync (each listing of the runtimes) while Run runs.
type healthChecks struct {
	a *Agent
	// second is the checks' unit of time; tests shorten it.
	second time.Duration

	mu       sync.Mutex
	ctx      context.Context // nil outside Run: no prober starts
	probers  map[string]runningProber
	failures map[string]healthFailure
	// specs holds the health spec of each applied instance by name: the
	// allocation record keeps it across restarts, but a listing may prune
	// an entry while its apply runs.
	specs map[string]appliedChecks
	wg    sync.WaitGroup // liveness failures being handled

	// memo holds the last listing's overlays by status (overlayFrom).
	memoMu sync.Mutex
	memo   map[*persysv1.WorkloadStatus]overlaid
}

func newHealthChecks(a *Agent) *healthChecks {
	return &healthChecks{a: a, second: time.Second, probers: map[string]runningProber{},
		failures: map[string]healthFailure{}, specs: map[string]appliedChecks{}}
}

// appliedChecks is the health spec (healthSpec) of one applied revision.
type appliedChecks struct {
	uid      string
	revision uint64
	spec     []byte
}

// remember records the checks of the revision an apply runs.
func (h *healthChecks) remember(name, uid string, revision uint64, spec []byte) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if spec == nil {
		delete(h.specs, name)
		return
	}
	h.specs[name] = appliedChecks{uid: uid, revision: revision, spec: spec}
}

// run lets sync start probers until ctx ends, then stops them all.
func (h *healthChecks) run(ctx context.Context) {
	h.mu.Lock()
	h.ctx = ctx
	h.mu.Unlock()
	<-ctx.Done()
	h.mu.Lock()
	h.ctx = nil
	probers := h.probers
	h.probers = map[string]runningProber{}
	h.mu.Unlock()
	for _, rp := range probers {
		rp.p.Stop()
	}
	h.wg.Wait()
}

// healthSpec is what the agent keeps of a spec for its checks (in the
// allocation record, so checks resume after an agent restart): nil when
// the spec has none.
func healthSpec(spec *persysv1.WorkloadSpec) []byte {
	if spec.GetStartupCheck() == nil && spec.GetLivenessCheck() == nil && spec.GetReadinessCheck() == nil {
		return nil
	}
	keep := &persysv1.WorkloadSpec{
		Type:           spec.GetType(),
		StartupCheck:   spec.GetStartupCheck(),
		LivenessCheck:  spec.GetLivenessCheck(),
		ReadinessCheck: spec.GetReadinessCheck(),
	}
	if vm := spec.GetVm(); vm != nil {
		keep.Vm = &persysv1.VMSpec{Networks: vm.GetNetworks()}
	}
	b, err := proto.Marshal(keep)
	if err != nil {
		return nil
	}
	return b
}

// checksOf returns the checks recorded for the instance st reports.
func (h *healthChecks) checksOf(st *persysv1.WorkloadStatus) (*persysv1.WorkloadSpec, bool) {
	h.mu.Lock()
	ac, ok := h.specs[st.GetName()]
	h.mu.Unlock()
	if !ok {
		// After an agent restart: the allocation record.
		al, found := h.a.ledger.get(st.GetName())
		ac, ok = appliedChecks{uid: al.UID, revision: al.Revision, spec: al.Health}, found
	}
	if !ok || len(ac.spec) == 0 || ac.uid != st.GetUid() || ac.revision != st.GetRevision() {
		return nil, false
	}
	spec := &persysv1.WorkloadSpec{}
	if err := proto.Unmarshal(ac.spec, spec); err != nil {
		return nil, false
	}
	return spec, true
}

// sync starts a prober for every running instance with checks that has
// none, stops the probers of instances no longer running, and returns all
// with the health of each (see overlay). all is the complete list of what
// the runtimes report.
//
// It runs on every heartbeat of a node that may hold a thousand
// workloads: while no instance has a prober or a failure, a status listed
// again (the same one, see overlayFrom) whose instance has no checks
// takes its overlay from the last listing without being read; any other
// costs one look at the probers and failures and one at its checks.
func (h *healthChecks) sync(all []*persysv1.WorkloadStatus) []*persysv1.WorkloadStatus {
	h.forgetReplaced(all)
	next := make(map[*persysv1.WorkloadStatus]overlaid, len(all))
	// What the runtimes report running, before the overlay: an instance
	// whose liveness failed keeps its prober until it stops.
	wasRunning := make([]bool, len(all))
	var stop []*probe.Prober
	h.memoMu.Lock()
	defer h.memoMu.Unlock()
	h.mu.Lock()
	// Checks start only with an apply (a new instance: a new status) or
	// an agent restart (an empty memo), so a status seen without checks
	// has none while it is listed the same.
	quiet := len(h.probers) == 0 && len(h.failures) == 0
	h.mu.Unlock()
	for i, st := range all {
		if st == nil {
			continue
		}
		if m, ok := h.memo[st]; ok && quiet && !m.hasChecks {
			next[st], all[i], wasRunning[i] = m, m.out, m.running
			continue
		}
		name, inst := st.GetName(), instanceOf(st)
		running := st.GetState() == persysv1.ActualState_ACTUAL_STATE_RUNNING
		wasRunning[i] = running
		h.mu.Lock()
		rp, probing := h.probers[name]
		f, failed := h.failures[name]
		h.mu.Unlock()
		hasChecks := false
		switch {
		case running && probing && rp.inst == inst:
			hasChecks = true
		case running:
			var old *probe.Prober
			old, hasChecks = h.ensure(st, rp, probing, failed)
			if old != nil {
				stop = append(stop, old)
			}
			h.mu.Lock()
			rp, probing = h.probers[name]
			h.mu.Unlock()
		}
		all[i] = h.overlayFrom(st, inst, running, hasChecks, f, failed, rp, probing, h.memo, next)
	}
	h.memo = next
	stop = append(stop, h.dropNotRunning(all, wasRunning)...)
	for _, p := range stop {
		p.Stop()
	}
	return all
}

// dropNotRunning removes the probers of workloads not running (all[i]
// runs when running[i]) and returns them to be stopped.
func (h *healthChecks) dropNotRunning(all []*persysv1.WorkloadStatus, running []bool) []*probe.Prober {
	h.mu.Lock()
	defer h.mu.Unlock()
	if len(h.probers) == 0 {
		return nil
	}
	names := make(map[string]bool, len(all))
	for i, st := range all {
		if running[i] {
			names[st.GetName()] = true
		}
	}
	var stop []*probe.Prober
	for name, rp := range h.probers {
		if !names[name] {
			stop = append(stop, rp.p)
			delete(h.probers, name)
		}
	}
	return stop
}

// ensure starts the prober of the running instance st when its spec has
// checks and it has none (rp, probing: its prober now; failed: its
// liveness failed); it returns a prober of another instance of the same
// workload, which the caller stops, and whether st has checks.
func (h *healthChecks) ensure(st *persysv1.WorkloadStatus, rp runningProber, probing, failed bool) (*probe.Prober, bool) {
	name, inst := st.GetName(), instanceOf(st)
	h.mu.Lock()
	ctx := h.ctx
	h.mu.Unlock()
	var old *probe.Prober
	if probing {
		old = rp.p
		h.mu.Lock()
		if cur, ok := h.probers[name]; ok && cur.p == rp.p {
			delete(h.probers, name)
		}
		h.mu.Unlock()
	}
	spec, has := h.checksOf(st)
	if !has || ctx == nil || failed {
		return old, has
	}
	started := time.Now()
	if t := st.GetUpdatedAt(); t != nil && t.AsTime().Before(started) {
		started = t.AsTime()
	}
	p := probe.Start(ctx, probe.Options{
		Checks:   probe.Checks{Startup: spec.GetStartupCheck(), Liveness: spec.GetLivenessCheck(), Readiness: spec.GetReadinessCheck()},
		Target:   h.target(name, inst, spec),
		Started:  started,
		OnChange: func(s probe.Snapshot) { h.changed(name, inst, s) },
		OnResult: h.a.metrics.healthCheck,
		Second:   h.second,
	})
	h.mu.Lock()
	cur, raced := h.probers[name]
	if raced && cur.inst == inst {
		// A concurrent listing started this instance's checks first.
		h.mu.Unlock()
		p.Stop()
		return old, true
	}
	h.probers[name] = runningProber{inst: inst, p: p}
	h.mu.Unlock()
	if raced {
		// A concurrent listing saw an older instance; this one replaces it.
		cur.p.Stop()
	}
	h.a.log.Info("health checks started", "workload", name, "uid", inst.uid, "revision", inst.revision)
	return old, true
}

// forgetReplaced drops the failures of instances the runtimes no longer
// report as they were (replaced by an apply, or gone).
func (h *healthChecks) forgetReplaced(all []*persysv1.WorkloadStatus) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if len(h.failures) == 0 {
		return
	}
	seen := make(map[string]instance, len(all))
	for _, st := range all {
		seen[st.GetName()] = instanceOf(st)
	}
	for name, f := range h.failures {
		if inst, ok := seen[name]; !ok || inst != f.inst {
			delete(h.failures, name)
		}
	}
}

// overlay returns st with its readiness and health: FAILED with
// HEALTH_CHECK_FAILED for an instance that failed its liveness check, the
// prober's snapshot for one with checks, and ready = running for one
// without (a runtime that judged health itself, as compose does from its
// healthchecks, keeps its verdict).
func (h *healthChecks) overlay(st *persysv1.WorkloadStatus) *persysv1.WorkloadStatus {
	if st == nil {
		return nil
	}
	name, inst := st.GetName(), instanceOf(st)
	h.mu.Lock()
	f, failed := h.failures[name]
	rp, probing := h.probers[name]
	h.mu.Unlock()
	running := st.GetState() == persysv1.ActualState_ACTUAL_STATE_RUNNING
	hasChecks := false
	if running && !(failed && f.inst == inst) && !(probing && rp.inst == inst) {
		_, hasChecks = h.checksOf(st)
	}
	return h.overlayFrom(st, inst, running, hasChecks, f, failed, rp, probing, nil, nil)
}

// overlaid is a memoized overlay of one status: its result, whether the
// instance had checks (the one input besides the status itself), and
// whether it runs.
type overlaid struct {
	out       *persysv1.WorkloadStatus
	hasChecks bool
	running   bool
}

// overlayFrom is overlay of st, instance inst, given what was looked up:
// whether it runs and has checks, its failure and its prober. With next
// set, a result that depends on st alone (no failure, no prober) is kept
// in next under st's identity and taken from prev when st comes again: a
// runtime that lists the same status again (copy-on-write) then gets the
// same result, with no copy made, and the heartbeat's delta sees it
// unchanged by identity.
func (h *healthChecks) overlayFrom(st *persysv1.WorkloadStatus, inst instance, running, hasChecks bool, f healthFailure, failed bool,
	rp runningProber, probing bool, prev, next map[*persysv1.WorkloadStatus]overlaid) *persysv1.WorkloadStatus {
	switch {
	case failed && f.inst == inst:
		out := proto.Clone(st).(*persysv1.WorkloadStatus)
		out.State = persysv1.ActualState_ACTUAL_STATE_FAILED
		out.Reason = persysv1.FailureReason_FAILURE_REASON_HEALTH_CHECK_FAILED
		out.Message = f.detail
		out.UpdatedAt = timestamppb.New(f.since)
		setSnapshot(out, f.snap)
		return out
	case running && probing && rp.inst == inst:
		out := proto.Clone(st).(*persysv1.WorkloadStatus)
		setSnapshot(out, rp.p.Snapshot())
		return out
	}
	if m, ok := prev[st]; ok && m.hasChecks == hasChecks {
		next[st] = m
		return m.out
	}
	out := readiness(st, running, hasChecks)
	if next != nil {
		next[st] = overlaid{out: out, hasChecks: hasChecks, running: running}
	}
	return out
}

// readiness is st with the readiness an instance without a prober has:
// not ready until its checks pass (checks not started yet: outside Run,
// or before the next listing), ready = running without checks, unless a
// runtime judged health itself (as compose does from its healthchecks).
// st is copied only when it changes.
func readiness(st *persysv1.WorkloadStatus, running, hasChecks bool) *persysv1.WorkloadStatus {
	var ready bool
	health := st.GetHealth()
	switch {
	case running && hasChecks:
		ready, health = false, persysv1.HealthState_HEALTH_STATE_STARTING
	case running && health == persysv1.HealthState_HEALTH_STATE_UNSPECIFIED:
		ready = true
	case running:
		ready = st.GetReady()
	}
	if st.GetReady() == ready && st.GetHealth() == health {
		return st
	}
	out := proto.Clone(st).(*persysv1.WorkloadStatus)
	out.Ready, out.Health = ready, health
	return out
}

// setSnapshot puts what the checks say into st.
func setSnapshot(st *persysv1.WorkloadStatus, snap probe.Snapshot) {
	st.Ready, st.Health = snap.Ready, snap.Health
	st.HealthOutput, st.HealthCheck = snap.Output, snap.Check
	if !snap.CheckedAt.IsZero() {
		st.HealthCheckedAt = timestamppb.New(snap.CheckedAt)
	}
}

// changed is a prober's report of a new snapshot: the node reports at
// once, and a liveness failure stops the instance.
func (h *healthChecks) changed(name string, inst instance, s probe.Snapshot) {
	h.a.log.Info("health changed", "workload", name, "uid", inst.uid, "revision", inst.revision,
		"health", s.Health.String(), "ready", s.Ready, "check", s.Check, "output", s.Output)
	if s.LivenessFailed {
		h.mu.Lock()
		h.failures[name] = healthFailure{inst: inst, detail: s.Detail, since: time.Now(), snap: s}
		ctx := h.ctx
		if ctx != nil {
			h.wg.Add(1)
		}
		h.mu.Unlock()
		h.a.metrics.livenessFailures.Inc()
		if ctx != nil {
			go func() {
				defer h.wg.Done()
				h.stopFailed(ctx, name, inst)
			}()
		}
	}
	h.a.Kick()
}

// stopFailed stops an instance that failed its liveness check, under the
// workload's lock so that it never races an apply.
func (h *healthChecks) stopFailed(ctx context.Context, name string, inst instance) {
	unlock, err := h.a.locks.lock(ctx, name)
	if err != nil {
		return
	}
	defer unlock()
	h.mu.Lock()
	f, ok := h.failures[name]
	h.mu.Unlock()
	if !ok || f.inst != inst {
		return // replaced meanwhile
	}
	log := h.a.log.With("workload", name, "uid", inst.uid, "revision", inst.revision, "runtime_id", inst.runtimeID)
	for _, rt := range h.a.order {
		s, ok := rt.(instanceStopper)
		if !ok {
			continue
		}
		st, err := rt.Status(ctx, name)
		if err != nil || instanceOf(st) != inst {
			continue
		}
		if err := s.StopInstance(ctx, inst.runtimeID); err != nil {
			log.Warn("liveness check failed; stopping the instance failed", "detail", f.detail, "err", err)
			return
		}
		log.Warn("liveness check failed; instance stopped, the scheduler replaces it", "detail", f.detail)
		h.a.Kick()
		return
	}
	log.Warn("liveness check failed; the runtime cannot stop the instance, reported failed", "detail", f.detail)
}

// replaceFailed prepares an apply of name that replaces an instance that
// failed its liveness check: its prober stops and the instance is stopped
// now, if stopFailed has not yet, so that the runtime recreates it rather
// than skip a revision it still sees running. The caller holds the
// workload's lock.
func (h *healthChecks) replaceFailed(ctx context.Context, rt runtime.Runtime, name string) error {
	h.mu.Lock()
	f, ok := h.failures[name]
	delete(h.failures, name)
	rp, probing := h.probers[name]
	probing = probing && ok && rp.inst == f.inst
	if probing {
		delete(h.probers, name)
	}
	h.mu.Unlock()
	if !ok {
		return nil
	}
	if probing {
		rp.p.Stop()
	}
	if s, can := rt.(instanceStopper); can {
		if err := s.StopInstance(ctx, f.inst.runtimeID); err != nil {
			return runtime.Fail(persysv1.FailureReason_FAILURE_REASON_RUNTIME_ERROR, err, "stop the instance of %s that failed its liveness check", name)
		}
	}
	return nil
}

// forget drops what the checks hold of name (a delete; with uid, only of
// that uid's instances, as the scheduler's orphan cleanup asks) and stops
// its prober.
func (h *healthChecks) forget(name, uid string) {
	h.mu.Lock()
	rp, ok := h.probers[name]
	ok = ok && (uid == "" || rp.inst.uid == uid)
	if ok {
		delete(h.probers, name)
	}
	if f, has := h.failures[name]; has && (uid == "" || f.inst.uid == uid) {
		delete(h.failures, name)
	}
	if ac, has := h.specs[name]; has && (uid == "" || ac.uid == uid) {
		delete(h.specs, name)
	}
	h.mu.Unlock()
	if ok {
		rp.p.Stop()
	}
}

// target reaches an instance for its checks.
func (h *healthChecks) target(name string, inst instance, spec *persysv1.WorkloadSpec) probe.Target {
	return &instanceTarget{rt: h.a.runtimes[spec.GetType()], inst: inst, spec: spec}
}

type instanceTarget struct {
	rt   runtime.Runtime
	inst instance
	spec *persysv1.WorkloadSpec
}

var errNoProbe = errors.New("the runtime cannot reach its workloads for health checks")

func (t *instanceTarget) Address(ctx context.Context, port uint32) (string, error) {
	if t.spec.GetType() == persysv1.WorkloadType_WORKLOAD_TYPE_VM {
		return vmProbeAddress(t.spec, port)
	}
	a, ok := t.rt.(probeAddresser)
	if !ok {
		return "", errNoProbe
	}
	return a.ProbeAddress(ctx, t.inst.runtimeID, port)
}

func (t *instanceTarget) Exec(ctx context.Context, argv []string) (int, []byte, error) {
	e, ok := t.rt.(probeExecer)
	if !ok {
		return 0, nil, errNoProbe
	}
	return e.ProbeExec(ctx, t.inst.runtimeID, argv)
}

// vmProbeAddress is the host side of the tcp port forward of a user-mode
// network whose guest port is port.
func vmProbeAddress(spec *persysv1.WorkloadSpec, port uint32) (string, error) {
	for _, n := range spec.GetVm().GetNetworks() {
		if n.GetMode() != "" && n.GetMode() != "user" {
			continue
		}
		for _, pf := range n.GetPortForwards() {
			if pf.GetGuestPort() == port && (pf.GetProtocol() == "" || pf.GetProtocol() == "tcp") {
				host := pf.GetHostIp()
				if host == "" || host == "0.0.0.0" || host == "::" {
					host = "127.0.0.1"
				}
				return net.JoinHostPort(host, strconv.Itoa(int(pf.GetHostPort()))), nil
			}
		}
	}
	return "", fmt.Errorf("no tcp port forward to guest port %d", port)
}
