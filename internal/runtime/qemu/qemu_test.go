package qemu

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	persysv1 "github.com/persys-dev/compute/api/persys/v1"
	"github.com/persys-dev/compute/internal/runtime"
	"github.com/persys-dev/compute/internal/testutil/freeport"
	"github.com/persys-dev/compute/internal/testutil/vmguest"
)

const (
	testKey      = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIFakeKeyForPersysVMTests test@persys"
	testPassword = "pw-Secret-4711-never-logged"
	bootTimeout  = 90 * time.Second
)

// syncBuffer collects log output from several goroutines.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// eventually polls cond every 200ms until it holds or timeout passes.
func eventually(t *testing.T, timeout time.Duration, what string, cond func() (bool, string)) {
	t.Helper()
	deadline := time.After(timeout)
	tick := time.NewTicker(200 * time.Millisecond)
	defer tick.Stop()
	last := ""
	for {
		ok, detail := cond()
		if ok {
			return
		}
		last = detail
		select {
		case <-deadline:
			t.Fatalf("timed out after %s waiting for %s; last: %s", timeout, what, last)
		case <-tick.C:
		}
	}
}

func freePort(t *testing.T) uint32 {
	t.Helper()
	return uint32(freeport.Port(t, "127.0.0.1"))
}

// guestPool returns a pool folder holding the test guest's kernel, initrd
// and base image.
func guestPool(t *testing.T) string {
	t.Helper()
	g := vmguest.GuestFiles(t)
	pool := t.TempDir()
	for name, src := range map[string]string{"vmlinuz": g.Kernel, "initrd.img": g.Initrd, "base.raw": g.BaseRaw} {
		if err := os.Symlink(src, filepath.Join(pool, name)); err != nil {
			t.Fatal(err)
		}
	}
	return pool
}

func newRuntime(t *testing.T, stateDir string, pools map[string]string, logw io.Writer) *Runtime {
	t.Helper()
	if logw == nil {
		logw = io.Discard
	}
	r, err := New(Config{
		NodeID:   "node-a",
		StateDir: stateDir,
		Pools:    pools,
		Accel:    "tcg",
		Logger:   slog.New(slog.NewTextHandler(logw, &slog.HandlerOptions{Level: slog.LevelDebug})),
	})
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return r
}

func vmInstance(name, uid string, rev uint64, desired persysv1.DesiredState, vm *persysv1.VMSpec) runtime.Instance {
	return runtime.Instance{
		Name:     name,
		UID:      uid,
		Revision: rev,
		Spec: &persysv1.WorkloadSpec{
			Type:         persysv1.WorkloadType_WORKLOAD_TYPE_VM,
			DesiredState: desired,
			Vm:           vm,
		},
	}
}

func reasonOf(t *testing.T, err error) persysv1.FailureReason {
	t.Helper()
	var f *runtime.Failure
	if !errors.As(err, &f) {
		t.Fatalf("error %v (%T) is not a *runtime.Failure", err, err)
	}
	return f.Reason
}

