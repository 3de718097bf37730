package e2e

import (
	"bytes"
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

// failVM writes a VM manifest for the failure tests: vcpus, the kernel
// boot line (empty for none), the disks and the cloud-init block are given
// as YAML fragments.
func (c *cluster) failVM(name, vcpus, kernelBoot, disks, cloudInit string) string {
	c.t.Helper()
	var b strings.Builder
	fmt.Fprintf(&b, "kind: Workload\nmetadata: {name: %s}\nspec:\n  type: vm\n  vm:\n    vcpus: %s\n    memory: 128Mi\n    accel: tcg\n    stopTimeoutSeconds: 2\n", name, vcpus)
	if kernelBoot != "" {
		fmt.Fprintf(&b, "    kernelBoot: %s\n", kernelBoot)
	}
	if disks != "" {
		fmt.Fprintf(&b, "    disks:\n%s", disks)
	}
	b.WriteString(cloudInit)
	path := filepath.Join(c.dir, name+".yaml")
	if err := os.WriteFile(path, []byte(b.String()), 0o600); err != nil {
		c.t.Fatal(err)
	}
	return path
}

// qemuPids lists the QEMU processes of VM name (QEMU is started with
// -name guest=<name>,...).
func qemuPids(t *testing.T, name string) []int {
	t.Helper()
	entries, err := os.ReadDir("/proc")
	if err != nil {
		t.Fatal(err)
	}
	var pids []int
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		cmdline, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err != nil {
			continue
		}
		if bytes.Contains(cmdline, []byte("guest="+name+",")) && pidAlive(pid) {
			pids = append(pids, pid)
		}
	}
	return pids
}

// nothingOnNode checks that the agent made nothing for VM name: no QEMU,
// no state folder, no file under the pool.
func (c *cluster) nothingOnNode(t *testing.T, name string) {
	t.Helper()
	if pids := qemuPids(t, name); len(pids) > 0 {
		t.Errorf("%s: QEMU processes %v exist", name, pids)
	}
	if _, err := os.Stat(filepath.Join(c.dir, "agent", "vms", name)); !os.IsNotExist(err) {
		t.Errorf("%s: the agent has a state folder for it (%v)", name, err)
	}
	var left []string
	_ = filepath.Walk(c.poolDir, func(p string, info os.FileInfo, err error) error {
		if err == nil && strings.Contains(p, name) {
			left = append(left, p)
		}
		return nil
	})
	if len(left) > 0 {
		t.Errorf("%s: files in the pool: %v", name, left)
	}
}

// statusView is the part of `persysctl get workload -o json` the failure
// tests read.
type statusView struct {
	Status struct {
		State         string `json:"state"`
		Reason        string `json:"reason"`
		Message       string `json:"message"`
		Attempts      int    `json:"attempts"`
		NextAttemptAt string `json:"nextAttemptAt"`
	} `json:"status"`
}

func (c *cluster) statusOf(name string) (statusView, string) {
	out, err := c.ctl("get", "workload", name, "-o", "json")
	var v statusView
	if err != nil {
		return v, out
	}
	_ = json.Unmarshal([]byte(out), &v)
	return v, out
}

