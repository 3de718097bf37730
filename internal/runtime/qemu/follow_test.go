package qemu

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	persysv1 "github.com/persys-dev/compute/api/persys/v1"
	"github.com/persys-dev/compute/internal/runtime"
	"github.com/persys-dev/compute/internal/testutil/vmguest"
)

// followed collects what a FollowLogs emits.
type followed struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (f *followed) emit(p []byte) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.buf.Write(p)
	return nil
}

func (f *followed) String() string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.buf.String()
}

// startFollow runs FollowLogs in the background; stop ends it and
// returns its error.
func startFollow(r *Runtime, name string, lf runtime.LogFollow) (*followed, func() error) {
	ctx, cancel := context.WithCancel(context.Background())
	out := &followed{}
	done := make(chan error, 1)
	go func() { done <- r.FollowLogs(ctx, name, lf, out.emit) }()
	return out, func() error { cancel(); return <-done }
}

// TestFollowSerialConsoleFile follows a VM record's console file without
// QEMU: the tail, then appended lines, across the runtime's own cut.
func TestFollowSerialConsoleFile(t *testing.T) {
	stateDir := t.TempDir()
	r, err := New(Config{NodeID: "n", StateDir: stateDir, Accel: "tcg", SerialLogCap: 4096, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Join(stateDir, "vm"), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := r.saveRecord(&record{Name: "vm", UID: "u", Revision: 1, Node: "n", Desired: desiredStopped}); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(stateDir, "vm", serialLog)
	if err := os.WriteFile(path, []byte("early boot\nlogin: \n"), 0o600); err != nil {
		t.Fatal(err)
	}
	out, stop := startFollow(r, "vm", runtime.LogFollow{TailBytes: 8})
	eventually(t, 10*time.Second, "the tail", func() (bool, string) { return out.String() == "login: \n", out.String() })
	var want strings.Builder
	want.WriteString("login: \n")
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	// Past the cap: Status cuts the file in place while the follow reads.
	for i := range 400 {
		line := "console line " + string(rune('a'+i%26)) + strings.Repeat(".", i%7) + "\n"
		want.WriteString(line)
		if _, err := f.WriteString(line); err != nil {
			t.Fatal(err)
		}
		if i%40 == 39 {
			eventually(t, 10*time.Second, "the appended lines", func() (bool, string) { return out.String() == want.String(), out.String() })
			if _, err := r.Status(context.Background(), "vm"); err != nil {
				t.Fatal(err)
			}
		}
	}
	eventually(t, 10*time.Second, "every line once, in order", func() (bool, string) { return out.String() == want.String(), out.String() })
	if data, _ := os.ReadFile(path); !bytes.HasPrefix(data, []byte(cutMarker)) {
		t.Fatalf("the console was never cut; the test did not test the cut:\n%s", data)
	}
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	for _, bad := range []struct {
		lf   runtime.LogFollow
		want error
	}{
		{runtime.LogFollow{Since: time.Now()}, runtime.ErrLogSince},
		{runtime.LogFollow{Service: "web"}, runtime.ErrLogService},
	} {
		if err := r.FollowLogs(context.Background(), "vm", bad.lf, func([]byte) error { return nil }); !errors.Is(err, bad.want) {
			t.Errorf("FollowLogs(%+v) = %v, want %v", bad.lf, err, bad.want)
		}
	}
	if err := r.FollowLogs(context.Background(), "other", runtime.LogFollow{}, func([]byte) error { return nil }); err == nil {
		t.Error("FollowLogs of an unknown VM succeeded")
	}
}

// TestFollowBootingVM follows a real guest's console from the moment QEMU
// starts: the boot's lines arrive as the guest prints them.
func TestFollowBootingVM(t *testing.T) {
	pool := guestPool(t)
	vmguest.QEMUOrSkip(t)
	r := newRuntime(t, t.TempDir(), map[string]string{"default": pool}, nil)
	vm := &persysv1.VMSpec{
		Vcpus: 1, MemoryBytes: 256 << 20,
		KernelBoot:         &persysv1.VMKernelBoot{Pool: "default", Kernel: "vmlinuz", Initrd: "initrd.img", Cmdline: "console=ttyS0 quiet"},
		Disks:              []*persysv1.VMDisk{{Name: "root", Pool: "default", BaseImage: "base.raw", BootIndex: 1}},
		StopTimeoutSeconds: 5,
	}
	t.Cleanup(func() { _, _ = r.Delete(context.Background(), "vmf", "") })
	if _, _, err := r.Apply(context.Background(), vmInstance("vmf", "uid-f", 1, persysv1.DesiredState_DESIRED_STATE_RUNNING, vm)); err != nil {
		t.Fatalf("Apply: %v", err)
	}
	out, stop := startFollow(r, "vmf", runtime.LogFollow{TailBytes: 1 << 20})
	eventually(t, bootTimeout, "the ready marker on the followed console", func() (bool, string) {
		return strings.Contains(out.String(), vmguest.MarkerReady), out.String()
	})
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	data, _, err := r.Logs(context.Background(), "vmf", 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	if got := out.String(); !strings.HasPrefix(string(data), got) {
		t.Fatalf("the followed console is not the console's start (repeated or lost bytes):\nfollowed:\n%s\nconsole:\n%s", got, data)
	}
}