func TestVMLifecycle(t *testing.T) {
	pool := guestPool(t)
	stateDir := t.TempDir()
	pools := map[string]string{"default": pool}
	var logs syncBuffer
	r := newRuntime(t, stateDir, pools, &logs)
	ctx := context.Background()
	port := freePort(t)

	vm := &persysv1.VMSpec{
		Vcpus:       1,
		MemoryBytes: 256 << 20,
		KernelBoot:  &persysv1.VMKernelBoot{Pool: "default", Kernel: "vmlinuz", Initrd: "initrd.img", Cmdline: "console=ttyS0 quiet"},
		Disks: []*persysv1.VMDisk{
			{Name: "root", Pool: "default", BaseImage: "base.raw", BootIndex: 1},
			{Name: "data", Pool: "default", SizeBytes: 64 << 20},
		},
		Networks: []*persysv1.VMNetwork{{Mode: "user", PortForwards: []*persysv1.VMPortForward{{HostPort: port, GuestPort: 80}}}},
		CloudInit: &persysv1.CloudInit{
			UserData: "#cloud-config\nruncmd:\n  - echo MARKER-persys-vm-test\n",
		},
		Login: &persysv1.VMLogin{
			User:              "ops",
			GeneratePassword:  true,
			PasswordSecret:    "vm1-login",
			SshAuthorizedKeys: []string{testKey},
		},
		StopTimeoutSeconds: 20,
	}
	inst := vmInstance("vm1", "uid-1", 1, persysv1.DesiredState_DESIRED_STATE_RUNNING, vm)
	inst.Secrets = map[string]*persysv1.SecretValue{
		"vm1-login": {Name: "vm1-login", Data: map[string][]byte{"password": []byte(testPassword)}},
	}
	t.Cleanup(func() { _, _ = r.Delete(context.Background(), "vm1", "") })

	st, skipped, err := r.Apply(ctx, inst)
	if err != nil {
		t.Fatalf("Apply: %v", err)
	}
	if skipped || st.GetState() != persysv1.ActualState_ACTUAL_STATE_RUNNING {
		t.Fatalf("Apply = %v skipped=%v, want RUNNING, not skipped", st, skipped)
	}
	pid := checkFirstStatus(t, st, port)

	// The guest boots, reads the seed and prints it on the serial console;
	// the port forward reaches its httpd.
	checkFirstBoot(t, r, port)
	var serial string

	// An agent restart: a new Runtime on the same state folder adopts the
	// VM, reports the same pid and skips the same revision.
	r2 := newRuntime(t, stateDir, pools, &logs)
	checkAdopted(t, r2, inst, pid, stateDir, pools)

	// A new revision of the same workload (more memory): the old QEMU is
	// powered off through ACPI, a new one boots the same disks with a seed
	// whose instance-id names the new revision.
	vm2 := proto.Clone(vm).(*persysv1.VMSpec)
	vm2.MemoryBytes = 320 << 20
	inst2 := vmInstance("vm1", "uid-1", 2, persysv1.DesiredState_DESIRED_STATE_RUNNING, vm2)
	inst2.Secrets = inst.Secrets
	st, skipped, err = r2.Apply(ctx, inst2)
	if err != nil || skipped || st.GetState() != persysv1.ActualState_ACTUAL_STATE_RUNNING || st.GetRevision() != 2 {
		t.Fatalf("Apply revision 2 = %v skipped=%v err=%v, want RUNNING revision 2", st, skipped, err)
	}
	if st.GetRuntimeId() == pid {
		t.Fatalf("revision 2 runs in the old QEMU pid %s", pid)
	}
	pid = st.GetRuntimeId()
	eventually(t, bootTimeout, "revision 2 to boot", func() (bool, string) {
		data, _, err := r2.Logs(ctx, "vm1", 1<<20)
		if err != nil {
			return false, err.Error()
		}
		serial = string(data)
		return strings.Count(serial, vmguest.MarkerReady) == 2 && strings.Contains(serial, "instance-id: uid-1-r2"), serial
	})
	if strings.Count(serial, vmguest.MarkerPowerOff) != 1 {
		t.Errorf("revision 1 was not powered off through ACPI:\n%s", serial)
	}
	if strings.Count(serial, vmguest.MarkerBase) != 2 {
		t.Errorf("revision 2 does not see the root disk's data:\n%s", serial)
	}
	inst, vm = inst2, vm2

	wctx, stopWatch := context.WithCancel(ctx)
	defer stopWatch()
	watch, err := r2.Watch(wctx)
	if err != nil {
		t.Fatalf("Watch: %v", err)
	}

	// Desired STOPPED powers the guest off through ACPI.
	stopped := vmInstance("vm1", "uid-1", 2, persysv1.DesiredState_DESIRED_STATE_STOPPED, vm)
	stopped.Secrets = inst.Secrets
	st, skipped, err = r2.Apply(ctx, stopped)
	if err != nil || skipped || st.GetState() != persysv1.ActualState_ACTUAL_STATE_STOPPED {
		t.Fatalf("Apply stopped = %v skipped=%v err=%v, want STOPPED", st, skipped, err)
	}
	checkStopped(t, r2, stateDir, pid, watch, stopWatch)
	if _, skipped, err := r2.Apply(ctx, stopped); err != nil || !skipped {
		t.Errorf("Apply stopped again: skipped=%v err=%v, want skipped", skipped, err)
	}

	// Running again starts a new QEMU on the same disks.
	st, skipped, err = r2.Apply(ctx, inst)
	if err != nil || skipped || st.GetState() != persysv1.ActualState_ACTUAL_STATE_RUNNING {
		t.Fatalf("Apply running again = %v skipped=%v err=%v, want RUNNING", st, skipped, err)
	}
	if st.GetRuntimeId() == pid {
		t.Errorf("restart kept pid %s", pid)
	}
	disks := []string{st.GetDetails()["disk.root"], st.GetDetails()["disk.data"]}
	for _, d := range disks {
		if _, err := os.Stat(d); err != nil || !strings.HasPrefix(d, filepath.Join(pool, "persys", "node-a", "vm1")) {
			t.Errorf("disk %q: %v", d, err)
		}
	}
	if out, err := exec.Command("qemu-img", "info", "-U", disks[0]).CombinedOutput(); err != nil || !strings.Contains(string(out), "backing file: "+filepath.Join(pool, "base.raw")) {
		t.Errorf("root disk is not an overlay on base.raw (%v):\n%s", err, out)
	}

	// Delete: the process, the state and the disks go.
	checkVMDelete(t, r2, stateDir, st.GetRuntimeId(), disks)

	if strings.Contains(logs.String(), testPassword) {
		t.Errorf("the login password appears in the runtime's logs")
	}
	if !strings.Contains(logs.String(), "VM started") {
		t.Errorf("no decision logged:\n%s", logs.String())
	}
}

