package qemu

import (
	"context"
	"crypto/rand"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	persysv1 "github.com/persys-dev/compute/api/persys/v1"
)

func TestWithPanicSetting(t *testing.T) {
	for _, tt := range []struct{ in, want string }{
		{"", "panic=1"},
		{"console=ttyS0", "console=ttyS0 panic=1"},
		{"console=ttyS0 panic=-1", "console=ttyS0 panic=-1"},
		{"panic=0 quiet", "panic=0 quiet"},
		{"console=ttyS0 oops=panic", "console=ttyS0 oops=panic panic=1"},
	} {
		if got := withPanicSetting(tt.in); got != tt.want {
			t.Errorf("withPanicSetting(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

func TestConsoleExcerpts(t *testing.T) {
	console := "[    1.3] Initramfs unpacking failed: invalid magic\r\n" +
		"[    2.1] VFS: Cannot open root device \"(null)\"\n" +
		"[    2.2] Please append a correct \"root=\" boot option\n" +
		"[    2.3] List of all partitions:\n" +
		"[    2.35]\n" +
		"[    2.4] Kernel panic - not syncing: VFS: Unable to mount root fs on unknown-block(0,0)\n" +
		"[    2.5] CPU: 0 PID: 1 Comm: swapper/0\n"
	got := kernelPanic(console)
	if !strings.Contains(got, "Kernel panic - not syncing: VFS: Unable to mount root fs") ||
		!strings.Contains(got, "Please append") || strings.Contains(got, "Initramfs") || strings.Contains(got, "CPU: 0") || strings.Contains(got, "2.35") {
		t.Errorf("kernelPanic = %q", got)
	}
	if got := kernelPanic("[ 1.0] all fine\n"); got != "" {
		t.Errorf("kernelPanic without a panic = %q", got)
	}
	tail := consoleTail("a\nchpasswd: ops:Secret-1\n\n b \nc\n", 3)
	if tail != "a | b | c" {
		t.Errorf("consoleTail = %q, want the last lines without the password", tail)
	}
	if long := kernelPanic("Kernel panic " + strings.Repeat("x", 5000)); len(long) > maxConsoleMessage+8 {
		t.Errorf("kernelPanic is %d bytes, want it clipped", len(long))
	}
}

// TestBootFailureClassification: a VM that should run but whose QEMU is gone
// is a boot failure when the runtime first sees it gone within the boot
// window (Status notes that time) or the console since its start shows a
// kernel panic, and a runtime error otherwise.
func TestBootFailureClassification(t *testing.T) {
	stateDir := t.TempDir()
	r, err := New(Config{NodeID: "n", StateDir: stateDir, Accel: "tcg", BootWindow: time.Minute,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	oldPanic := "[ 0.1] Kernel panic - not syncing: an earlier boot\n"
	newPanic := "[ 2.4] Kernel panic - not syncing: VFS: Unable to mount root fs on unknown-block(0,0)\n"
	ctx := context.Background()
	for _, tt := range []struct {
		name    string
		started time.Duration // before now; 0: unknown
		console string        // serial log after the offset
		reason  persysv1.FailureReason
		want    string
	}{
		{"started by an older runtime", 0, "", persysv1.FailureReason_FAILURE_REASON_RUNTIME_ERROR, "QEMU is not running"},
		{"exited right after start", 5 * time.Second, "booting\n", persysv1.FailureReason_FAILURE_REASON_VM_BOOT_FAILED, "console: booting"},
		{"ran fine, then died", time.Hour, "login:\n", persysv1.FailureReason_FAILURE_REASON_RUNTIME_ERROR, "QEMU is not running"},
		{"panic on the console", time.Hour, newPanic, persysv1.FailureReason_FAILURE_REASON_VM_BOOT_FAILED, "Unable to mount root fs"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			name := strings.NewReplacer(" ", "-", ",", "").Replace(tt.name)
			sd := filepath.Join(stateDir, name)
			if err := os.MkdirAll(sd, 0o700); err != nil {
				t.Fatal(err)
			}
			// The panic of an earlier boot lies before the offset.
			if err := os.WriteFile(filepath.Join(sd, serialLog), []byte(oldPanic+tt.console), 0o600); err != nil {
				t.Fatal(err)
			}
			rec := &record{Name: name, UID: "u", Revision: 1, Node: "n", Desired: desiredRunning, Accel: "tcg",
				SerialOffset: int64(len(oldPanic))}
			if tt.started > 0 {
				rec.StartedAt = time.Now().Add(-tt.started).UTC()
			}
			if err := r.saveRecord(rec); err != nil {
				t.Fatal(err)
			}
			st, err := r.Status(ctx, name)
			if err != nil {
				t.Fatal(err)
			}
			if st.GetState() != persysv1.ActualState_ACTUAL_STATE_FAILED || st.GetReason() != tt.reason ||
				!strings.Contains(st.GetMessage(), tt.want) || strings.Contains(st.GetMessage(), "an earlier boot") {
				t.Errorf("Status = %s %s %q, want FAILED %s with %q", st.GetState(), st.GetReason(), st.GetMessage(), tt.reason, tt.want)
			}
		})
	}
}

// TestBootFailure boots the test guest's kernel so that it cannot mount a
// root and panics: with an initrd that is not an initramfs (random bytes;
// panic=1 is appended and -no-reboot makes QEMU exit), with no initrd and
// the user's own panic=1, and with panic=0 (the kernel halts, QEMU stays up
// and the runtime must end it). Each ends FAILED with VM_BOOT_FAILED naming
// the panic — from Apply itself or, when the guest is slower than Apply's
// boot check, from Status — and leaves no QEMU behind a failed Apply.
func TestBootFailure(t *testing.T) {
	pool := guestPool(t)
	junk := make([]byte, 256<<10)
	if _, err := rand.Read(junk); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(pool, "junk.img"), junk, 0o644); err != nil {
		t.Fatal(err)
	}
	r := newRuntime(t, t.TempDir(), map[string]string{"default": pool}, nil)
	ctx := context.Background()
	for _, tt := range []struct {
		name   string
		initrd string
		cmd    string
	}{
		{"junk-initrd", "junk.img", "console=ttyS0"},
		{"no-root", "", "console=ttyS0 panic=1"},
		{"halts", "", "console=ttyS0 panic=0"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			inst := vmInstance(tt.name, "uid-"+tt.name, 1, persysv1.DesiredState_DESIRED_STATE_RUNNING, &persysv1.VMSpec{
				Vcpus:       1,
				MemoryBytes: 128 << 20,
				KernelBoot:  &persysv1.VMKernelBoot{Pool: "default", Kernel: "vmlinuz", Initrd: tt.initrd, Cmdline: tt.cmd},
			})
			t.Cleanup(func() { _, _ = r.Delete(context.Background(), tt.name, "") })

			st, _, err := r.Apply(ctx, inst)
			if err != nil {
				if reasonOf(t, err) != persysv1.FailureReason_FAILURE_REASON_VM_BOOT_FAILED || !strings.Contains(err.Error(), "Kernel panic") {
					t.Fatalf("Apply: %v, want VM_BOOT_FAILED naming the kernel panic", err)
				}
				// The panicked guest does not linger.
				eventually(t, 30*time.Second, "QEMU gone", func() (bool, string) {
					ok, detail, err := r.Verify(ctx, tt.name)
					return err == nil && !ok, detail
				})
			} else {
				t.Logf("Apply returned %s before the guest panicked; Status must report it", st.GetState())
			}
			eventually(t, bootTimeout, "FAILED with VM_BOOT_FAILED", func() (bool, string) {
				st, err := r.Status(ctx, tt.name)
				if err != nil {
					return false, err.Error()
				}
				return st.GetState() == persysv1.ActualState_ACTUAL_STATE_FAILED &&
					st.GetReason() == persysv1.FailureReason_FAILURE_REASON_VM_BOOT_FAILED &&
					strings.Contains(st.GetMessage(), "Unable to mount root fs"), st.String()
			})
			if found, err := r.Delete(ctx, tt.name, ""); err != nil || !found {
				t.Fatalf("Delete = %v %v", found, err)
			}
			if _, err := os.Stat(r.stateDir(tt.name)); !os.IsNotExist(err) {
				t.Errorf("state folder left after Delete: %v", err)
			}
		})
	}
}