// TestVMRefusals: work the cluster must refuse without touching the node —
// a disk larger than the pool's free space (PENDING, NO_FEASIBLE_NODE, the
// pool named in describe) and bad manifests (each refused at apply naming
// the field, no etcd key, nothing on the node). No VM boots here.
func TestVMRefusals(t *testing.T) {
	c := newCluster(t)
	// Only names: the pool holds no kernel, and nothing here may boot.
	kernel := "{pool: default, kernel: vmlinuz, cmdline: console=ttyS0}"

	// A disk larger than the pool's free space: the scheduler refuses to
	// place it and says why.
	{
		var fs syscall.Statfs_t
		if err := syscall.Statfs(c.poolDir, &fs); err != nil {
			t.Fatal(err)
		}
		free := int64(fs.Bavail) * int64(fs.Bsize)
		size := (free>>30 + 64) << 30 // 64 GiB more than is free
		name := "vm-huge-" + c.nodeID
		disk := fmt.Sprintf("      - {name: data, pool: default, size: %d}\n", size)
		out := c.mustCtl("apply", "-f", c.failVM(name, "1", kernel, disk, ""))
		t.Logf("apply: %s", strings.TrimSpace(out))
		c.waitFor("PENDING with NO_FEASIBLE_NODE", time.Minute, func() bool {
			v, _ := c.statusOf(name)
			return v.Status.State == "PENDING" && v.Status.Reason == "NO_FEASIBLE_NODE"
		})
		desc := c.mustCtl("describe", "workload", name)
		for _, want := range []string{"PENDING", "NO_FEASIBLE_NODE", "pool default: requested", "free"} {
			if !strings.Contains(desc, want) {
				t.Errorf("describe lacks %q:\n%s", want, desc)
			}
		}
		c.nothingOnNode(t, name)
		c.mustCtl("delete", "workload", name, "--wait")
		c.waitFor("etcd keys removed", 30*time.Second, func() bool { return len(c.etcdKeys(name)) == 0 })
	}

	blank := "      - {name: data, pool: default, size: 16Mi}\n"
	for _, tt := range []struct {
		name  string
		vcpus string
		disks string
		ci    string
		want  []string
	}{
		{"user-data not YAML", "1", blank,
			"    cloudInit:\n      userData: |\n        #cloud-config\n        runcmd: [echo hi\n        packages: {\n",
			[]string{"INVALID_SPEC", "spec.vm.cloudInit.userData", "not valid YAML"}},
		{"meta-data not a mapping", "1", blank,
			"    cloudInit:\n      metaData: |\n        - one\n        - two\n",
			[]string{"INVALID_SPEC", "spec.vm.cloudInit.metaData", "mapping"}},
		{"10 MB user-data", "1", blank,
			"    cloudInit:\n      userData: |\n        #cloud-config\n        write_files: [{path: /x, content: " + strings.Repeat("x", 10<<20) + "}]\n",
			[]string{"manifest is larger than the limit"}},
		{"zero vcpus", "0", blank, "", []string{"spec.vm.vcpus", "between 1 and"}},
		{"negative disk size", "1", "      - {name: data, pool: default, size: -1Gi}\n", "", []string{"spec.vm.disks[0].size", "negative"}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			name := "vm-bad-" + strings.ToLower(strings.ReplaceAll(tt.name, " ", "-"))
			out, err := c.ctl("apply", "-f", c.failVM(name, tt.vcpus, kernel, tt.disks, tt.ci))
			if err == nil {
				t.Fatalf("apply succeeded:\n%s", out)
			}
			t.Logf("apply: %s", strings.TrimSpace(out))
			if len(out) > 2000 {
				t.Fatalf("the error is %d bytes long (the input echoed?):\n%.2000s", len(out), out)
			}
			for _, want := range tt.want {
				if !strings.Contains(out, want) {
					t.Errorf("apply output lacks %q:\n%s", want, out)
				}
			}
			if keys := c.etcdKeys(name); len(keys) > 0 {
				t.Errorf("etcd holds %v", keys)
			}
			c.nothingOnNode(t, name)
		})
	}
}

