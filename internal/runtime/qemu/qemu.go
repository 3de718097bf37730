// Package qemu is the runtime for workloads of type VM: one QEMU process per
// workload, daemonized and driven over QMP, with qcow2 disks in the node's
// storage pools and a NoCloud cloud-init seed.
//
// Every VM has a state folder <StateDir>/<workload>/ holding vm.json (name,
// uid, revision, node, spec hash, desired state and the disks it created),
// the pidfile, the QMP and guest-agent sockets, the seed ISO and the serial
// console log. That folder is the runtime's ground truth: a new Runtime on
// the same StateDir (an agent restart) re-adopts running VMs by pidfile and
// QMP and never restarts a healthy one. Disks live in
// <pool>/persys/<node>/<cluster>/<workload>/<disk>.qcow2 (without <node>
// when Config.NodeID is empty, without <cluster>, the cluster id cut to 12
// characters, without Config.Cluster) and survive new revisions of the
// same workload; Delete removes them unless the spec's disk_retain is
// RETAIN. The QEMU process carries the node, cluster and workload in its
// environment (PERSYS_NODE, PERSYS_CLUSTER, PERSYS_WORKLOAD).
//
// Networking: mode "user" (QEMU user networking, port forwards on the host,
// the guest at 10.0.2.15) or "bridge" (-netdev bridge through
// qemu-bridge-helper, which needs "allow <bridge>" in /etc/qemu/bridge.conf).
// The guest's addresses come from a QEMU guest agent when one answers on
// the org.qemu.guest_agent.0 channel, otherwise from the mode. The kernel
// command line of kernel_boot is passed as given (add console=ttyS0 to see
// the guest's console in the serial log), except that without a panic=
// setting the runtime appends panic=1; QEMU runs with -no-reboot, so a guest
// that panics or reboots ends its QEMU (see boot.go for boot failures).
//
// The serial console goes to serial.log in the state folder (QEMU appends
// to it); the runtime keeps it under Config.SerialLogCap by cutting it to
// its newest half whenever it checks (Status, List, Logs, Apply). Bytes the
// guest writes in the instant of a cut may be lost.
//
// Callers create a Runtime with New and use it through runtime.Runtime,
// runtime.Logger and runtime.Verifier; Accel reports "kvm" or "tcg" for
// NodeCapabilities.vm_accel. Errors of Apply are *runtime.Failure values.
// Secret values (a generated login password) go only into the seed ISO
// (mode 0600) and are never logged.
package qemu

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/moby/locker"

	"google.golang.org/protobuf/types/known/timestamppb"

	persysv1 "github.com/persys-dev/compute/api/persys/v1"
	"github.com/persys-dev/compute/internal/cloudinit"
	"github.com/persys-dev/compute/internal/failpoint"
	"github.com/persys-dev/compute/internal/runtime"
)

// Files of a VM's state folder.
const (
	recordFile = "vm.json"
	pidFile    = "qemu.pid"
	qmpSock    = "qmp.sock"
	qgaSock    = "qga.sock"
	serialLog  = "serial.log"
	errFile    = "qemu.err"
)

// DefaultSerialLogCap is the serial log cap when Config.SerialLogCap is 0.
const DefaultSerialLogCap = 1 << 20

// Config configures a Runtime.
type Config struct {
	// NodeID is written into every VM's record; List, Status and Delete
	// only see VMs of this node.
	NodeID string
	// Cluster, when set, is written into every VM's record and names a
	// folder of its disks; List, Status and Delete only see VMs it owns
	// (runtime.Cluster.Owns).
	Cluster *runtime.Cluster
	// StateDir holds one folder per VM. Required; created if missing.
	StateDir string
	// Pools maps a storage pool's name to its directory.
	Pools map[string]string
	// QEMUBinary defaults to qemu-system-x86_64; QEMUImg to qemu-img.
	QEMUBinary string
	QEMUImg    string
	// Accel is "kvm" or "tcg"; "" detects it with DetectAccel.
	Accel string
	// Logger receives one line per decision. Nil: slog.Default().
	Logger *slog.Logger
	// SerialLogCap bounds each VM's serial log in bytes. 0: 1 MiB.
	SerialLogCap int64
	// BootCheck is the longest Apply watches a started VM for a boot
	// failure (QEMU exiting, a kernel panic on the console). 0:
	// DefaultBootCheck; negative: no watch.
	BootCheck time.Duration
	// BootWindow: a QEMU that exits within it of its start failed to boot
	// (VM_BOOT_FAILED); a later exit is a RUNTIME_ERROR. 0:
	// DefaultBootWindow.
	BootWindow time.Duration
}

// Runtime runs VM workloads with QEMU. It is safe for concurrent use; calls
// that change one workload are serialized.
type Runtime struct {
	cfg   Config
	accel string
	log   *slog.Logger
	locks locker.Locker // serializes calls per workload name

	gaMu sync.Mutex
	ga   map[string]gaState // guest agent answers and back-off, by workload

	busyMu sync.Mutex
	busy   map[string]int // workloads an Apply is working on

	downMu sync.Mutex
	down   map[string]downState // when a VM's QEMU was first seen gone, by workload
}

