package agent

import (
	"context"
	"sync"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	persysv1 "github.com/persys-dev/compute/api/persys/v1"
	"github.com/persys-dev/compute/internal/runtime"
)

// ZombiePrefix starts the message of a zombie's FAILED status.
const ZombiePrefix = "zombie: "

// zombie is a workload instance its runtime reports RUNNING although
// runtime.Verifier found it dead.
type zombie struct {
	runtime   persysv1.WorkloadType
	uid       string
	revision  uint64
	runtimeID string
	detail    string
	since     time.Time
}

// zombies holds the zombies the audit found, by workload name. An entry
// lasts while the runtime keeps reporting that very instance RUNNING.
type zombies struct {
	mu sync.Mutex
	m  map[string]zombie
}

func newZombies() *zombies { return &zombies{m: map[string]zombie{}} }

// add records z and reports whether it is new.
func (zs *zombies) add(name string, z zombie) bool {
	zs.mu.Lock()
	defer zs.mu.Unlock()
	if old, ok := zs.m[name]; ok && old.runtimeID == z.runtimeID && old.uid == z.uid && old.revision == z.revision {
		return false
	}
	zs.m[name] = z
	return true
}

func (zs *zombies) get(name string) (zombie, bool) {
	zs.mu.Lock()
	defer zs.mu.Unlock()
	z, ok := zs.m[name]
	return z, ok
}

func (zs *zombies) remove(name string) {
	zs.mu.Lock()
	defer zs.mu.Unlock()
	delete(zs.m, name)
}

// removeInstance forgets the zombie of name when it is the instance with
// runtimeID.
func (zs *zombies) removeInstance(name, runtimeID string) {
	zs.mu.Lock()
	defer zs.mu.Unlock()
	if z, ok := zs.m[name]; ok && z.runtimeID == runtimeID {
		delete(zs.m, name)
	}
}

func (z zombie) matches(st *persysv1.WorkloadStatus) bool {
	return st.GetState() == persysv1.ActualState_ACTUAL_STATE_RUNNING && st.GetRuntimeId() == z.runtimeID &&
		st.GetUid() == z.uid && st.GetRevision() == z.revision
}

// overlay reports the zombies in all, the complete list of what the
// runtimes report, as FAILED with RUNTIME_ERROR, and forgets zombies whose
// instance is no longer reported RUNNING (it exited, was replaced or
// removed): from then on the runtime's own status is the truth.
func (zs *zombies) overlay(all []*persysv1.WorkloadStatus) []*persysv1.WorkloadStatus {
	zs.mu.Lock()
	defer zs.mu.Unlock()
	if len(zs.m) == 0 {
		return all
	}
	seen := make(map[string]bool, len(zs.m))
	for i, st := range all {
		z, ok := zs.m[st.GetName()]
		if !ok {
			continue
		}
		seen[st.GetName()] = true
		if !z.matches(st) {
			delete(zs.m, st.GetName())
			continue
		}
		out := proto.Clone(st).(*persysv1.WorkloadStatus)
		out.State = persysv1.ActualState_ACTUAL_STATE_FAILED
		out.Reason = persysv1.FailureReason_FAILURE_REASON_RUNTIME_ERROR
		out.Message = ZombiePrefix + z.detail
		out.UpdatedAt = timestamppb.New(z.since)
		all[i] = out
	}
	for name := range zs.m {
		if !seen[name] {
			delete(zs.m, name)
		}
	}
	return all
}

// auditLoop repairs at once (a restart after a crash is when leftovers
// exist), then runs the audit every AuditInterval until ctx ends.
func (a *Agent) auditLoop(ctx context.Context) {
	if a.repair(ctx) > 0 {
		a.Kick()
	}
	t := time.NewTicker(a.cfg.AuditInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			a.audit(ctx)
		}
	}
}

// audit repairs crash leftovers, verifies every workload that a runtime
// with a Verifier reports RUNNING, records the zombies it finds and asks
// for a heartbeat at once when it repaired or found one.
func (a *Agent) audit(ctx context.Context) {
	found := a.repair(ctx)
	for _, rt := range a.order {
		v, ok := rt.(runtime.Verifier)
		if !ok {
			continue
		}
		lctx, cancel := context.WithTimeout(ctx, rpcTimeout)
		ws, err := rt.List(lctx)
		cancel()
		if err != nil {
			if ctx.Err() == nil {
				a.log.Warn("audit: list workloads failed", "runtime", runtimeName(rt.Type()), "err", err)
			}
			continue
		}
		calls := sharedDeadline{parent: ctx, timeout: rpcTimeout}
		for _, w := range ws {
			if ctx.Err() != nil {
				calls.stop()
				return
			}
			if w.GetState() == persysv1.ActualState_ACTUAL_STATE_RUNNING && a.auditOne(calls.next(), rt, v, w) {
				found++
			}
		}
		calls.stop()
	}
	if found > 0 {
		a.Kick()
	}
}