// TestVMBootFailures: a base image that is not in the pool fails with the
// STORAGE reason naming the field and leaves nothing on the node; a guest
// whose kernel panics (the test guest's kernel with an initrd of random
// bytes: it cannot mount a root) ends FAILED with VM_BOOT_FAILED naming the
// panic, and the scheduler schedules another attempt.
//
// The e2e scheduler runs with the default retry schedule (5 s, 10 s, 20 s …,
// 6 attempts ≈ 2.5 min), so the test checks the first failed attempt —
// FAILED, VM_BOOT_FAILED, attempts ≥ 1 and a next attempt — rather than
// waiting for the last.
func TestVMBootFailures(t *testing.T) {
	guest := vmguest.GuestFiles(t)
	c := newCluster(t)
	guest.CopyToPool(t, c.poolDir)
	junk := bytes.Repeat([]byte("not an initramfs\x00\xff"), 16<<10)
	if err := os.WriteFile(filepath.Join(c.poolDir, "junk.img"), junk, 0o644); err != nil {
		t.Fatal(err)
	}
	kernel := "{pool: default, kernel: vmlinuz, cmdline: console=ttyS0}"

	// A base image that is not in the pool.
	{
		name := "vm-nobase-" + c.nodeID
		disk := "      - {name: root, pool: default, baseImage: no-such-image.qcow2}\n"
		c.mustCtl("apply", "-f", c.failVM(name, "1", kernel, disk, ""))
		var v statusView
		c.waitFor("FAILED with STORAGE", 2*time.Minute, func() bool {
			v, _ = c.statusOf(name)
			return v.Status.State == "FAILED" && v.Status.Reason == "STORAGE"
		})
		t.Logf("status: %+v", v.Status)
		for _, want := range []string{"spec.vm.disks[0].baseImage", "no-such-image.qcow2", "default"} {
			if !strings.Contains(v.Status.Message, want) {
				t.Errorf("message %q lacks %q", v.Status.Message, want)
			}
		}
		desc := c.mustCtl("describe", "workload", name)
		if !strings.Contains(desc, "STORAGE") || !strings.Contains(desc, "spec.vm.disks[0].baseImage") {
			t.Errorf("describe does not show the reason:\n%s", desc)
		}
		c.nothingOnNode(t, name)
		c.mustCtl("delete", "workload", name, "--wait")
		c.waitFor("etcd keys removed", 30*time.Second, func() bool { return len(c.etcdKeys(name)) == 0 })
	}

	// A kernel that panics: it finds no initramfs and no root.
	{
		name := "vm-panic-" + c.nodeID
		boot := "{pool: default, kernel: vmlinuz, initrd: junk.img, cmdline: console=ttyS0}"
		c.mustCtl("apply", "-f", c.failVM(name, "1", boot, "", ""))
		var v statusView
		var raw string
		c.waitFor("FAILED with VM_BOOT_FAILED", 3*time.Minute, func() bool {
			v, raw = c.statusOf(name)
			return v.Status.State == "FAILED" && v.Status.Reason == "VM_BOOT_FAILED" &&
				v.Status.Attempts >= 1 && v.Status.NextAttemptAt != ""
		})
		t.Logf("status: %+v", v.Status)
		if !strings.Contains(v.Status.Message, "Kernel panic") || !strings.Contains(v.Status.Message, "Unable to mount root fs") {
			t.Errorf("message does not name the panic: %q\n%s", v.Status.Message, raw)
		}
		desc := c.mustCtl("describe", "workload", name)
		for _, want := range []string{"FAILED", "VM_BOOT_FAILED", "Kernel panic", "Attempts:", "Next attempt:"} {
			if !strings.Contains(desc, want) {
				t.Errorf("describe lacks %q:\n%s", want, desc)
			}
		}
		events := c.mustCtl("events")
		if !strings.Contains(events, name) || !strings.Contains(events, "VM_BOOT_FAILED") {
			t.Errorf("no VM_BOOT_FAILED event for %s:\n%s", name, tail(events, 30))
		}
		c.mustCtl("delete", "workload", name, "--wait")
		c.waitFor("etcd keys removed", 30*time.Second, func() bool { return len(c.etcdKeys(name)) == 0 })
		c.waitFor("QEMU gone after delete", time.Minute, func() bool { return len(qemuPids(t, name)) == 0 })
		c.nothingOnNode(t, name)
	}
}
