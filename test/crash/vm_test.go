package crash

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/persys-dev/compute/internal/failpoint"
	"github.com/persys-dev/compute/internal/testutil/vmguest"
)

// TestVMCrashAfterProcessStart: persys dev dies with SIGKILL after a VM's
// QEMU started and before its guest booted (and before the agent
// answered). QEMU lives on; the restarted agent and scheduler must take it
// as the VM's one process (no second QEMU), report it RUNNING, and delete
// it with its disks.
func TestVMCrashAfterProcessStart(t *testing.T) {
	guest := vmguest.GuestFiles(t)
	r := row{point: failpoint.QEMUAfterProcessStart}
	defer func() { record(r) }()
	d := newDev(t)
	pool := filepath.Join(d.dir, "agent", "pools", "default")
	if err := os.MkdirAll(pool, 0o755); err != nil {
		t.Fatal(err)
	}
	guest.CopyToPool(t, pool)
	d.start(failpoint.QEMUAfterProcessStart + "=kill")
	d.arm()
	d.mustCtl("apply", "-f", d.vmManifest("v1"))
	d.waitKilled(failpoint.QEMUAfterProcessStart)
	d.disarm()

	d.start("")
	d.waitConverged(map[string]string{"v1": ""})
	r.converged, r.seconds = true, time.Since(d.startedAt).Seconds()
	if n := len(qemuProcesses(d.dir)); n != 1 {
		r.duplicates = max(n-1, 0)
		t.Errorf("%d QEMU processes for v1 after convergence, want 1", n)
	}

	d.mustCtl("delete", "workload", "v1", "--wait", "--timeout", "90s")
	deadline := time.Now().Add(convergeBound)
	for len(qemuProcesses(d.dir)) > 0 && time.Now().Before(deadline) {
		time.Sleep(200 * time.Millisecond)
	}
	r.leftovers = len(qemuProcesses(d.dir))
	if r.leftovers > 0 {
		t.Errorf("%d QEMU processes left after delete", r.leftovers)
	}
}

// vmManifest writes a small VM booted from the test guest's kernel with
// an overlay on the pool's base image.
func (d *dev) vmManifest(name string) string {
	d.t.Helper()
	m := fmt.Sprintf(`kind: Workload
metadata: {name: %s}
spec:
  type: vm
  vm:
    vcpus: 1
    memory: 256Mi
    accel: tcg
    stopTimeoutSeconds: 5
    kernelBoot: {pool: default, kernel: vmlinuz, initrd: initrd.img, cmdline: "console=ttyS0 panic=-1"}
    disks:
      - {name: root, pool: default, baseImage: base.raw}
`, name)
	path := filepath.Join(d.dir, name+".yaml")
	if err := os.WriteFile(path, []byte(m), 0o600); err != nil {
		d.t.Fatal(err)
	}
	return path
}

// qemuProcesses lists the pids of QEMU processes whose command line names
// a file under dir (their VM's state folder is in the dev's data dir).
func qemuProcesses(dir string) []string {
	entries, _ := os.ReadDir("/proc")
	var pids []string
	for _, e := range entries {
		cmdline, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err != nil {
			continue
		}
		args := strings.Split(string(cmdline), "\x00")
		if strings.Contains(filepath.Base(args[0]), "qemu-system") && strings.Contains(string(cmdline), dir) {
			pids = append(pids, e.Name())
		}
	}
	return pids
}