// checkAdopted: a runtime restarted on the same state folder lists vm1
// running with the same pid and skips its revision; one of another node
// does not see it.
func checkAdopted(t *testing.T, r2 *Runtime, inst runtime.Instance, pid, stateDir string, pools map[string]string) {
	t.Helper()
	ctx := context.Background()
	list, err := r2.List(ctx)
	if err != nil {
		t.Fatalf("List: %v", err)
	}
	if len(list) != 1 || list[0].GetName() != "vm1" || list[0].GetState() != persysv1.ActualState_ACTUAL_STATE_RUNNING || list[0].GetRuntimeId() != pid {
		t.Fatalf("List after restart = %v, want vm1 RUNNING with pid %s", list, pid)
	}
	if list[0].GetDetails()["qmp"] != "running" {
		t.Errorf("qmp detail = %q", list[0].GetDetails()["qmp"])
	}
	st, skipped, err := r2.Apply(ctx, inst)
	if err != nil || !skipped || st.GetRuntimeId() != pid {
		t.Fatalf("re-Apply after restart = %v skipped=%v err=%v, want skipped with pid %s", st, skipped, err, pid)
	}
	// A runtime of another node does not see it.
	other, err := New(Config{NodeID: "node-b", StateDir: stateDir, Pools: pools, Accel: "tcg", Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	if l, err := other.List(ctx); err != nil || len(l) != 0 {
		t.Errorf("List of another node = %v %v, want nothing", l, err)
	}

}

// checkFirstStatus checks TestVMLifecycle's first status and returns the
// QEMU pid.
func checkFirstStatus(t *testing.T, st *persysv1.WorkloadStatus, port uint32) string {
	t.Helper()
	pid := st.GetRuntimeId()
	if _, err := strconv.Atoi(pid); err != nil || st.GetDetails()["pid"] != pid {
		t.Fatalf("runtime id %q / details %v: want the QEMU pid", pid, st.GetDetails())
	}
	if st.GetDetails()["accel"] != "tcg" || st.GetNodeId() != "node-a" || st.GetRevision() != 1 || st.GetUid() != "uid-1" {
		t.Errorf("status = %v", st)
	}
	if !strings.Contains(st.GetDetails()["portForwards"], "127.0.0.1:"+strconv.Itoa(int(port))+"->80") {
		t.Errorf("portForwards detail = %q", st.GetDetails()["portForwards"])
	}
	if len(st.GetAddresses()) != 1 || st.GetAddresses()[0] != "10.0.2.15" {
		t.Errorf("addresses = %v, want the user-mode guest address", st.GetAddresses())
	}

	return pid
}

// checkFirstBoot waits for the guest of vm1 to boot and checks that it
// read its seed (never showing the password), that the port forward
// reaches its httpd and that Verify finds it alive.
func checkFirstBoot(t *testing.T, r *Runtime, port uint32) {
	t.Helper()
	ctx := context.Background()
	var serial string
	eventually(t, bootTimeout, "the guest to be ready", func() (bool, string) {
		data, _, err := r.Logs(ctx, "vm1", 1<<20)
		if err != nil {
			return false, err.Error()
		}
		serial = string(data)
		return strings.Contains(serial, vmguest.MarkerReady), serial
	})
	for _, want := range []string{
		vmguest.MarkerCidata, "MARKER-persys-vm-test", testKey, "name: ops",
		"instance-id: uid-1-r1", "local-hostname: vm1",
		vmguest.MarkerBase, "vda", "vdb", vmguest.MarkerAddress + " 10.0.2.15",
	} {
		if !strings.Contains(serial, want) {
			t.Errorf("serial console lacks %q:\n%s", want, serial)
		}
	}
	if strings.Contains(serial, testPassword) || !strings.Contains(serial, "plain_text_passwd: [redacted]") {
		t.Errorf("the guest console shows the password (or no redacted password line)")
	}
	// The port forward reaches the guest's httpd.
	eventually(t, 30*time.Second, "the port forward", func() (bool, string) {
		resp, err := http.Get("http://127.0.0.1:" + strconv.Itoa(int(port)) + "/")
		if err != nil {
			return false, err.Error()
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return string(b) == vmguest.HTTPBody, string(b)
	})
	if alive, detail, err := r.Verify(ctx, "vm1"); err != nil || !alive {
		t.Errorf("Verify = %v %q %v, want alive", alive, detail, err)
	}

}

// checkStopped checks that the stopped VM's QEMU is gone after an ACPI
// power-off that Watch reported, and that Verify does not find it alive.
func checkStopped(t *testing.T, r2 *Runtime, stateDir, pid string, watch <-chan string, stopWatch func()) {
	t.Helper()
	ctx := context.Background()
	n, _ := strconv.Atoi(pid)
	if alive(n, filepath.Join(stateDir, "vm1", pidFile)) {
		t.Errorf("QEMU pid %d still runs after the stop", n)
	}
	data, _, err := r2.Logs(ctx, "vm1", 1<<20)
	if err != nil || strings.Count(string(data), vmguest.MarkerPowerOff) != 2 {
		t.Errorf("serial console lacks the ACPI power-off (%v):\n%s", err, data)
	}
	select {
	case name := <-watch:
		if name != "vm1" {
			t.Errorf("Watch sent %q, want vm1", name)
		}
	case <-time.After(30 * time.Second):
		t.Errorf("Watch did not report the stop")
	}
	stopWatch()
	for range watch {
	}
	if ok, _, _ := r2.Verify(ctx, "vm1"); ok {
		t.Errorf("Verify of a stopped VM reports alive")
	}
}

// checkVMDelete deletes vm1 (not for another uid) and checks that its
// process (pid), state folder and disks are gone.
func checkVMDelete(t *testing.T, r2 *Runtime, stateDir, pid string, disks []string) {
	t.Helper()
	ctx := context.Background()
	if existed, err := r2.Delete(ctx, "vm1", "another-uid"); err != nil || existed {
		t.Errorf("Delete of another uid = %v %v, want nothing deleted", existed, err)
	}
	newPid, _ := strconv.Atoi(pid)
	existed, err := r2.Delete(ctx, "vm1", "uid-1")
	if err != nil || !existed {
		t.Fatalf("Delete = %v %v", existed, err)
	}
	if _, err := procState(newPid); err == nil {
		if alive(newPid, filepath.Join(stateDir, "vm1", pidFile)) {
			t.Errorf("QEMU pid %d survives Delete", newPid)
		}
	}
	for _, d := range disks {
		if _, err := os.Stat(d); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("disk %s survives Delete: %v", d, err)
		}
	}
	if _, err := os.Stat(filepath.Join(stateDir, "vm1")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("state folder survives Delete: %v", err)
	}
	st, err := r2.Status(ctx, "vm1")
	if err != nil || st.GetState() != persysv1.ActualState_ACTUAL_STATE_MISSING {
		t.Errorf("Status after Delete = %v %v, want MISSING", st, err)
	}

}

// basePool makes a pool with a small raw base image made by qemu-img.
func basePool(t *testing.T) string {
	t.Helper()
	vmguest.QEMUOrSkip(t)
	pool := t.TempDir()
	if out, err := exec.Command("qemu-img", "create", "-q", "-f", "raw", filepath.Join(pool, "base.raw"), "16M").CombinedOutput(); err != nil {
		t.Fatalf("qemu-img: %v: %s", err, out)
	}
	return pool
}

func TestDiskRetainPolicy(t *testing.T) {
	pool := basePool(t)
	r := newRuntime(t, t.TempDir(), map[string]string{"p": pool}, nil)
	ctx := context.Background()
	for _, tt := range []struct {
		name   string
		retain persysv1.RetainPolicy
		kept   bool
	}{
		{"delete", persysv1.RetainPolicy_RETAIN_POLICY_UNSPECIFIED, false},
		{"retain", persysv1.RetainPolicy_RETAIN_POLICY_RETAIN, true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			vm := &persysv1.VMSpec{
				Disks: []*persysv1.VMDisk{
					{Name: "root", Pool: "p", BaseImage: "base.raw", BootIndex: 1},
					{Name: "copy", Pool: "p", BaseImage: "base.raw", FullCopy: true, SizeBytes: 32 << 20},
					{Name: "blank", Pool: "p", SizeBytes: 8 << 20},
				},
				DiskRetain: tt.retain,
			}
			name := "vm-" + tt.name
			st, _, err := r.Apply(ctx, vmInstance(name, "u-"+tt.name, 1, persysv1.DesiredState_DESIRED_STATE_STOPPED, vm))
			if err != nil {
				t.Fatalf("Apply: %v", err)
			}
			if st.GetState() != persysv1.ActualState_ACTUAL_STATE_STOPPED {
				t.Fatalf("state = %v, want STOPPED (never started)", st.GetState())
			}
			var paths []string
			for _, d := range []string{"root", "copy", "blank"} {
				p := filepath.Join(pool, "persys", "node-a", name, d+".qcow2")
				if _, err := os.Stat(p); err != nil {
					t.Fatalf("disk %s: %v", d, err)
				}
				paths = append(paths, p)
			}
			if out, err := exec.Command("qemu-img", "info", "-U", paths[1]).CombinedOutput(); err != nil || strings.Contains(string(out), "backing file") || !strings.Contains(string(out), "virtual size: 32 MiB") {
				t.Errorf("full copy (%v):\n%s", err, out)
			}
			existed, err := r.Delete(ctx, name, "")
			if err != nil || !existed {
				t.Fatalf("Delete = %v %v", existed, err)
			}
			for _, p := range paths {
				_, err := os.Stat(p)
				if tt.kept && err != nil {
					t.Errorf("retained disk %s is gone: %v", p, err)
				}
				if !tt.kept && !errors.Is(err, os.ErrNotExist) {
					t.Errorf("disk %s survives Delete: %v", p, err)
				}
			}
		})
	}
}

func TestApplyRejectsBadInput(t *testing.T) {
	pool := basePool(t)
	if err := os.WriteFile(filepath.Join(pool, "bad-kernel"), []byte("not a kernel"), 0o644); err != nil {
		t.Fatal(err)
	}
	stateDir := t.TempDir()
	r := newRuntime(t, stateDir, map[string]string{"p": pool}, nil)
	ctx := context.Background()
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	busyPort := uint32(busy.Addr().(*net.TCPAddr).Port)

	disk := func(d *persysv1.VMDisk) *persysv1.VMSpec { return &persysv1.VMSpec{Disks: []*persysv1.VMDisk{d}} }
	root := &persysv1.VMDisk{Name: "root", Pool: "p", BaseImage: "base.raw", BootIndex: 1}
	withCI := func(ci *persysv1.CloudInit) *persysv1.VMSpec {
		return &persysv1.VMSpec{Disks: []*persysv1.VMDisk{root}, CloudInit: ci}
	}
	tests := []struct {
		name    string
		vm      *persysv1.VMSpec
		desired persysv1.DesiredState
		reason  persysv1.FailureReason
		field   string
	}{
		{"no vm spec", nil, 0, persysv1.FailureReason_FAILURE_REASON_INVALID_SPEC, "spec.vm"},
		{"unknown pool", disk(&persysv1.VMDisk{Name: "root", Pool: "nope", BaseImage: "base.raw"}), 0, persysv1.FailureReason_FAILURE_REASON_STORAGE, "spec.vm.disks[0].pool"},
		{"missing base image", disk(&persysv1.VMDisk{Name: "root", Pool: "p", BaseImage: "missing.qcow2"}), 0, persysv1.FailureReason_FAILURE_REASON_STORAGE, "spec.vm.disks[0].baseImage"},
		{"base outside pool", disk(&persysv1.VMDisk{Name: "root", Pool: "p", BaseImage: "../etc/passwd"}), 0, persysv1.FailureReason_FAILURE_REASON_INVALID_SPEC, "spec.vm.disks[0].baseImage"},
		{"blank without size", disk(&persysv1.VMDisk{Name: "data", Pool: "p"}), 0, persysv1.FailureReason_FAILURE_REASON_INVALID_SPEC, "spec.vm.disks[0].sizeBytes"},
		{"bad disk name", disk(&persysv1.VMDisk{Name: "Root/x", Pool: "p", SizeBytes: 1 << 20}), 0, persysv1.FailureReason_FAILURE_REASON_INVALID_SPEC, "spec.vm.disks[0].name"},
		{"missing iso", disk(&persysv1.VMDisk{Name: "cd", Pool: "p", Iso: "none.iso"}), 0, persysv1.FailureReason_FAILURE_REASON_STORAGE, "spec.vm.disks[0].iso"},
		{"missing kernel", &persysv1.VMSpec{KernelBoot: &persysv1.VMKernelBoot{Pool: "p", Kernel: "vmlinuz"}}, 0, persysv1.FailureReason_FAILURE_REASON_STORAGE, "spec.vm.kernelBoot.kernel"},
		{"nothing to boot", &persysv1.VMSpec{}, 0, persysv1.FailureReason_FAILURE_REASON_INVALID_SPEC, "spec.vm.disks"},
		{"too many vcpus", &persysv1.VMSpec{Vcpus: 1000, Disks: []*persysv1.VMDisk{root}}, 0, persysv1.FailureReason_FAILURE_REASON_INVALID_SPEC, "spec.vm.vcpus"},
		{"kvm on a tcg node", &persysv1.VMSpec{Accel: "kvm", Disks: []*persysv1.VMDisk{root}}, 0, persysv1.FailureReason_FAILURE_REASON_INVALID_SPEC, "spec.vm.accel"},
		{"bad network mode", &persysv1.VMSpec{Disks: []*persysv1.VMDisk{root}, Networks: []*persysv1.VMNetwork{{Mode: "nat"}}}, 0, persysv1.FailureReason_FAILURE_REASON_INVALID_SPEC, "spec.vm.networks[0].mode"},
		{"bad guest port", &persysv1.VMSpec{Disks: []*persysv1.VMDisk{root}, Networks: []*persysv1.VMNetwork{{PortForwards: []*persysv1.VMPortForward{{HostPort: 8080}}}}}, 0, persysv1.FailureReason_FAILURE_REASON_INVALID_SPEC, "spec.vm.networks[0].portForwards[0].guestPort"},
		{"bad mac", &persysv1.VMSpec{Disks: []*persysv1.VMDisk{root}, Networks: []*persysv1.VMNetwork{{Mac: "zz"}}}, 0, persysv1.FailureReason_FAILURE_REASON_INVALID_SPEC, "spec.vm.networks[0].mac"},
		{"invalid cloud-init yaml", withCI(&persysv1.CloudInit{UserData: "#cloud-config\nruncmd: [oops\n"}), 0, persysv1.FailureReason_FAILURE_REASON_INVALID_SPEC, "spec.vm.cloudInit.userData"},
		{"nul in user-data", withCI(&persysv1.CloudInit{UserData: "#!/bin/sh\necho \x00\n"}), 0, persysv1.FailureReason_FAILURE_REASON_INVALID_SPEC, "spec.vm.cloudInit.userData"},
		{"oversize user-data", withCI(&persysv1.CloudInit{UserData: "#!/bin/sh\n" + strings.Repeat("#", 70<<10)}), 0, persysv1.FailureReason_FAILURE_REASON_INVALID_SPEC, "spec.vm.cloudInit.userData"},
		{"bad meta-data", withCI(&persysv1.CloudInit{MetaData: "- a list\n"}), 0, persysv1.FailureReason_FAILURE_REASON_INVALID_SPEC, "spec.vm.cloudInit.metaData"},
		{"password secret not delivered", &persysv1.VMSpec{Disks: []*persysv1.VMDisk{root}, Login: &persysv1.VMLogin{User: "ops", GeneratePassword: true, PasswordSecret: "absent"}}, 0, persysv1.FailureReason_FAILURE_REASON_SECRET_NOT_FOUND, "absent"},
		{"kernel QEMU cannot load", &persysv1.VMSpec{KernelBoot: &persysv1.VMKernelBoot{Pool: "p", Kernel: "bad-kernel"}}, 0, persysv1.FailureReason_FAILURE_REASON_VM_BOOT_FAILED, "QEMU"},
		{"host port in use", &persysv1.VMSpec{Disks: []*persysv1.VMDisk{root}, Networks: []*persysv1.VMNetwork{{PortForwards: []*persysv1.VMPortForward{{HostPort: busyPort, GuestPort: 22}}}}}, 0, persysv1.FailureReason_FAILURE_REASON_PORT_CONFLICT, "forward"},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			name := "bad-" + strconv.Itoa(i)
			t.Cleanup(func() { _, _ = r.Delete(context.Background(), name, "") })
			_, _, err := r.Apply(ctx, vmInstance(name, "u", 1, persysv1.DesiredState_DESIRED_STATE_RUNNING, tt.vm))
			if err == nil {
				t.Fatalf("Apply succeeded, want %s", tt.reason)
			}
			if got := reasonOf(t, err); got != tt.reason {
				t.Errorf("reason = %s, want %s (%v)", got, tt.reason, err)
			}
			if !strings.Contains(err.Error(), tt.field) {
				t.Errorf("error %q does not name %q", err, tt.field)
			}
			st, err := r.Status(ctx, name)
			if err != nil {
				t.Fatal(err)
			}
			started := tt.reason == persysv1.FailureReason_FAILURE_REASON_VM_BOOT_FAILED || tt.reason == persysv1.FailureReason_FAILURE_REASON_NETWORK ||
				tt.reason == persysv1.FailureReason_FAILURE_REASON_PORT_CONFLICT
			if !started {
				// Rejected before anything was made.
				if st.GetState() != persysv1.ActualState_ACTUAL_STATE_MISSING {
					t.Errorf("status after a rejected spec = %v, want MISSING", st)
				}
				return
			}
			// QEMU failed to start: the VM is recorded as failed and Delete
			// cleans up what the Apply made.
			if st.GetState() != persysv1.ActualState_ACTUAL_STATE_FAILED || st.GetMessage() == "" {
				t.Errorf("status after a failed start = %v, want FAILED with a message", st)
			}
			if existed, err := r.Delete(ctx, name, ""); err != nil || !existed {
				t.Errorf("Delete = %v %v, want the failed VM deleted", existed, err)
			}
			if _, err := os.Stat(filepath.Join(pool, "persys", "node-a", name)); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("disks of the failed VM survive Delete: %v", err)
			}
		})
	}
}

