package docker

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"

	"github.com/moby/moby/client"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/moby/moby/api/types/container"

	persysv1 "github.com/persys-dev/compute/api/persys/v1"
	"github.com/persys-dev/compute/internal/runtime"
)

// procRoot is where the agent sees the host's processes.
const procRoot = "/proc"

// pidsVisible records, per engine (its daemon host), that the agent has
// seen one of the engine's container processes under procRoot: from then
// on a container process missing there is gone, not merely out of sight
// (another PID namespace, a remote engine).
var pidsVisible sync.Map // daemon host → struct{}

// Verify checks that the newest container of the workload is alive: the
// engine must call it running with a process id, and when the agent can
// see the engine's processes under /proc that process must exist, belong
// to the container and not be a zombie. An engine whose container process
// died without the engine noticing (a hung shim) still reports the
// container running; Verify reports it dead. See runtime.Verifier.
func (r *Runtime) Verify(ctx context.Context, name string) (bool, string, error) {
	if name == "" {
		return false, "", invalid("name: empty")
	}
	existing, err := r.listContainers(ctx, name, "")
	if err != nil {
		return false, "", runtime.Fail(persysv1.FailureReason_FAILURE_REASON_RUNTIME_ERROR, err, "list containers of %s", name)
	}
	for _, c := range newestFirst(existing) {
		res, err := r.cli.ContainerInspect(ctx, c.ID, client.ContainerInspectOptions{})
		if cerrdefs.IsNotFound(err) {
			continue
		}
		if err != nil {
			return false, "", runtime.Fail(persysv1.FailureReason_FAILURE_REASON_RUNTIME_ERROR, err, "inspect container %s", containerLabel(c))
		}
		return r.verifyInspect(res.Container)
	}
	return false, "no container", nil
}

func (r *Runtime) verifyInspect(info container.InspectResponse) (bool, string, error) {
	if info.State == nil {
		return false, "engine returned no container state", nil
	}
	s := info.State
	switch {
	case !s.Running:
		return false, fmt.Sprintf("container %s is %s, not running", shortID(info.ID), s.Status), nil
	case s.Pid <= 0:
		return false, fmt.Sprintf("engine reports container %s running without a process", shortID(info.ID)), nil
	}
	p, err := readProc(procRoot, s.Pid, info.ID)
	if err != nil {
		return false, "", runtime.Fail(persysv1.FailureReason_FAILURE_REASON_RUNTIME_ERROR, err, "read process %d of container %s", s.Pid, shortID(info.ID))
	}
	host := r.cli.DaemonHost()
	if p.exists && p.owned {
		pidsVisible.Store(host, struct{}{})
	}
	_, visible := pidsVisible.Load(host)
	alive, detail := judgeProc(p, s.Pid, visible)
	return alive, detail, nil
}

// procInfo is what /proc tells about a container's main process.
type procInfo struct {
	// exists: /proc/<pid>/stat could be read.
	exists bool
	// state is the one-letter process state of /proc/<pid>/stat.
	state byte
	// owned: the process is the container's, as its cgroup names the
	// container, or (for a zombie, whose cgroup is already gone) it is
	// the init process of a PID namespace.
	owned bool
}

// readProc reads /proc/<pid> under root. A missing process is not an error.
func readProc(root string, pid int, containerID string) (procInfo, error) {
	dir := filepath.Join(root, strconv.Itoa(pid))
	stat, err := os.ReadFile(filepath.Join(dir, "stat"))
	if errors.Is(err, fs.ErrNotExist) || errors.Is(err, syscall.ESRCH) {
		return procInfo{}, nil
	}
	if err != nil {
		return procInfo{}, fmt.Errorf("read stat: %w", err)
	}
	state, err := parseStatState(stat)
	if err != nil {
		return procInfo{}, fmt.Errorf("%s: %w", filepath.Join(dir, "stat"), err)
	}
	p := procInfo{exists: true, state: state}
	// The process may end between the reads: missing files below just
	// leave it unowned.
	if cg, err := os.ReadFile(filepath.Join(dir, "cgroup")); err == nil && containerID != "" &&
		bytes.Contains(cg, []byte(containerID)) {
		p.owned = true
	}
	if !p.owned && state == 'Z' {
		if st, err := os.ReadFile(filepath.Join(dir, "status")); err == nil && namespaceInit(st) {
			p.owned = true
		}
	}
	return p, nil
}

// parseStatState returns the state field of /proc/<pid>/stat: the first
// field after the command, which is in parentheses and may itself hold
// spaces and parentheses.
func parseStatState(stat []byte) (byte, error) {
	i := bytes.LastIndexByte(stat, ')')
	if i < 0 || i+2 >= len(stat) || stat[i+1] != ' ' {
		return 0, errors.New("malformed stat: no state after the command")
	}
	return stat[i+2], nil
}

// namespaceInit reports whether /proc/<pid>/status shows a process that is
// PID 1 of a nested PID namespace (NSpid with at least two ids, the last 1).
func namespaceInit(status []byte) bool {
	for _, line := range bytes.Split(status, []byte("\n")) {
		rest, ok := bytes.CutPrefix(line, []byte("NSpid:"))
		if !ok {
			continue
		}
		ids := bytes.Fields(rest)
		return len(ids) >= 2 && string(ids[len(ids)-1]) == "1"
	}
	return false
}

// judgeProc decides whether a container's process is alive. visible says
// that the agent sees the engine's processes, so absence means death.
func judgeProc(p procInfo, pid int, visible bool) (alive bool, detail string) {
	switch {
	case !p.exists && visible:
		return false, fmt.Sprintf("process %d is gone", pid)
	case !p.exists:
		return true, "process not visible from the agent"
	case p.owned && p.state == 'Z':
		return false, fmt.Sprintf("process %d is a zombie (state Z)", pid)
	case p.owned && p.state == 'X':
		return false, fmt.Sprintf("process %d is dead (state X)", pid)
	case p.owned:
		return true, ""
	case visible:
		return false, fmt.Sprintf("pid %d now belongs to another process", pid)
	default:
		return true, "process not verifiable from the agent"
	}
}

var _ runtime.Verifier = (*Runtime)(nil)
