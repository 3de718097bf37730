// Package vmguest provides the VM test guest to tests: a Debian kernel and a
// busybox initramfs built by scripts/build-test-guest.sh (no disk image is
// downloaded). The guest is built once into a cache folder
// (os.UserCacheDir()/persys-test-guest, else os.TempDir()/persys-test-guest,
// or $PERSYS_TEST_GUEST_DIR) and reused
// across runs and packages. A test that needs the guest or QEMU fails when env
// CI is set and they are missing, and skips otherwise.
//
// What the guest prints on its serial console is described in the script;
// the constants below are the lines tests wait for.
package vmguest

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/persys-dev/compute/internal/testutil/images"
	"github.com/persys-dev/compute/internal/testutil/need"
)

// Lines the guest prints on ttyS0.
const (
	// MarkerCidata starts the line printed once the NoCloud seed is mounted.
	MarkerCidata = "persys-guest: cidata found on"
	// MarkerUserDataBegin and MarkerUserDataEnd enclose the whole user-data.
	MarkerUserDataBegin = "persys-guest: user-data begin"
	MarkerUserDataEnd   = "persys-guest: user-data end"
	// MarkerAddress starts the line with eth0's address.
	MarkerAddress = "persys-guest: eth0 address"
	// MarkerBase is printed when /dev/vda holds the base image's ext4.
	MarkerBase = "persys-guest: vda says persys base image"
	// MarkerReady is printed when init is done (httpd on port 80, acpid up).
	MarkerReady = "persys-guest: ready"
	// MarkerPowerOff is printed by the ACPI power-button handler.
	MarkerPowerOff = "persys-guest: power button, powering off"
	// HTTPBody is what the guest's httpd serves on port 80 at /.
	HTTPBody = "persys-guest ok\n"
)

// Files of a built guest.
type Files struct {
	Dir     string // the folder holding them
	Kernel  string // vmlinuz
	Initrd  string // initrd.img
	BaseRaw string // base.raw: 16 MiB ext4 with persys-base.txt
}

var (
	once     sync.Once
	built    Files
	buildErr error
)

// Dir is the cache folder the guest is built into.
func Dir() (string, error) {
	if d := os.Getenv("PERSYS_TEST_GUEST_DIR"); d != "" {
		return d, nil
	}
	c, err := os.UserCacheDir()
	if err != nil {
		// No $HOME (some CI runners): a shared folder still caches it.
		c = os.TempDir()
	}
	return filepath.Join(c, "persys-test-guest"), nil
}

// Build runs scripts/build-test-guest.sh into Dir (cached: a no-op once
// built), holding a file lock so parallel test binaries build it once.
func Build(ctx context.Context) (Files, error) {
	dir, err := Dir()
	if err != nil {
		return Files{}, err
	}
	root, err := images.ModuleRoot()
	if err != nil {
		return Files{}, fmt.Errorf("vmguest: %w", err)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return Files{}, fmt.Errorf("vmguest: %w", err)
	}
	lock, err := os.OpenFile(filepath.Join(dir, ".lock"), os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return Files{}, fmt.Errorf("vmguest: lock: %w", err)
	}
	defer lock.Close()
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX); err != nil {
		return Files{}, fmt.Errorf("vmguest: lock: %w", err)
	}
	defer syscall.Flock(int(lock.Fd()), syscall.LOCK_UN) //nolint:errcheck

	cmd := exec.CommandContext(ctx, "sh", filepath.Join(root, "scripts", "build-test-guest.sh"), dir)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return Files{}, fmt.Errorf("vmguest: build-test-guest.sh: %w: %s", err, out)
	}
	f := Files{
		Dir:     dir,
		Kernel:  filepath.Join(dir, "vmlinuz"),
		Initrd:  filepath.Join(dir, "initrd.img"),
		BaseRaw: filepath.Join(dir, "base.raw"),
	}
	for _, p := range []string{f.Kernel, f.Initrd, f.BaseRaw} {
		if _, err := os.Stat(p); err != nil {
			return Files{}, fmt.Errorf("vmguest: %w", err)
		}
	}
	return f, nil
}

// QEMUOrSkip checks that qemu-system-x86_64 and qemu-img are installed; it
// fails the test when env CI is set and skips it otherwise.
func QEMUOrSkip(t testing.TB) {
	t.Helper()
	for _, bin := range []string{"qemu-system-x86_64", "qemu-img"} {
		if _, err := exec.LookPath(bin); err != nil {
			missing(t, "%s is not installed: %v", bin, err)
		}
	}
}

// GuestFiles returns the built guest (building it on first use). QEMU or a
// guest that cannot be built fails the test when env CI is set and skips it
// otherwise.
func GuestFiles(t testing.TB) Files {
	t.Helper()
	QEMUOrSkip(t)
	once.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
		defer cancel()
		built, buildErr = Build(ctx)
	})
	if buildErr != nil {
		missing(t, "test guest: %v", buildErr)
	}
	return built
}

// Guest returns the guest's kernel and initrd paths; see GuestFiles.
func Guest(t testing.TB) (kernel, initrd string) {
	t.Helper()
	f := GuestFiles(t)
	return f.Kernel, f.Initrd
}

func missing(t testing.TB, format string, args ...any) {
	t.Helper()
	need.Missing(t, format, args...)
}

// CopyToPool copies the guest's kernel, initrd and base image into the
// storage pool folder dir under their usual names (vmlinuz, initrd.img,
// base.raw), so a manifest can name them from that pool.
func (f Files) CopyToPool(t testing.TB, dir string) {
	t.Helper()
	for _, src := range []string{f.Kernel, f.Initrd, f.BaseRaw} {
		if err := copyFile(src, filepath.Join(dir, filepath.Base(src))); err != nil {
			t.Fatalf("vmguest: %v", err)
		}
	}
}

func copyFile(src, dst string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.Create(dst)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}