type gaState struct {
	next  time.Time
	addrs []string
}

// New checks cfg and returns a Runtime. It does not start anything.
func New(cfg Config) (*Runtime, error) {
	if cfg.StateDir == "" {
		return nil, errors.New("qemu runtime: StateDir is required")
	}
	if !filepath.IsAbs(cfg.StateDir) {
		abs, err := filepath.Abs(cfg.StateDir)
		if err != nil {
			return nil, fmt.Errorf("qemu runtime: StateDir: %w", err)
		}
		cfg.StateDir = abs
	}
	if err := os.MkdirAll(cfg.StateDir, 0o700); err != nil {
		return nil, fmt.Errorf("qemu runtime: StateDir: %w", err)
	}
	pools := make(map[string]string, len(cfg.Pools))
	for name, dir := range cfg.Pools {
		if name == "" {
			return nil, errors.New("qemu runtime: Pools: a pool has an empty name")
		}
		if !filepath.IsAbs(dir) {
			return nil, fmt.Errorf("qemu runtime: Pools[%q]: %q is not an absolute path", name, dir)
		}
		st, err := os.Stat(dir)
		if err != nil || !st.IsDir() {
			return nil, fmt.Errorf("qemu runtime: Pools[%q]: %q is not a directory", name, dir)
		}
		pools[name] = filepath.Clean(dir)
	}
	cfg.Pools = pools
	if cfg.QEMUBinary == "" {
		cfg.QEMUBinary = "qemu-system-x86_64"
	}
	if cfg.QEMUImg == "" {
		cfg.QEMUImg = "qemu-img"
	}
	switch cfg.Accel {
	case "":
		cfg.Accel = DetectAccel()
	case "kvm", "tcg":
	default:
		return nil, fmt.Errorf("qemu runtime: Accel %q must be \"\", \"kvm\" or \"tcg\"", cfg.Accel)
	}
	if cfg.SerialLogCap < 0 {
		return nil, fmt.Errorf("qemu runtime: SerialLogCap %d is negative", cfg.SerialLogCap)
	}
	if cfg.SerialLogCap == 0 {
		cfg.SerialLogCap = DefaultSerialLogCap
	}
	if cfg.SerialLogCap < 4096 {
		cfg.SerialLogCap = 4096
	}
	if cfg.BootCheck == 0 {
		cfg.BootCheck = DefaultBootCheck
	}
	if cfg.BootWindow < 0 {
		return nil, fmt.Errorf("qemu runtime: BootWindow %s is negative", cfg.BootWindow)
	}
	if cfg.BootWindow == 0 {
		cfg.BootWindow = DefaultBootWindow
	}
	log := cfg.Logger
	if log == nil {
		log = slog.Default()
	}
	return &Runtime{
		cfg:   cfg,
		accel: cfg.Accel,
		log:   log.With("runtime", "qemu", "node", cfg.NodeID),
		ga:    map[string]gaState{},
		busy:  map[string]int{},
		down:  map[string]downState{},
	}, nil
}

// Accel reports the accelerator VMs run with: "kvm" or "tcg".
func (r *Runtime) Accel() string { return r.accel }

// Type reports WORKLOAD_TYPE_VM.
func (r *Runtime) Type() persysv1.WorkloadType { return persysv1.WorkloadType_WORKLOAD_TYPE_VM }

// record is vm.json: what the runtime made for one workload.
type record struct {
	Name        string     `json:"name"`
	UID         string     `json:"uid"`
	Revision    uint64     `json:"revision"`
	Node        string     `json:"node"`
	Cluster     string     `json:"cluster,omitempty"`
	SpecHash    string     `json:"specHash"`
	Desired     string     `json:"desired"` // "running" or "stopped"
	Accel       string     `json:"accel"`
	StopSeconds int        `json:"stopTimeoutSeconds"`
	Retain      bool       `json:"retainDisks"`
	Disks       []diskPlan `json:"disks"`
	Addresses   []string   `json:"addresses,omitempty"`
	Forwards    []string   `json:"portForwards,omitempty"`
	// StartedAt is when QEMU was last started, SerialOffset the serial
	// log's size then: boot failure checks look at what came after.
	StartedAt    time.Time `json:"startedAt,omitzero"`
	SerialOffset int64     `json:"serialOffset,omitempty"`
	UpdatedAt    time.Time `json:"updatedAt"`
	// LivenessStopped is the runtime id (pid) of the instance StopInstance
	// stopped after a failed liveness check; the next start clears it.
	LivenessStopped string `json:"livenessStopped,omitempty"`
}

const (
	desiredRunning = "running"
	desiredStopped = "stopped"
)

func (r *Runtime) stateDir(name string) string { return filepath.Join(r.cfg.StateDir, name) }

func (r *Runtime) loadRecord(name string) (*record, error) {
	if !nameRe.MatchString(name) {
		return nil, errNoRecord
	}
	b, err := os.ReadFile(filepath.Join(r.stateDir(name), recordFile))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, errNoRecord
	}
	if err != nil {
		return nil, err
	}
	var rec record
	if err := json.Unmarshal(b, &rec); err != nil {
		return nil, fmt.Errorf("%s: %w", recordFile, err)
	}
	if rec.Name != name {
		return nil, fmt.Errorf("%s: names %q, not %q", recordFile, rec.Name, name)
	}
	if r.cfg.NodeID != "" && rec.Node != r.cfg.NodeID || !r.cfg.Cluster.Owns(rec.Cluster) {
		return nil, errNoRecord
	}
	return &rec, nil
}