// repair asks every runtime that can (runtime.Repairer) to finish what a
// crash in the middle of its apply left, and returns how many repairs were
// made: each changes what the node reports.
func (a *Agent) repair(ctx context.Context) int {
	n := 0
	for _, rt := range a.order {
		r, ok := rt.(runtime.Repairer)
		if !ok {
			continue
		}
		rctx, cancel := context.WithTimeout(ctx, rpcTimeout)
		done, err := r.Repair(rctx)
		cancel()
		for _, d := range done {
			a.metrics.repairs.WithLabelValues(runtimeName(rt.Type()), d.Action).Inc()
			a.repairNotes.add(&persysv1.AgentRepair{Workload: d.Workload, Runtime: runtimeName(rt.Type()), Action: d.Action, Detail: d.Detail})
			a.log.Info("repaired a crash leftover", "runtime", runtimeName(rt.Type()), "workload", d.Workload, "action", d.Action, "detail", d.Detail)
		}
		n += len(done)
		if err != nil && ctx.Err() == nil {
			a.log.Warn("repair failed", "runtime", runtimeName(rt.Type()), "err", err)
		}
	}
	return n
}

// sharedDeadline gives runtime calls made one after another a deadline
// each, one timer serving the calls of a few seconds: each call starts
// with at least half of timeout left. A timer per call was half of an
// audit's cost at 100 workloads a node.
type sharedDeadline struct {
	parent  context.Context
	timeout time.Duration
	ctx     context.Context
	cancel  context.CancelFunc
	until   time.Time
}

// next is the context of the next call.
func (d *sharedDeadline) next() context.Context {
	if d.ctx == nil || time.Until(d.until) < d.timeout/2 {
		d.stop()
		d.until = time.Now().Add(d.timeout)
		d.ctx, d.cancel = context.WithDeadline(d.parent, d.until)
	}
	return d.ctx
}

func (d *sharedDeadline) stop() {
	if d.cancel != nil {
		d.cancel()
	}
	d.ctx, d.cancel = nil, nil
}

// auditOne verifies one workload listed RUNNING and reports whether it is
// a zombie not known before. ctx bounds the runtime calls.
func (a *Agent) auditOne(ctx context.Context, rt runtime.Runtime, v runtime.Verifier, w *persysv1.WorkloadStatus) bool {
	name := w.GetName()
	alive, detail, err := v.Verify(ctx, name)
	if err != nil {
		if ctx.Err() == nil {
			a.log.Warn("audit: verify failed", "workload", name, "runtime", runtimeName(rt.Type()), "err", err)
		}
		return false
	}
	if alive {
		a.zombies.removeInstance(name, w.GetRuntimeId())
		return false
	}
	// A workload that ended between the listing and the check is an
	// ordinary change, reported as such: a zombie is one the runtime
	// still calls running.
	st, err := rt.Status(ctx, name)
	if err != nil || st.GetState() != persysv1.ActualState_ACTUAL_STATE_RUNNING || st.GetRuntimeId() != w.GetRuntimeId() ||
		st.GetUid() != w.GetUid() || st.GetRevision() != w.GetRevision() {
		return false
	}
	if !a.zombies.add(name, zombie{runtime: rt.Type(), uid: w.GetUid(), revision: w.GetRevision(),
		runtimeID: w.GetRuntimeId(), detail: detail, since: time.Now()}) {
		return false
	}
	rtName := runtimeName(rt.Type())
	a.metrics.zombies.WithLabelValues(rtName).Inc()
	a.log.Warn("zombie: the runtime reports the workload running but it is dead", "workload", name,
		"uid", w.GetUid(), "revision", w.GetRevision(), "runtime", rtName, "runtime_id", w.GetRuntimeId(), "detail", detail)
	return true
}

// removeZombie deletes the zombie instance of name, if any, so that an
// apply creates the workload afresh instead of skipping the revision the
// runtime still calls running.
func (a *Agent) removeZombie(ctx context.Context, name string) error {
	z, ok := a.zombies.get(name)
	if !ok {
		return nil
	}
	rt, ok := a.runtimes[z.runtime]
	if !ok {
		a.zombies.remove(name)
		return nil
	}
	if _, err := rt.Delete(ctx, name, z.uid); err != nil {
		return runtime.Fail(persysv1.FailureReason_FAILURE_REASON_RUNTIME_ERROR, err, "remove zombie %s", name)
	}
	a.zombies.remove(name)
	a.log.Info("zombie removed before apply", "workload", name, "uid", z.uid, "revision", z.revision,
		"runtime_id", z.runtimeID)
	return nil
}
