package e2e

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/persys-dev/compute/internal/testutil/vmguest"
)

// TestVMLivenessRestart: a VM replica whose liveness check fails is
// restarted as a container would be. The guest's httpd answers 404 at
// /missing, so an httpGet liveness check there fails once the startup
// check (/ through the same port forward) passed: the agent stops the VM,
// the status says FAILED with HEALTH_CHECK_FAILED and counts the attempt,
// and the scheduler's retry boots the same revision again as a new QEMU
// process.
func TestVMLivenessRestart(t *testing.T) {
	guest := vmguest.GuestFiles(t)
	c := newCluster(t)
	guest.CopyToPool(t, c.poolDir)
	name := "vm-live-" + c.nodeID
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
    networks:
      - portForwards: [{hostPort: %d, guestPort: 80}]
  startupProbe:
    httpGet: {path: /, port: 80}
    periodSeconds: 1
    failureThreshold: 600
  livenessProbe:
    httpGet: {path: /missing, port: 80}
    periodSeconds: 1
    failureThreshold: 2
`, name, freePort(t))
	path := filepath.Join(c.dir, name+".yaml")
	if err := os.WriteFile(path, []byte(m), 0o600); err != nil {
		t.Fatal(err)
	}
	c.mustCtl("apply", "-f", path, "--wait", "--timeout", "3m")
	v, _ := c.vmStatus(name)
	first, err := strconv.Atoi(v.Status.RuntimeID)
	if err != nil || !pidAlive(first) {
		t.Fatalf("runtime id %q is not a live QEMU pid: %+v", v.Status.RuntimeID, v.Status)
	}

	var failed statusView
	c.waitFor("the liveness failure reported", 5*time.Minute, func() bool {
		s, _ := c.statusOf(name)
		if s.Status.State == "FAILED" && s.Status.Reason == "HEALTH_CHECK_FAILED" {
			failed = s
			return true
		}
		return false
	})
	if !strings.Contains(failed.Status.Message, "liveness") || failed.Status.Attempts < 1 {
		t.Errorf("failed status: %+v, want a liveness message and a counted attempt", failed.Status)
	}
	c.waitFor("the first QEMU process gone", time.Minute, func() bool { return !pidAlive(first) })

	var second int
	c.waitFor("the VM booted again as a new QEMU process", 3*time.Minute, func() bool {
		v, ok := c.vmStatus(name)
		second, _ = strconv.Atoi(v.Status.RuntimeID)
		return ok && v.Status.State == "RUNNING" && second != first && pidAlive(second)
	})

	c.mustCtl("delete", "workload", name, "--wait")
	c.waitFor("QEMU gone after delete", time.Minute, func() bool { return !pidAlive(second) })
}