func (r *Runtime) saveRecord(rec *record) error {
	rec.UpdatedAt = time.Now().UTC()
	b, err := json.MarshalIndent(rec, "", "  ")
	if err != nil {
		return err
	}
	sd := r.stateDir(rec.Name)
	tmp := filepath.Join(sd, recordFile+".tmp")
	if err := os.WriteFile(tmp, b, 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, filepath.Join(sd, recordFile))
}

// pid returns the VM's QEMU pid and whether it is alive.
func (r *Runtime) pid(rec *record) (int, bool) {
	pf := filepath.Join(r.stateDir(rec.Name), pidFile)
	pid, err := readPid(pf)
	if err != nil {
		return 0, false
	}
	return pid, alive(pid, pf)
}

func desiredOf(spec *persysv1.WorkloadSpec) string {
	if spec.GetDesiredState() == persysv1.DesiredState_DESIRED_STATE_STOPPED {
		return desiredStopped
	}
	return desiredRunning
}

// Apply makes the instance's revision run (or exist powered off). See
// runtime.Runtime.
func (r *Runtime) Apply(ctx context.Context, inst runtime.Instance) (*persysv1.WorkloadStatus, bool, error) {
	p, err := r.buildPlan(inst)
	if err != nil {
		return nil, false, err
	}
	desired := desiredOf(inst.Spec)
	if r.cfg.Cluster != nil && r.cfg.Cluster.ID() == "" {
		return nil, false, runtime.Fail(persysv1.FailureReason_FAILURE_REASON_RUNTIME_ERROR, nil, "apply %s: the agent does not know its cluster id yet", inst.Name)
	}
	r.locks.Lock(inst.Name)
	defer r.locks.Unlock(inst.Name)
	r.setBusy(inst.Name, 1)
	defer r.setBusy(inst.Name, -1)
	log := r.log.With("workload", inst.Name, "uid", inst.UID, "revision", inst.Revision)

	old, err := r.ownRecord(inst.Name)
	if err != nil {
		return nil, false, err
	}
	if old != nil && old.UID == inst.UID && old.Revision == inst.Revision {
		if st, skipped, done, err := r.applySameRevision(ctx, log, old, desired); done || err != nil {
			return st, skipped, err
		}
	} else if old != nil {
		if old, err = r.retire(ctx, log, old, inst.UID); err != nil {
			return nil, false, err
		}
	}
	if old != nil {
		keepDiskPaths(p, old)
	}
	if err := os.MkdirAll(r.stateDir(inst.Name), 0o700); err != nil {
		return nil, false, runtime.Fail(persysv1.FailureReason_FAILURE_REASON_STORAGE, err, "create state folder of VM %s", inst.Name)
	}
	rec := r.newRecord(inst, p, desired)
	if old != nil && !old.Retain {
		removeDroppedDisks(log, old, p)
	}
	// The record goes first, so that whatever this Apply creates is found
	// (and cleaned up by Delete) even when a later step fails.
	if err := r.saveRecord(rec); err != nil {
		return nil, false, runtime.Fail(persysv1.FailureReason_FAILURE_REASON_RUNTIME_ERROR, err, "save the state of VM %s", inst.Name)
	}
	if err := r.prepareAndStart(ctx, log, p, rec); err != nil {
		return nil, false, err
	}
	return r.statusOf(ctx, rec), false, nil
}

// ownRecord reads the workload's record; nil when there is none. A state
// folder with a record of another node or cluster (or a broken one) is an
// error: never touch it.
func (r *Runtime) ownRecord(name string) (*record, error) {
	old, err := r.loadRecord(name)
	if err == nil {
		return old, nil
	}
	if !errors.Is(err, errNoRecord) {
		return nil, runtime.Fail(persysv1.FailureReason_FAILURE_REASON_RUNTIME_ERROR, err, "read the state of VM %s", name)
	}
	if _, statErr := os.Stat(r.stateDir(name)); statErr == nil && (r.cfg.NodeID != "" || r.cfg.Cluster != nil) {
		if b, rerr := os.ReadFile(filepath.Join(r.stateDir(name), recordFile)); rerr == nil && len(b) > 0 {
			return nil, runtime.Fail(persysv1.FailureReason_FAILURE_REASON_RUNTIME_ERROR, nil, "state folder %s belongs to another node or cluster", r.stateDir(name))
		}
	}
	return nil, nil
}

