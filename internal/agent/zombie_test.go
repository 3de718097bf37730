package agent_test

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/moby/moby/client"
	persysv1 "github.com/persys-dev/compute/api/persys/v1"
	"github.com/persys-dev/compute/internal/agent"
	"github.com/persys-dev/compute/internal/runtime"
	"github.com/persys-dev/compute/internal/runtime/sim"
	"github.com/persys-dev/compute/internal/scheduler"
	"github.com/persys-dev/compute/internal/testutil/eventually"
	"github.com/persys-dev/compute/internal/testutil/need"
)

func withAudit(d time.Duration) func(*agent.Config) {
	return func(c *agent.Config) { c.AuditInterval = d }
}

func isZombie(w *persysv1.WorkloadStatus) bool {
	return w.GetState() == persysv1.ActualState_ACTUAL_STATE_FAILED &&
		w.GetReason() == persysv1.FailureReason_FAILURE_REASON_RUNTIME_ERROR &&
		strings.HasPrefix(w.GetMessage(), agent.ZombiePrefix)
}

// procState reads the one-letter state of /proc/<pid>/stat and the parent.
func procState(pid int) (state byte, ppid int, err error) {
	b, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "stat"))
	if err != nil {
		return 0, 0, err
	}
	fields := strings.Fields(string(b[bytes.LastIndexByte(b, ')')+1:]))
	ppid, err = strconv.Atoi(fields[1])
	return fields[0][0], ppid, err
}

// makeZombie turns the container's main process into a real zombie that
// the engine still reports running: it freezes the container's shim
// (SIGSTOP) so that nothing reaps the process, then kills the process.
// The shim is resumed by the returned func and at cleanup. Without root or
// without the engine's processes visible the test is skipped.
func makeZombie(t *testing.T, pid int) (resume func()) {
	t.Helper()
	if os.Geteuid() != 0 {
		skipUnlessCI(t, "making a zombie container needs root")
	}
	_, ppid, err := procState(pid)
	if err != nil {
		skipUnlessCI(t, "container process %d not visible: %v", pid, err)
	}
	comm, _ := os.ReadFile(filepath.Join("/proc", strconv.Itoa(ppid), "comm"))
	if !strings.HasPrefix(string(comm), "containerd-shim") {
		skipUnlessCI(t, "parent of the container process is %q, not a containerd shim", strings.TrimSpace(string(comm)))
	}
	if err := syscall.Kill(ppid, syscall.SIGSTOP); err != nil {
		t.Fatalf("stop shim %d: %v", ppid, err)
	}
	resumed := false
	resume = func() {
		if !resumed {
			resumed = true
			_ = syscall.Kill(ppid, syscall.SIGCONT)
		}
	}
	t.Cleanup(resume)
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatalf("kill container process %d: %v", pid, err)
	}
	eventually.Eventually(t, fmt.Sprintf("process %d a zombie", pid), waitFor, func() (bool, string) {
		s, _, err := procState(pid)
		return err == nil && s == 'Z', fmt.Sprintf("state %c, %v", s, err)
	})
	return resume
}

// longRetries keeps a failed workload failed for the test's length: the
// scheduler's retry comes after ten minutes.
func longRetries(c *scheduler.Config) { c.RetryBase, c.RetryMax = 10*time.Minute, 10*time.Minute }

func TestAgentReportsZombieContainer(t *testing.T) {
	e := newDockerEnv(t, longRetries)
	ra := e.startAgent(t, "", withAudit(100*time.Millisecond))
	name := e.prefix + "-zombie"
	uid := e.apply(t, name, e.spec(100, 64*mib))
	st := waitAgentState(t, ra, name, "running", func(st *persysv1.WorkloadStatus) bool {
		return st.GetState() == persysv1.ActualState_ACTUAL_STATE_RUNNING
	})
	infoRes, err := e.cli.ContainerInspect(context.Background(), st.GetRuntimeId(), client.ContainerInspectOptions{})
	info := infoRes.Container
	if err != nil {
		t.Fatal(err)
	}

	from := len(e.heartbeats())
	resume := makeZombie(t, info.State.Pid)
	hb := e.waitHeartbeat(t, from, "a heartbeat reporting the zombie", func(hb *persysv1.HeartbeatRequest) bool {
		return isZombie(findWorkload(hb.GetWorkloads(), name))
	})
	w := findWorkload(hb.GetWorkloads(), name)
	if w.GetUid() != uid || w.GetRevision() != 1 || w.GetRuntimeId() != info.ID || !strings.Contains(w.GetMessage(), "zombie") {
		t.Fatalf("zombie reported as %v", w)
	}
	if got := metricValue(t, ra.registry, "persys_agent_zombies_detected_total", map[string]string{"runtime": "container"}); got != 1 {
		t.Fatalf("zombies detected = %v, want 1 (once per zombie, not per audit)", got)
	}
	list, err := ra.client.ListWorkloads(context.Background(), &persysv1.ListAgentWorkloadsRequest{})
	if err != nil || !isZombie(findWorkload(list.GetWorkloads(), name)) {
		t.Fatalf("ListWorkloads = %v, %v; want the zombie FAILED", list, err)
	}

	// Once the shim resumes the engine sees the exit: the runtime's own
	// status replaces the zombie report.
	from = len(e.heartbeats())
	resume()
	hb = e.waitHeartbeat(t, from, "a heartbeat with the real exit", func(hb *persysv1.HeartbeatRequest) bool {
		w := findWorkload(hb.GetWorkloads(), name)
		return w != nil && !isZombie(w) && w.GetState() != persysv1.ActualState_ACTUAL_STATE_RUNNING
	})
	if w := findWorkload(hb.GetWorkloads(), name); w.GetReason() != persysv1.FailureReason_FAILURE_REASON_CONTAINER_EXITED {
		t.Fatalf("after the exit: %v, want FAILED with CONTAINER_EXITED", w)
	}
}