func TestSerialLogCap(t *testing.T) {
	stateDir := t.TempDir()
	r, err := New(Config{NodeID: "n", StateDir: stateDir, Accel: "tcg", SerialLogCap: 8192, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Join(stateDir, "vm"), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := r.saveRecord(&record{Name: "vm", UID: "u", Revision: 1, Node: "n", Desired: desiredStopped}); err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	for i := 0; b.Len() < 20000; i++ {
		b.WriteString("line " + strconv.Itoa(i) + "\n")
	}
	if err := os.WriteFile(filepath.Join(stateDir, "vm", serialLog), []byte(b.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	st, err := r.Status(context.Background(), "vm")
	if err != nil || st.GetState() != persysv1.ActualState_ACTUAL_STATE_STOPPED {
		t.Fatalf("Status = %v %v", st, err)
	}
	fi, err := os.Stat(filepath.Join(stateDir, "vm", serialLog))
	if err != nil || fi.Size() > 8192 {
		t.Fatalf("serial log is %v bytes (%v), want at most the cap", fi.Size(), err)
	}
	data, truncated, err := r.Logs(context.Background(), "vm", 100)
	if err != nil || !truncated || len(data) > 100 {
		t.Fatalf("Logs = %d bytes truncated=%v err=%v", len(data), truncated, err)
	}
	if !strings.HasSuffix(string(data), "\n") || !strings.Contains(b.String(), string(data)) {
		t.Errorf("tail %q is not the end of the log", data)
	}
	all, _, err := r.Logs(context.Background(), "vm", 0)
	if err != nil || !strings.HasPrefix(string(all), cutMarker) || !strings.HasSuffix(b.String(), strings.TrimPrefix(string(all), cutMarker)) {
		t.Errorf("kept log does not start with the marker and end with the newest lines")
	}
	if _, _, err := r.Logs(context.Background(), "other", 10); err == nil {
		t.Errorf("Logs of an unknown VM succeeded")
	}
}

func TestArgsAndMAC(t *testing.T) {
	pool := t.TempDir()
	for _, f := range []string{"k", "cd.iso", "base.qcow2"} {
		if err := os.WriteFile(filepath.Join(pool, f), []byte("x"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	r, err := New(Config{NodeID: "n", StateDir: t.TempDir(), Pools: map[string]string{"p": pool}, Accel: "tcg"})
	if err != nil {
		t.Fatal(err)
	}
	if r.Accel() != "tcg" || r.Type() != persysv1.WorkloadType_WORKLOAD_TYPE_VM {
		t.Errorf("Accel/Type = %s/%s", r.Accel(), r.Type())
	}
	inst := vmInstance("web", "uid-9", 3, 0, &persysv1.VMSpec{
		Vcpus:      2,
		KernelBoot: &persysv1.VMKernelBoot{Pool: "p", Kernel: "k", Cmdline: "console=ttyS0"},
		Disks: []*persysv1.VMDisk{
			{Name: "root", Pool: "p", BaseImage: "base.qcow2", BootIndex: 2},
			{Name: "cd", Pool: "p", Iso: "cd.iso", BootIndex: 1},
		},
		Networks: []*persysv1.VMNetwork{
			{PortForwards: []*persysv1.VMPortForward{{HostPort: 2222, GuestPort: 22}, {HostPort: 5353, GuestPort: 53, Protocol: "udp", HostIp: "127.0.0.2"}}},
			{Mode: "bridge", Bridge: "br0", Mac: "02:00:00:00:00:01"},
		},
	})
	p, err := r.buildPlan(inst)
	if err != nil {
		t.Fatalf("buildPlan: %v", err)
	}
	if p.memMiB != 512 || p.vcpus != 2 {
		t.Errorf("memory %d MiB, vcpus %d", p.memMiB, p.vcpus)
	}
	args, err := r.qemuArgs("web", p, "/state/web", "/state/web/seed.iso")
	if err != nil {
		t.Fatal(err)
	}
	joined := strings.Join(args, " ")
	for _, want := range []string{
		"-accel tcg,tb-size=64", "-smp 2", "-m 512M", "-daemonize", "-pidfile /state/web/qemu.pid",
		"-qmp unix:/state/web/qmp.sock,server=on,wait=off",
		"file,id=serial0,path=/state/web/serial.log,append=on",
		"name=org.qemu.guest_agent.0",
		"-kernel " + filepath.Join(pool, "k"), "-append console=ttyS0",
		"file=" + filepath.Join(pool, "persys", "n", "web", "root.qcow2") + ",if=none,id=disk-root,format=qcow2",
		"virtio-blk-pci,drive=disk-root,serial=root,bootindex=2",
		"file=" + filepath.Join(pool, "cd.iso") + ",if=none,id=disk-cd,media=cdrom",
		"ide-cd,bus=ide.0,unit=0,drive=disk-cd,bootindex=1",
		"ide-cd,bus=ide.1,unit=0,drive=cidata",
		"user,id=net0,hostfwd=tcp:127.0.0.1:2222-:22,hostfwd=udp:127.0.0.2:5353-:53",
		"bridge,id=net1,br=br0", "virtio-net-pci,netdev=net1,mac=02:00:00:00:00:01",
	} {
		if !strings.Contains(joined, want) {
			t.Errorf("args lack %q:\n%s", want, joined)
		}
	}
	m1, m2 := deriveMAC("uid-9", 0), deriveMAC("uid-9", 0)
	hw, err := net.ParseMAC(m1)
	if err != nil || m1 != m2 || hw[0]&0x02 == 0 || hw[0]&0x01 != 0 {
		t.Errorf("derived MAC %q is not a stable locally administered unicast address", m1)
	}
	if deriveMAC("uid-9", 1) == m1 || deriveMAC("uid-8", 0) == m1 {
		t.Errorf("derived MACs collide")
	}
	if a := DetectAccel(); a != "kvm" && a != "tcg" {
		t.Errorf("DetectAccel = %q", a)
	}
}

func TestNewRejectsBadConfig(t *testing.T) {
	for name, cfg := range map[string]Config{
		"no state dir":  {},
		"relative pool": {StateDir: t.TempDir(), Pools: map[string]string{"p": "rel"}},
		"missing pool":  {StateDir: t.TempDir(), Pools: map[string]string{"p": "/nonexistent/pool"}},
		"bad accel":     {StateDir: t.TempDir(), Accel: "hvf"},
		"negative cap":  {StateDir: t.TempDir(), SerialLogCap: -1},
	} {
		if _, err := New(cfg); err == nil {
			t.Errorf("%s: New succeeded", name)
		}
	}
}

func TestStatusWithoutProcess(t *testing.T) {
	stateDir := t.TempDir()
	r, err := New(Config{NodeID: "n", StateDir: stateDir, Accel: "tcg", Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Join(stateDir, "vm"), 0o700); err != nil {
		t.Fatal(err)
	}
	// A pidfile naming a live process that is not this VM's QEMU (our own
	// pid) must not count as the VM.
	if err := os.WriteFile(filepath.Join(stateDir, "vm", pidFile), []byte(strconv.Itoa(os.Getpid())), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := r.saveRecord(&record{Name: "vm", UID: "u", Revision: 2, Node: "n", Desired: desiredRunning, Accel: "tcg"}); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	for _, tt := range []struct {
		name   string
		busy   bool
		state  persysv1.ActualState
		reason persysv1.FailureReason
	}{
		{"apply in progress", true, persysv1.ActualState_ACTUAL_STATE_CREATING, 0},
		{"process gone", false, persysv1.ActualState_ACTUAL_STATE_FAILED, persysv1.FailureReason_FAILURE_REASON_RUNTIME_ERROR},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if tt.busy {
				r.setBusy("vm", 1)
				defer r.setBusy("vm", -1)
			}
			st, err := r.Status(ctx, "vm")
			if err != nil {
				t.Fatal(err)
			}
			if st.GetState() != tt.state || st.GetReason() != tt.reason || st.GetRevision() != 2 || st.GetRuntimeId() != "" {
				t.Errorf("Status = %v, want %s %s", st, tt.state, tt.reason)
			}
		})
	}
	if ok, detail, err := r.Verify(ctx, "vm"); err != nil || ok || detail == "" {
		t.Errorf("Verify = %v %q %v, want dead with a detail", ok, detail, err)
	}
	// A record of another node is invisible.
	if err := r.saveRecord(&record{Name: "vm", UID: "u", Revision: 2, Node: "other"}); err != nil {
		t.Fatal(err)
	}
	if st, err := r.Status(ctx, "vm"); err != nil || st.GetState() != persysv1.ActualState_ACTUAL_STATE_MISSING {
		t.Errorf("Status of another node's VM = %v %v, want MISSING", st, err)
	}
	if l, err := r.List(ctx); err != nil || len(l) != 0 {
		t.Errorf("List = %v %v, want nothing", l, err)
	}
}

func TestGuestAgentAddresses(t *testing.T) {
	dir, err := os.MkdirTemp("", "qga")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(dir)
	sock := filepath.Join(dir, "qga.sock")
	l, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	// A fake guest agent: answers guest-sync with its id, then the
	// interfaces.
	go func() {
		c, err := l.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		dec := json.NewDecoder(c)
		var req struct {
			Execute   string         `json:"execute"`
			Arguments map[string]any `json:"arguments"`
		}
		if dec.Decode(&req) != nil || req.Execute != "guest-sync" {
			return
		}
		_ = json.NewEncoder(c).Encode(map[string]any{"return": req.Arguments["id"]})
		if dec.Decode(&req) != nil || req.Execute != "guest-network-get-interfaces" {
			return
		}
		_, _ = io.WriteString(c, `{"return":[{"name":"lo","ip-addresses":[{"ip-address-type":"ipv4","ip-address":"127.0.0.1"}]},`+
			`{"name":"eth0","ip-addresses":[{"ip-address-type":"ipv4","ip-address":"192.168.122.5"},{"ip-address-type":"ipv6","ip-address":"fe80::1"},{"ip-address-type":"ipv6","ip-address":"fd00::5"}]}]}`+"\n")
	}()
	addrs, err := guestAddresses(context.Background(), sock, 5*time.Second)
	if err != nil {
		t.Fatalf("guestAddresses: %v", err)
	}
	if strings.Join(addrs, ",") != "192.168.122.5,fd00::5" {
		t.Errorf("addresses = %v, want the non-loopback, non-link-local ones", addrs)
	}
}

// TestHardStop stops a VM whose guest cannot handle the power button yet
// (it is still booting): after stopTimeoutSeconds QEMU is ended anyway.
func TestHardStop(t *testing.T) {
	pool := guestPool(t)
	var logs syncBuffer
	r := newRuntime(t, t.TempDir(), map[string]string{"g": pool}, &logs)
	ctx := context.Background()
	vm := &persysv1.VMSpec{
		MemoryBytes:        128 << 20,
		KernelBoot:         &persysv1.VMKernelBoot{Pool: "g", Kernel: "vmlinuz", Initrd: "initrd.img", Cmdline: "console=ttyS0 quiet"},
		StopTimeoutSeconds: 1,
	}
	t.Cleanup(func() { _, _ = r.Delete(context.Background(), "hard", "") })
	st, _, err := r.Apply(ctx, vmInstance("hard", "u-hard", 1, persysv1.DesiredState_DESIRED_STATE_RUNNING, vm))
	if err != nil || st.GetState() != persysv1.ActualState_ACTUAL_STATE_RUNNING {
		t.Fatalf("Apply = %v %v", st, err)
	}
	pid, _ := strconv.Atoi(st.GetRuntimeId())
	st, _, err = r.Apply(ctx, vmInstance("hard", "u-hard", 1, persysv1.DesiredState_DESIRED_STATE_STOPPED, vm))
	if err != nil || st.GetState() != persysv1.ActualState_ACTUAL_STATE_STOPPED {
		t.Fatalf("Apply stopped = %v %v, want STOPPED", st, err)
	}
	if _, err := procState(pid); err == nil && alive(pid, filepath.Join(r.stateDir("hard"), pidFile)) {
		t.Errorf("QEMU pid %d survives the stop", pid)
	}
	if !strings.Contains(logs.String(), "VM stopped") {
		t.Errorf("the stop was not logged:\n%s", logs.String())
	}
}