// applySameRevision handles a VM that already has the instance's uid and
// revision. done reports that Apply is finished (with st, skipped, err);
// otherwise the VM must be started again from its plan.
func (r *Runtime) applySameRevision(ctx context.Context, log *slog.Logger, old *record, desired string) (st *persysv1.WorkloadStatus, skipped, done bool, err error) {
	pid, up := r.pid(old)
	switch {
	case desired == desiredRunning && up:
		st := r.statusOf(ctx, old)
		if st.GetState() == persysv1.ActualState_ACTUAL_STATE_RUNNING {
			if old.Desired != desiredRunning {
				old.Desired = desiredRunning
				if err := r.saveRecord(old); err != nil {
					return nil, false, true, runtime.Fail(persysv1.FailureReason_FAILURE_REASON_RUNTIME_ERROR, err, "save the state of VM %s", old.Name)
				}
			}
			return st, true, true, nil
		}
		log.Warn("VM process is up but not running; restarting it", "pid", pid, "qmp", st.GetDetails()["qmp"])
		r.kill(ctx, old, pid)
	case desired == desiredStopped && !up && old.Desired == desiredStopped:
		return r.statusOf(ctx, old), true, true, nil
	case desired == desiredStopped:
		if up {
			how := r.stop(ctx, old, pid, time.Duration(old.StopSeconds)*time.Second)
			log.Info("VM stopped", "pid", pid, "how", how)
		}
		old.Desired = desiredStopped
		if err := r.saveRecord(old); err != nil {
			return nil, false, true, runtime.Fail(persysv1.FailureReason_FAILURE_REASON_RUNTIME_ERROR, err, "save the state of VM %s", old.Name)
		}
		return r.statusOf(ctx, old), false, true, nil
	}
	return nil, false, false, nil
}

// retire makes way for a new revision: the VM of another uid is removed
// (nil is returned), one of an older revision of the same uid is stopped
// and its record returned, so its disks carry over.
func (r *Runtime) retire(ctx context.Context, log *slog.Logger, old *record, uid string) (*record, error) {
	pid, up := r.pid(old)
	if old.UID != uid {
		if err := r.remove(ctx, log, old); err != nil {
			return nil, err
		}
		log.Info("removed VM of another uid", "old_uid", old.UID, "old_revision", old.Revision)
		return nil, nil
	}
	if up {
		how := r.stop(ctx, old, pid, time.Duration(old.StopSeconds)*time.Second)
		log.Info("stopped VM of an older revision", "old_revision", old.Revision, "pid", pid, "how", how)
	}
	return old, nil
}

// keepDiskPaths keeps each disk where it is across revisions, wherever an
// older agent (before cluster folders) put it.
func keepDiskPaths(p *plan, old *record) {
	for i := range p.disks {
		for _, d := range old.Disks {
			if d.Name == p.disks[i].Name && d.Kind != diskISO && p.disks[i].Kind != diskISO {
				p.disks[i].Path = d.Path
			}
		}
	}
}

// newRecord is what Apply records of the instance's plan.
func (r *Runtime) newRecord(inst runtime.Instance, p *plan, desired string) *record {
	rec := &record{
		Name:        inst.Name,
		UID:         inst.UID,
		Revision:    inst.Revision,
		Node:        r.cfg.NodeID,
		Cluster:     r.cfg.Cluster.ID(),
		SpecHash:    p.hash,
		Desired:     desired,
		Accel:       p.accel,
		StopSeconds: int(p.stopTimeout / time.Second),
		Retain:      p.retain,
		Disks:       p.disks,
		Addresses:   modeAddresses(p),
	}
	for _, n := range p.nets {
		for _, f := range n.Forwards {
			rec.Forwards = append(rec.Forwards, f.String())
		}
	}
	return rec
}

// removeDroppedDisks removes the disks of the previous revision that the
// new one dropped.
func removeDroppedDisks(log *slog.Logger, old *record, p *plan) {
	keep := map[string]bool{}
	for _, d := range p.disks {
		keep[d.Path] = true
	}
	for _, d := range old.Disks {
		if d.Kind != diskISO && !keep[d.Path] {
			if err := os.Remove(d.Path); err != nil && !errors.Is(err, fs.ErrNotExist) {
				log.Warn("remove disk dropped by the new revision", "disk", d.Name, "error", err)
			}
		}
	}
}

// prepareAndStart makes the disks and the cloud-init seed and, when the
// VM is desired running, starts it (checking its boot when configured).
func (r *Runtime) prepareAndStart(ctx context.Context, log *slog.Logger, p *plan, rec *record) error {
	if err := r.ensureDisks(ctx, log, p); err != nil {
		return err
	}
	seed, err := cloudinit.BuildSeed(ctx, r.stateDir(rec.Name), p.seed)
	if err != nil {
		if errors.Is(err, cloudinit.ErrInvalid) {
			return runtime.Fail(persysv1.FailureReason_FAILURE_REASON_INVALID_SPEC, nil, "%s", strings.TrimPrefix(err.Error(), cloudinit.ErrInvalid.Error()+": "))
		}
		return runtime.Fail(persysv1.FailureReason_FAILURE_REASON_RUNTIME_ERROR, err, "build the cloud-init seed of VM %s", rec.Name)
	}
	if rec.Desired != desiredRunning {
		log.Info("VM prepared, not started (desired stopped)", "spec_hash", p.hash)
		return nil
	}
	pid, err := r.start(ctx, p, rec, seed)
	if err != nil {
		return err
	}
	failpoint.Inject(failpoint.QEMUAfterProcessStart)
	if r.cfg.BootCheck > 0 {
		if err := r.bootCheck(ctx, rec, pid); err != nil {
			log.Warn("VM did not boot", "pid", pid, "error", err)
			return err
		}
	}
	log.Info("VM started", "pid", pid, "accel", p.accel, "vcpus", p.vcpus, "memory_mib", p.memMiB, "spec_hash", p.hash)
	return nil
}