func TestAgentZombieRecreatedOnApplyAndDeletesCounted(t *testing.T) {
	// A real engine cannot produce a zombie that can also be removed (its
	// shim is frozen), so this uses the simulator's scripted zombie. The
	// scheduler retries a failed workload at once.
	e := newRecordedEnv(t, nodeID, func(c *scheduler.Config) { c.RetryBase, c.RetryMax = 10*time.Millisecond, 10*time.Millisecond })
	simRT, err := sim.New(sim.Options{Seed: 1})
	if err != nil {
		t.Fatal(err)
	}
	ra := e.startAgent(t, "", withAudit(50*time.Millisecond), func(c *agent.Config) {
		c.Runtimes = []runtime.Runtime{simRT}
	})
	name := e.prefix + "-simz"
	e.apply(t, name, e.spec(100, 64*mib))
	first := waitAgentState(t, ra, name, "running", func(st *persysv1.WorkloadStatus) bool {
		return st.GetState() == persysv1.ActualState_ACTUAL_STATE_RUNNING
	})

	from := len(e.heartbeats())
	simRT.MakeZombie(name)
	e.waitHeartbeat(t, from, "a heartbeat reporting the zombie", func(hb *persysv1.HeartbeatRequest) bool {
		return isZombie(findWorkload(hb.GetWorkloads(), name))
	})
	if got := metricValue(t, ra.registry, "persys_agent_zombies_detected_total", map[string]string{"runtime": "container"}); got != 1 {
		t.Fatalf("zombies detected = %v, want 1", got)
	}

	// The scheduler recreates it by applying the same revision: the agent
	// removes the zombie instead of skipping what the runtime calls running.
	again := waitAgentState(t, ra, name, "running in a new instance", func(st *persysv1.WorkloadStatus) bool {
		return st.GetState() == persysv1.ActualState_ACTUAL_STATE_RUNNING && st.GetRuntimeId() != first.GetRuntimeId()
	})
	if again.GetRevision() != first.GetRevision() {
		t.Fatalf("recreated at revision %d, want the same %d", again.GetRevision(), first.GetRevision())
	}
	e.waitHeartbeat(t, from, "a heartbeat with the new instance running", func(hb *persysv1.HeartbeatRequest) bool {
		w := findWorkload(hb.GetWorkloads(), name)
		return w.GetState() == persysv1.ActualState_ACTUAL_STATE_RUNNING && w.GetRuntimeId() == again.GetRuntimeId()
	})

	// The scheduler's delete of its workload names no uid; its cleanup of
	// an orphan (a workload it never placed there) does.
	ctx := context.Background()
	if _, err := e.s.Admin(t).DeleteWorkload(ctx, &persysv1.DeleteRequest{Name: name}); err != nil {
		t.Fatal(err)
	}
	waitAgentState(t, ra, name, "deleted", func(st *persysv1.WorkloadStatus) bool {
		return st.GetState() == persysv1.ActualState_ACTUAL_STATE_MISSING
	})
	stray := e.prefix + "-stray"
	apply(t, ra.client, &persysv1.ApplyWorkloadRequest{Name: stray, Uid: "uid-stray", Revision: 1, Spec: e.spec(100, 64*mib)})
	waitAgentState(t, ra, stray, "removed as an orphan", func(st *persysv1.WorkloadStatus) bool {
		return st.GetState() == persysv1.ActualState_ACTUAL_STATE_MISSING
	})
	if r, err := ra.client.DeleteWorkload(ctx, &persysv1.DeleteWorkloadRequest{Name: name}); err != nil || r.GetExisted() {
		t.Fatalf("second delete = %v, %v", r, err)
	}
	for _, c := range []struct {
		kind, result string
		want         float64
	}{{"orphan", "deleted", 1}, {"workload", "deleted", 1}, {"workload", "absent", 1}, {"orphan", "absent", 0}} {
		if got := metricValue(t, ra.registry, "persys_agent_deletes_total", map[string]string{"kind": c.kind, "result": c.result}); got != c.want {
			t.Errorf("deletes{kind=%s,result=%s} = %v, want %v", c.kind, c.result, got, c.want)
		}
	}
}

// skipUnlessCI skips a test whose precondition this machine lacks, but
// fails it when CI is set: CI must run every test.
func skipUnlessCI(t *testing.T, format string, args ...any) {
	t.Helper()
	need.Missing(t, format, args...)
}
