package e2e

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/persys-dev/compute/internal/testutil/vmguest"
)

// vmManifest is a VM booted from the test guest's kernel, with an overlay
// on the pool's base image, a blank disk, a port forward to the guest's
// httpd, cloud-init user-data with a marker, and a login with an SSH key.
func (c *cluster) vmManifest(name, state string, hostPort int, marker, sshKey string) string {
	c.t.Helper()
	m := fmt.Sprintf(`kind: Workload
metadata: {name: %s}
spec:
  type: vm
  desiredState: %s
  vm:
    vcpus: 1
    memory: 256Mi
    accel: tcg
    stopTimeoutSeconds: 5
    kernelBoot: {pool: default, kernel: vmlinuz, initrd: initrd.img, cmdline: "console=ttyS0 panic=-1"}
    disks:
      - {name: root, pool: default, baseImage: base.raw}
      - {name: data, pool: default, size: 64Mi}
    networks:
      - portForwards: [{hostPort: %d, guestPort: 80}]
    cloudInit:
      userData: |
        #cloud-config
        runcmd: [echo %s]
    login:
      user: persys
      sshAuthorizedKeys: [%q]
`, name, state, hostPort, marker, sshKey)
	path := filepath.Join(c.dir, name+"-"+state+".yaml")
	if err := os.WriteFile(path, []byte(m), 0o600); err != nil {
		c.t.Fatal(err)
	}
	return path
}

// vmView is what the VM test reads of `persysctl get workload -o json`.
type vmView struct {
	Status struct {
		State     string            `json:"state"`
		Reason    string            `json:"reason"`
		Message   string            `json:"message"`
		RuntimeID string            `json:"runtimeId"`
		Addresses []string          `json:"addresses"`
		Details   map[string]string `json:"details"`
	} `json:"status"`
}

func (c *cluster) vmStatus(name string) (vmView, bool) {
	out, err := c.ctl("get", "workload", name, "-o", "json")
	var v vmView
	if err != nil {
		return v, false
	}
	if err := json.Unmarshal([]byte(out), &v); err != nil {
		c.t.Fatalf("decode: %v\n%s", err, out)
	}
	return v, true
}

func pidAlive(pid int) bool {
	if pid <= 0 {
		return false
	}
	// Signal 0 checks existence; a zombie is not alive.
	if err := syscall.Kill(pid, 0); err != nil {
		return false
	}
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	_, rest, _ := strings.Cut(string(stat), ") ")
	return !strings.HasPrefix(rest, "Z")
}

