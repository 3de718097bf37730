package docker

import (
	"bytes"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/client"

	persysv1 "github.com/persys-dev/compute/api/persys/v1"
	"github.com/persys-dev/compute/internal/runtime"
	"github.com/persys-dev/compute/internal/testutil/need"
)

func TestParseStatState(t *testing.T) {
	tests := []struct {
		name    string
		stat    string
		want    byte
		wantErr bool
	}{
		{name: "sleeping", stat: "42 (hello) S 1 42 42 0", want: 'S'},
		{name: "zombie", stat: "42 (hello) Z 1 42", want: 'Z'},
		{name: "command with spaces and parens", stat: "7 (a (b) c) R 1", want: 'R'},
		{name: "no closing paren", stat: "7 (abc R 1", wantErr: true},
		{name: "nothing after command", stat: "7 (abc)", wantErr: true},
		{name: "empty", stat: "", wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parseStatState([]byte(tt.stat))
			if tt.wantErr {
				if err == nil {
					t.Fatalf("parseStatState(%q) = %q, want an error", tt.stat, got)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Fatalf("parseStatState(%q) = %q, %v; want %q", tt.stat, got, err, tt.want)
			}
		})
	}
}

func TestNamespaceInit(t *testing.T) {
	tests := []struct {
		name   string
		status string
		want   bool
	}{
		{name: "container init", status: "Name:\thello\nNSpid:\t17705\t1\n", want: true},
		{name: "host process", status: "Name:\tsleep\nNSpid:\t16575\n"},
		{name: "container child", status: "NSpid:\t17710\t7\n"},
		{name: "no NSpid line", status: "Name:\tx\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := namespaceInit([]byte(tt.status)); got != tt.want {
				t.Fatalf("namespaceInit = %v, want %v", got, tt.want)
			}
		})
	}
}

func TestJudgeProc(t *testing.T) {
	tests := []struct {
		name       string
		p          procInfo
		visible    bool
		wantAlive  bool
		wantDetail string
	}{
		{name: "running and owned", p: procInfo{exists: true, state: 'S', owned: true}, wantAlive: true},
		{name: "zombie", p: procInfo{exists: true, state: 'Z', owned: true}, wantDetail: "zombie"},
		{name: "dead", p: procInfo{exists: true, state: 'X', owned: true}, visible: true, wantDetail: "dead"},
		{name: "gone while visible", p: procInfo{}, visible: true, wantDetail: "gone"},
		{name: "not visible", p: procInfo{}, wantAlive: true, wantDetail: "not visible"},
		{name: "pid reused while visible", p: procInfo{exists: true, state: 'S'}, visible: true, wantDetail: "another process"},
		{name: "foreign pid not verifiable", p: procInfo{exists: true, state: 'Z'}, wantAlive: true, wantDetail: "not verifiable"},
		{name: "stopped process is alive", p: procInfo{exists: true, state: 'T', owned: true}, visible: true, wantAlive: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			alive, detail := judgeProc(tt.p, 42, tt.visible)
			if alive != tt.wantAlive || !strings.Contains(detail, tt.wantDetail) {
				t.Fatalf("judgeProc = %v, %q; want %v and a detail containing %q", alive, detail, tt.wantAlive, tt.wantDetail)
			}
		})
	}
}

func TestReadProc(t *testing.T) {
	const id = "491f98aa55e46622e25d52b741a46f75e2bb954a3e32e34336b7bd65e0c5468f"
	root := t.TempDir()
	write := func(pid int, files map[string]string) {
		dir := filepath.Join(root, strconv.Itoa(pid))
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		for name, body := range files {
			if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
	write(10, map[string]string{"stat": "10 (hello) S 9 10", "cgroup": "4:memory:/docker/" + id + "\n0::/docker/" + id + "\n"})
	write(11, map[string]string{"stat": "11 (hello) Z 9 11", "cgroup": "4:memory:/\n", "status": "NSpid:\t11\t1\n"})
	write(12, map[string]string{"stat": "12 (bash) S 1 12", "cgroup": "0::/user.slice\n", "status": "NSpid:\t12\n"})
	write(13, map[string]string{"stat": "13 (sleep) Z 12 13", "cgroup": "0::/\n", "status": "NSpid:\t13\n"})
	write(14, map[string]string{"stat": "garbage"})

	tests := []struct {
		name    string
		pid     int
		want    procInfo
		wantErr bool
	}{
		{name: "container process", pid: 10, want: procInfo{exists: true, state: 'S', owned: true}},
		{name: "container init as zombie", pid: 11, want: procInfo{exists: true, state: 'Z', owned: true}},
		{name: "other process", pid: 12, want: procInfo{exists: true, state: 'S'}},
		{name: "host zombie is not the container's", pid: 13, want: procInfo{exists: true, state: 'Z'}},
		{name: "missing", pid: 99, want: procInfo{}},
		{name: "malformed stat", pid: 14, wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := readProc(root, tt.pid, id)
			if tt.wantErr {
				if err == nil {
					t.Fatalf("readProc = %+v, want an error", got)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Fatalf("readProc = %+v, %v; want %+v", got, err, tt.want)
			}
		})
	}
}

// makeZombie turns the container's main process into a real zombie that
// the engine still reports running: it freezes the container's shim
// (SIGSTOP), so nothing reaps the process, then kills the process. The shim
// is resumed at cleanup (or by the returned func), which lets the engine
// see the exit. It needs root and the engine's processes visible; without
// them the test is skipped.
func makeZombie(t *testing.T, info container.InspectResponse) (resume func()) {
	t.Helper()
	if os.Geteuid() != 0 {
		skipUnlessCI(t, "making a zombie container needs root")
	}
	pid := info.State.Pid
	stat, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "stat"))
	if err != nil {
		skipUnlessCI(t, "container process %d not visible: %v", pid, err)
	}
	i := bytes.LastIndexByte(stat, ')')
	fields := strings.Fields(string(stat[i+1:]))
	ppid, err := strconv.Atoi(fields[1])
	if err != nil {
		t.Fatalf("parent of %d: %v", pid, err)
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
	eventually(t, 10*time.Second, "process becomes a zombie", func() (bool, string) {
		b, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "stat"))
		if err != nil {
			return false, err.Error()
		}
		s, err := parseStatState(b)
		return err == nil && s == 'Z', string(b)
	})
	return resume
}