func (r *Runtime) setBusy(name string, d int) {
	r.busyMu.Lock()
	defer r.busyMu.Unlock()
	r.busy[name] += d
	if r.busy[name] <= 0 {
		delete(r.busy, name)
	}
}

func (r *Runtime) isBusy(name string) bool {
	r.busyMu.Lock()
	defer r.busyMu.Unlock()
	return r.busy[name] > 0
}

// start launches QEMU for rec and waits until QMP answers.
func (r *Runtime) start(ctx context.Context, p *plan, rec *record, seed string) (int, error) {
	sd := r.stateDir(rec.Name)
	for _, f := range []string{pidFile, qmpSock, qgaSock} {
		if err := os.Remove(filepath.Join(sd, f)); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return 0, runtime.Fail(persysv1.FailureReason_FAILURE_REASON_RUNTIME_ERROR, err, "clean state folder of VM %s", rec.Name)
		}
	}
	r.capSerial(rec.Name)
	args, err := r.qemuArgs(rec.Name, p, sd, seed)
	if err != nil {
		return 0, err
	}
	rec.StartedAt, rec.SerialOffset = time.Now().UTC(), 0
	if st, err := os.Stat(filepath.Join(sd, serialLog)); err == nil {
		rec.SerialOffset = st.Size()
	}
	if err := r.saveRecord(rec); err != nil {
		return 0, runtime.Fail(persysv1.FailureReason_FAILURE_REASON_RUNTIME_ERROR, err, "save the state of VM %s", rec.Name)
	}
	errOut, err := os.OpenFile(filepath.Join(sd, errFile), os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o600)
	if err != nil {
		return 0, runtime.Fail(persysv1.FailureReason_FAILURE_REASON_RUNTIME_ERROR, err, "open %s", errFile)
	}
	defer errOut.Close()
	sctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	// The foreground QEMU exits once the daemon is set up; the daemon
	// outlives the context (and the agent).
	cmd := exec.CommandContext(sctx, r.cfg.QEMUBinary, args...)
	cmd.Dir = sd
	// Whose process it is, for operators (/proc/<pid>/environ); the
	// runtime itself finds it by its pidfile.
	cmd.Env = append(os.Environ(), "PERSYS_NODE="+r.cfg.NodeID, "PERSYS_CLUSTER="+rec.Cluster, "PERSYS_WORKLOAD="+rec.Name)
	cmd.Stdout, cmd.Stderr = errOut, errOut
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Run(); err != nil {
		msg := strings.TrimSpace(tailOf(filepath.Join(sd, errFile), 2048))
		reason := persysv1.FailureReason_FAILURE_REASON_VM_BOOT_FAILED
		switch {
		case strings.Contains(msg, "host forwarding"):
			// QEMU could not bind a forwarded host port: it is taken.
			reason = persysv1.FailureReason_FAILURE_REASON_PORT_CONFLICT
		case strings.Contains(msg, "bridge helper") || strings.Contains(msg, "netdev"):
			reason = persysv1.FailureReason_FAILURE_REASON_NETWORK
		}
		var ee *exec.Error
		if errors.As(err, &ee) {
			reason = persysv1.FailureReason_FAILURE_REASON_RUNTIME_ERROR
		}
		return 0, runtime.Fail(reason, err, "start QEMU for VM %s: %s", rec.Name, msg)
	}
	pid, err := readPid(filepath.Join(sd, pidFile))
	if err != nil {
		return 0, runtime.Fail(persysv1.FailureReason_FAILURE_REASON_VM_BOOT_FAILED, err, "QEMU for VM %s wrote no pidfile", rec.Name)
	}
	deadline := time.Now().Add(15 * time.Second)
	for {
		st, err := qmpStatus(ctx, filepath.Join(sd, qmpSock))
		if err == nil {
			if st == "guest-panicked" || st == "internal-error" {
				return pid, runtime.Fail(persysv1.FailureReason_FAILURE_REASON_VM_BOOT_FAILED, nil, "VM %s is %s right after start", rec.Name, st)
			}
			return pid, nil
		}
		if !alive(pid, filepath.Join(sd, pidFile)) {
			return 0, runtime.Fail(persysv1.FailureReason_FAILURE_REASON_VM_BOOT_FAILED, err, "QEMU for VM %s exited right after start: %s", rec.Name, strings.TrimSpace(tailOf(filepath.Join(sd, errFile), 2048)))
		}
		if time.Now().After(deadline) {
			return pid, runtime.Fail(persysv1.FailureReason_FAILURE_REASON_VM_BOOT_FAILED, err, "QMP of VM %s does not answer", rec.Name)
		}
		select {
		case <-ctx.Done():
			return pid, runtime.Fail(persysv1.FailureReason_FAILURE_REASON_RUNTIME_ERROR, ctx.Err(), "wait for QMP of VM %s", rec.Name)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// waitGone polls until pid is gone or d passed.
func waitGone(ctx context.Context, pid int, pidfile string, d time.Duration) bool {
	deadline := time.Now().Add(d)
	t := time.NewTicker(100 * time.Millisecond)
	defer t.Stop()
	for {
		if !alive(pid, pidfile) {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
		select {
		case <-ctx.Done():
			return !alive(pid, pidfile)
		case <-t.C:
		}
	}
}

// stop powers the VM off: ACPI power button, then after timeout a QMP quit,
// then SIGKILL. It returns how the VM went down.
func (r *Runtime) stop(ctx context.Context, rec *record, pid int, timeout time.Duration) string {
	if timeout <= 0 {
		timeout = defaultStop
	}
	sd := r.stateDir(rec.Name)
	pf := filepath.Join(sd, pidFile)
	if _, err := qmpRun(ctx, filepath.Join(sd, qmpSock), "system_powerdown", nil); err == nil {
		if waitGone(ctx, pid, pf, timeout) {
			return "acpi"
		}
	}
	if r.kill(ctx, rec, pid) {
		return "hard"
	}
	return "failed"
}

// kill ends QEMU at once: QMP quit, then SIGKILL.
func (r *Runtime) kill(ctx context.Context, rec *record, pid int) bool {
	sd := r.stateDir(rec.Name)
	pf := filepath.Join(sd, pidFile)
	if !alive(pid, pf) {
		return true
	}
	ctx = context.WithoutCancel(ctx)
	if _, err := qmpRun(ctx, filepath.Join(sd, qmpSock), "quit", nil); err == nil {
		if waitGone(ctx, pid, pf, 5*time.Second) {
			return true
		}
	}
	if alive(pid, pf) {
		_ = syscall.Kill(pid, syscall.SIGKILL)
	}
	return waitGone(ctx, pid, pf, 10*time.Second)
}

// remove kills the VM and deletes its state and (unless retained) disks.
func (r *Runtime) remove(ctx context.Context, log *slog.Logger, rec *record) error {
	if pid, up := r.pid(rec); up {
		if !r.kill(ctx, rec, pid) {
			return runtime.Fail(persysv1.FailureReason_FAILURE_REASON_RUNTIME_ERROR, nil, "QEMU pid %d of VM %s does not die", pid, rec.Name)
		}
	}
	if !rec.Retain {
		dirs := map[string]bool{}
		for _, d := range rec.Disks {
			if d.Kind == diskISO {
				continue
			}
			if err := os.Remove(d.Path); err != nil && !errors.Is(err, fs.ErrNotExist) {
				return runtime.Fail(persysv1.FailureReason_FAILURE_REASON_STORAGE, err, "remove disk %s of VM %s", d.Name, rec.Name)
			}
			dirs[filepath.Dir(d.Path)] = true
		}
		for d := range dirs {
			_ = os.Remove(d) // only when empty
		}
	} else if len(rec.Disks) > 0 {
		log.Info("kept the VM's disks (retain)", "workload", rec.Name)
	}
	if err := os.RemoveAll(r.stateDir(rec.Name)); err != nil {
		return runtime.Fail(persysv1.FailureReason_FAILURE_REASON_RUNTIME_ERROR, err, "remove state folder of VM %s", rec.Name)
	}
	r.gaMu.Lock()
	delete(r.ga, rec.Name)
	r.gaMu.Unlock()
	r.downMu.Lock()
	delete(r.down, rec.Name)
	r.downMu.Unlock()
	return nil
}

// Delete kills the workload's VM and removes its state and disks (unless
// retained). See runtime.Runtime.
func (r *Runtime) Delete(ctx context.Context, name, uid string) (bool, error) {
	r.locks.Lock(name)
	defer r.locks.Unlock(name)
	rec, err := r.loadRecord(name)
	if errors.Is(err, errNoRecord) {
		return false, nil
	}
	if err != nil {
		return false, runtime.Fail(persysv1.FailureReason_FAILURE_REASON_RUNTIME_ERROR, err, "read the state of VM %s", name)
	}
	if uid != "" && rec.UID != uid {
		return false, nil
	}
	log := r.log.With("workload", name, "uid", rec.UID, "revision", rec.Revision)
	if err := r.remove(ctx, log, rec); err != nil {
		return true, err
	}
	log.Info("VM deleted", "retained_disks", rec.Retain)
	return true, nil
}

// Status reports one workload. See runtime.Runtime.
func (r *Runtime) Status(ctx context.Context, name string) (*persysv1.WorkloadStatus, error) {
	rec, err := r.loadRecord(name)
	if errors.Is(err, errNoRecord) {
		return &persysv1.WorkloadStatus{
			Name:      name,
			State:     persysv1.ActualState_ACTUAL_STATE_MISSING,
			NodeId:    r.cfg.NodeID,
			UpdatedAt: timestamppb.Now(),
		}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("qemu runtime: status of %s: %w", name, err)
	}
	return r.statusOf(ctx, rec), nil
}

// List reports every VM of this node. See runtime.Runtime.
func (r *Runtime) List(ctx context.Context) ([]*persysv1.WorkloadStatus, error) {
	entries, err := os.ReadDir(r.cfg.StateDir)
	if err != nil {
		return nil, fmt.Errorf("qemu runtime: list: %w", err)
	}
	var out []*persysv1.WorkloadStatus
	for _, e := range entries {
		if !e.IsDir() {
			continue
		}
		rec, err := r.loadRecord(e.Name())
		if errors.Is(err, errNoRecord) {
			continue
		}
		if err != nil {
			r.log.Warn("unreadable VM state folder", "folder", e.Name(), "error", err)
			continue
		}
		out = append(out, r.statusOf(ctx, rec))
	}
	sort.Slice(out, func(i, j int) bool { return out[i].GetName() < out[j].GetName() })
	return out, nil
}

// statusOf builds the status of a recorded VM from its process and QMP.
func (r *Runtime) statusOf(ctx context.Context, rec *record) *persysv1.WorkloadStatus {
	r.capSerial(rec.Name)
	sd := r.stateDir(rec.Name)
	st := &persysv1.WorkloadStatus{
		Name:      rec.Name,
		Uid:       rec.UID,
		NodeId:    rec.Node,
		Revision:  rec.Revision,
		UpdatedAt: timestamppb.Now(),
		Details: map[string]string{
			"accel":    rec.Accel,
			"specHash": rec.SpecHash,
			"desired":  rec.Desired,
		},
	}
	if len(rec.Forwards) > 0 {
		st.Details["portForwards"] = strings.Join(rec.Forwards, ", ")
	}
	for _, d := range rec.Disks {
		st.Details["disk."+d.Name] = d.Path
	}
	pid, up := r.pid(rec)
	if !up {
		st.Details["qmp"] = "not running"
		if rec.Desired == desiredStopped {
			st.State = persysv1.ActualState_ACTUAL_STATE_STOPPED
			st.Message = "powered off"
			return st
		}
		if r.isBusy(rec.Name) {
			// An Apply is creating disks or starting QEMU right now.
			st.State = persysv1.ActualState_ACTUAL_STATE_CREATING
			st.Message = "starting"
			return st
		}
		if livenessStatus(rec, st) {
			return st
		}
		r.noteDown(rec)
		st.State = persysv1.ActualState_ACTUAL_STATE_FAILED
		if why := r.bootFailure(rec, false); why != "" {
			st.Reason = persysv1.FailureReason_FAILURE_REASON_VM_BOOT_FAILED
			st.Message = "VM " + rec.Name + " did not boot: " + why
			return st
		}
		st.Reason = persysv1.FailureReason_FAILURE_REASON_RUNTIME_ERROR
		st.Message = "QEMU is not running (the guest powered off or QEMU exited)"
		if msg := strings.TrimSpace(tailOf(filepath.Join(sd, errFile), 512)); msg != "" {
			st.Message += ": " + msg
		}
		return st
	}
	st.RuntimeId = strconv.Itoa(pid)
	st.Details["pid"] = st.RuntimeId
	qs, err := qmpStatus(ctx, filepath.Join(sd, qmpSock))
	if err != nil {
		// The process is alive; QMP may be busy with another client.
		st.Details["qmp"] = "unreachable"
		st.State = persysv1.ActualState_ACTUAL_STATE_RUNNING
		st.Message = "QMP does not answer: " + err.Error()
	} else {
		st.Details["qmp"] = qs
		switch qs {
		case "running":
			st.State = persysv1.ActualState_ACTUAL_STATE_RUNNING
			if why := r.bootFailure(rec, true); why != "" {
				// panic=0 (or a guest that ignores panic=): the kernel
				// halts but QEMU runs on.
				st.State = persysv1.ActualState_ACTUAL_STATE_FAILED
				st.Reason = persysv1.FailureReason_FAILURE_REASON_VM_BOOT_FAILED
				st.Message = "VM " + rec.Name + " did not boot: " + why
			}
		case "shutdown":
			st.State = persysv1.ActualState_ACTUAL_STATE_STOPPED
			st.Message = "the guest shut down"
		case "guest-panicked":
			st.State = persysv1.ActualState_ACTUAL_STATE_FAILED
			st.Reason = persysv1.FailureReason_FAILURE_REASON_VM_BOOT_FAILED
			st.Message = "the guest kernel panicked"
		case "internal-error", "io-error":
			st.State = persysv1.ActualState_ACTUAL_STATE_FAILED
			st.Reason = persysv1.FailureReason_FAILURE_REASON_RUNTIME_ERROR
			st.Message = "QEMU reports " + qs
		default: // paused, suspended, prelaunch, ...
			st.State = persysv1.ActualState_ACTUAL_STATE_STOPPED
			st.Message = "the VM is " + qs
		}
	}
	st.Addresses = rec.Addresses
	if st.State == persysv1.ActualState_ACTUAL_STATE_RUNNING {
		if addrs := r.guestAgentAddresses(ctx, rec.Name); len(addrs) > 0 {
			st.Addresses = addrs
			st.Details["addressesFrom"] = "guest-agent"
		}
	}
	return st
}

// guestAgentAddresses asks the guest agent, backing off for 30 s after it
// did not answer (most test guests run none).
func (r *Runtime) guestAgentAddresses(ctx context.Context, name string) []string {
	r.gaMu.Lock()
	g := r.ga[name]
	r.gaMu.Unlock()
	if time.Now().Before(g.next) {
		return g.addrs
	}
	addrs, err := guestAddresses(ctx, filepath.Join(r.stateDir(name), qgaSock), 300*time.Millisecond)
	r.gaMu.Lock()
	defer r.gaMu.Unlock()
	if err != nil || len(addrs) == 0 {
		r.ga[name] = gaState{next: time.Now().Add(30 * time.Second)}
		return nil
	}
	r.ga[name] = gaState{next: time.Now().Add(5 * time.Second), addrs: addrs}
	return addrs
}

// Verify checks that a VM's QEMU process is alive and not a zombie. See
// runtime.Verifier.
func (r *Runtime) Verify(ctx context.Context, name string) (bool, string, error) {
	_, err := r.loadRecord(name)
	if errors.Is(err, errNoRecord) {
		return false, "no VM " + name + " on this node", nil
	}
	if err != nil {
		return false, "", fmt.Errorf("qemu runtime: verify %s: %w", name, err)
	}
	pf := filepath.Join(r.stateDir(name), pidFile)
	pid, err := readPid(pf)
	if err != nil {
		return false, "QEMU pidfile missing", nil
	}
	if st, err := procState(pid); err == nil && st == "Z" {
		alive(pid, pf) // reaps it when it is ours
		return false, fmt.Sprintf("QEMU pid %d is a zombie", pid), nil
	}
	if !alive(pid, pf) {
		return false, fmt.Sprintf("QEMU pid %d is gone", pid), nil
	}
	return true, "", nil
}

// Logs returns the tail of the VM's serial console. See runtime.Logger.
func (r *Runtime) Logs(ctx context.Context, name string, tailBytes int64) ([]byte, bool, error) {
	if _, err := r.loadRecord(name); err != nil {
		if errors.Is(err, errNoRecord) {
			return nil, false, runtime.Fail(persysv1.FailureReason_FAILURE_REASON_RUNTIME_ERROR, nil, "no VM %s on node %s", name, r.cfg.NodeID)
		}
		return nil, false, fmt.Errorf("qemu runtime: logs of %s: %w", name, err)
	}
	r.capSerial(name)
	path := filepath.Join(r.stateDir(name), serialLog)
	f, err := os.Open(path)
	if errors.Is(err, fs.ErrNotExist) {
		return []byte{}, false, nil
	}
	if err != nil {
		return nil, false, fmt.Errorf("qemu runtime: logs of %s: %w", name, err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, false, fmt.Errorf("qemu runtime: logs of %s: %w", name, err)
	}
	size := st.Size()
	if tailBytes <= 0 || tailBytes > r.cfg.SerialLogCap {
		tailBytes = r.cfg.SerialLogCap
	}
	off := int64(0)
	truncated := false
	if size > tailBytes {
		off, truncated = size-tailBytes, true
	}
	buf := make([]byte, size-off)
	n, err := f.ReadAt(buf, off)
	if err != nil && n == 0 && len(buf) > 0 {
		return nil, false, fmt.Errorf("qemu runtime: logs of %s: %w", name, err)
	}
	buf = buf[:n]
	if bytes.HasPrefix(buf, []byte(cutMarker)) {
		truncated = true
	}
	return buf, truncated, nil
}

const cutMarker = "[persys: serial log cut to its newest part]\n"

// capSerial keeps serial.log under the cap: when over, it keeps the newest
// half (from a line start) behind a marker line. QEMU appends, so its next
// writes land after the kept tail.
func (r *Runtime) capSerial(name string) {
	path := filepath.Join(r.stateDir(name), serialLog)
	st, err := os.Stat(path)
	if err != nil || st.Size() <= r.cfg.SerialLogCap {
		return
	}
	f, err := os.OpenFile(path, os.O_RDWR|os.O_APPEND, 0)
	if err != nil {
		return
	}
	defer f.Close()
	keep := r.cfg.SerialLogCap / 2
	buf := make([]byte, keep)
	n, _ := f.ReadAt(buf, st.Size()-keep)
	buf = buf[:n]
	if i := bytes.IndexByte(buf, '\n'); i >= 0 && i < len(buf)-1 {
		buf = buf[i+1:]
	}
	if err := f.Truncate(0); err != nil {
		return
	}
	_, _ = f.Write(append([]byte(cutMarker), buf...))
}

// tailOf returns at most n bytes from the end of a file ("" on errors).
func tailOf(path string, n int64) string {
	f, err := os.Open(path)
	if err != nil {
		return ""
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return ""
	}
	off := st.Size() - n
	if off < 0 {
		off = 0
	}
	buf := make([]byte, st.Size()-off)
	k, _ := f.ReadAt(buf, off)
	return string(buf[:k])
}

var (
	_ runtime.Runtime  = (*Runtime)(nil)
	_ runtime.Logger   = (*Runtime)(nil)
	_ runtime.Verifier = (*Runtime)(nil)
)