// TestVMLifecycle boots a real VM under QEMU (TCG) through persysctl:
// cloud-init reaches the guest, the guest's address and the port forward
// work, an agent restart keeps the same QEMU process, stop powers it off,
// start boots it again, QEMU killed under it is a counted failure and a
// new QEMU boots it, and delete removes the process, its disks and the
// pool space it held.
func TestVMLifecycle(t *testing.T) {
	guest := vmguest.GuestFiles(t)
	c := newCluster(t)
	guest.CopyToPool(t, c.poolDir)
	name := "vm-" + c.nodeID
	port := freePort(t)
	marker := "persys-marker-" + strconv.FormatInt(time.Now().UnixNano(), 36)
	sshKey := "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIE2e2etestkeyforpersysvmlifecycle e2e@persys"

	out := c.mustCtl("apply", "-f", c.vmManifest(name, "running", port, marker, sshKey), "--wait", "--timeout", "3m")
	if !strings.Contains(out, "created") {
		t.Fatalf("apply output does not say created:\n%s", out)
	}
	// The serial console followed through persysctl, the gateway, the
	// scheduler and the agent (logs -f), from while the guest boots.
	f := c.follow(t, name, "-f")
	c.waitFor("the followed console to show the user-data", 3*time.Minute, func() bool {
		return strings.Contains(f.output(), vmguest.MarkerUserDataEnd)
	})
	if out := f.interrupt(t); !strings.Contains(out, marker) {
		t.Errorf("followed console lacks the marker %q:\n%s", marker, tail(out, 60))
	}
	// cloud-init end to end: the guest prints the user-data it mounted
	// from the seed, with the marker and the login's key rendered in.
	c.waitFor("the guest to print its user-data", 3*time.Minute, func() bool {
		logs, err := c.ctl("logs", "workload", name)
		return err == nil && strings.Contains(logs, vmguest.MarkerUserDataEnd)
	})
	logs := c.mustCtl("logs", "workload", name, "--tail", "1000000")
	for _, want := range []string{vmguest.MarkerCidata, marker, sshKey, "persys"} {
		if !strings.Contains(logs, want) {
			t.Errorf("serial log lacks %q:\n%s", want, tail(logs, 60))
		}
	}
	c.waitFor("the guest's httpd through the port forward", 2*time.Minute, func() bool {
		body, err := httpGet(fmt.Sprintf("http://127.0.0.1:%d/", port))
		return err == nil && body == vmguest.HTTPBody
	})

	v, _ := c.vmStatus(name)
	if v.Status.State != "RUNNING" || len(v.Status.Addresses) == 0 {
		t.Fatalf("status = %+v, want RUNNING with an address", v.Status)
	}
	desc := c.mustCtl("describe", "workload", name)
	for _, want := range []string{"RUNNING", "Addresses:", v.Status.Addresses[0], "tcg"} {
		if !strings.Contains(desc, want) {
			t.Errorf("describe lacks %q:\n%s", want, desc)
		}
	}
	pid, err := strconv.Atoi(v.Status.RuntimeID)
	if err != nil || !pidAlive(pid) {
		t.Fatalf("runtime id %q is not a live QEMU pid", v.Status.RuntimeID)
	}
	node := c.mustCtl("describe", "node", c.nodeID)
	if !strings.Contains(node, "64Mi") {
		t.Errorf("node does not account the 64Mi disk on its pool:\n%s", node)
	}

	// Agent restart: the VM keeps running in the same QEMU process.
	c.procs["agent"].stop(t)
	if !pidAlive(pid) {
		t.Fatal("QEMU died with the agent")
	}
	c.start("agent", c.agentFlags...)
	c.waitFor("node ready again", time.Minute, func() bool {
		out, err := c.ctl("get", "nodes", "-o", "json")
		return err == nil && strings.Contains(out, `"READY"`)
	})
	c.waitFor("the VM reported RUNNING by the new agent", time.Minute, func() bool {
		v, ok := c.vmStatus(name)
		return ok && v.Status.State == "RUNNING"
	})
	if v, _ := c.vmStatus(name); v.Status.RuntimeID != strconv.Itoa(pid) || !pidAlive(pid) {
		t.Fatalf("after the agent restart the VM runs as pid %q, want the same pid %d", v.Status.RuntimeID, pid)
	}

	// Stop: ACPI power-down (or a hard stop after the timeout).
	c.mustCtl("apply", "-f", c.vmManifest(name, "stopped", port, marker, sshKey), "--wait", "--timeout", "2m")
	c.waitFor("QEMU gone after stop", time.Minute, func() bool { return !pidAlive(pid) })
	if v, _ := c.vmStatus(name); v.Status.State != "STOPPED" {
		t.Fatalf("after stop: %+v", v.Status)
	}

	// Start again: a new QEMU process boots the same disks.
	c.mustCtl("apply", "-f", c.vmManifest(name, "running", port, marker, sshKey), "--wait", "--timeout", "3m")
	v, _ = c.vmStatus(name)
	pid2, _ := strconv.Atoi(v.Status.RuntimeID)
	if v.Status.State != "RUNNING" || !pidAlive(pid2) || pid2 == pid {
		t.Fatalf("after start: %+v (old pid %d)", v.Status, pid)
	}

	// QEMU killed under the VM: a counted failure (an AttemptFailed event
	// with its reason), then a new QEMU process boots the same disks.
	if err := syscall.Kill(pid2, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	pid3 := 0
	c.waitFor("the VM back in a new QEMU after a kill", 3*time.Minute, func() bool {
		v, ok := c.vmStatus(name)
		pid3, _ = strconv.Atoi(v.Status.RuntimeID)
		return ok && v.Status.State == "RUNNING" && pid3 != pid2 && pidAlive(pid3)
	})
	c.waitFor("the kill counted as a failed attempt", time.Minute, func() bool {
		// RUNTIME_ERROR, or VM_BOOT_FAILED when QEMU died before the
		// guest's boot marker (TCG boots slowly).
		desc := c.mustCtl("describe", "workload", name)
		return strings.Contains(desc, "AttemptFailed") && (strings.Contains(desc, "RUNTIME_ERROR") || strings.Contains(desc, "VM_BOOT_FAILED"))
	})

	// Delete: the process, the disks and the pool allocation go.
	c.mustCtl("delete", "workload", name, "--wait")
	c.waitFor("QEMU gone after delete", time.Minute, func() bool { return !pidAlive(pid3) })
	c.waitFor("etcd keys removed", 30*time.Second, func() bool { return len(c.etcdKeys(name)) == 0 })
	var left []string
	_ = filepath.Walk(c.poolDir, func(p string, info os.FileInfo, err error) error {
		if err == nil && !info.IsDir() && strings.Contains(p, name) {
			left = append(left, p)
		}
		return nil
	})
	if len(left) > 0 {
		t.Errorf("disks left in the pool after delete: %v", left)
	}
	node = c.mustCtl("describe", "node", c.nodeID)
	if !strings.Contains(node, "0 (0%)") {
		t.Errorf("pool allocation not returned after delete:\n%s", node)
	}
}