func TestVerify(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ctx := t.Context()
	apply := func(prefix string) (string, *persysv1.WorkloadStatus) {
		name, uid := e.workload(prefix)
		st, _ := e.apply(runtime.Instance{Name: name, UID: uid, Revision: 1, Spec: e.spec(&persysv1.ContainerSpec{})})
		if st.GetState() != persysv1.ActualState_ACTUAL_STATE_RUNNING {
			t.Fatalf("apply %s = %v", name, st)
		}
		return name, st
	}

	t.Run("running container is alive", func(t *testing.T) {
		name, _ := apply("alive")
		alive, detail, err := e.rt.Verify(ctx, name)
		if err != nil || !alive {
			t.Fatalf("Verify = %v, %q, %v; want alive", alive, detail, err)
		}
	})

	t.Run("container stopped behind the runtime's back while listed running", func(t *testing.T) {
		name, st := apply("stopped")
		listed, err := e.rt.List(ctx)
		if err != nil {
			t.Fatal(err)
		}
		var cached *persysv1.WorkloadStatus
		for _, w := range listed {
			if w.GetName() == name {
				cached = w
			}
		}
		if cached.GetState() != persysv1.ActualState_ACTUAL_STATE_RUNNING {
			t.Fatalf("listed %s as %v, want RUNNING", name, cached)
		}
		if _, err := e.cli.ContainerKill(ctx, st.GetRuntimeId(), client.ContainerKillOptions{Signal: "KILL"}); err != nil {
			t.Fatal(err)
		}
		eventually(t, 20*time.Second, "Verify reports the killed container dead", func() (bool, string) {
			alive, detail, err := e.rt.Verify(ctx, name)
			if err != nil {
				return false, err.Error()
			}
			return !alive && strings.Contains(detail, "not running"), detail
		})
	})

	t.Run("unknown workload is not alive", func(t *testing.T) {
		name, _ := e.workload("none")
		alive, detail, err := e.rt.Verify(ctx, name)
		if err != nil || alive || detail != "no container" {
			t.Fatalf("Verify = %v, %q, %v; want dead with no container", alive, detail, err)
		}
		if _, _, err := e.rt.Verify(ctx, ""); runtime.ReasonOf(err) != persysv1.FailureReason_FAILURE_REASON_INVALID_SPEC {
			t.Fatalf("Verify of an empty name: %v", err)
		}
	})

	t.Run("zombie process of a container the engine calls running", func(t *testing.T) {
		name, st := apply("zombie")
		infoRes, err := e.cli.ContainerInspect(ctx, st.GetRuntimeId(), client.ContainerInspectOptions{})
		info := infoRes.Container
		if err != nil {
			t.Fatal(err)
		}
		resume := makeZombie(t, info)
		got, err := e.rt.Status(ctx, name)
		if err != nil || got.GetState() != persysv1.ActualState_ACTUAL_STATE_RUNNING {
			t.Fatalf("Status of the zombie = %v, %v; want the engine to still call it RUNNING", got, err)
		}
		alive, detail, err := e.rt.Verify(ctx, name)
		if err != nil || alive || !strings.Contains(detail, "zombie") {
			t.Fatalf("Verify = %v, %q, %v; want dead as a zombie", alive, detail, err)
		}
		resume()
		eventually(t, 20*time.Second, "engine sees the exit once the shim resumes", func() (bool, string) {
			got, err := e.rt.Status(ctx, name)
			if err != nil {
				return false, err.Error()
			}
			return got.GetState() != persysv1.ActualState_ACTUAL_STATE_RUNNING, got.String()
		})
	})
}

// skipUnlessCI skips a test whose precondition this machine lacks, but
// fails it when CI is set: CI must run every test.
func skipUnlessCI(t *testing.T, format string, args ...any) {
	t.Helper()
	need.Missing(t, format, args...)
}
