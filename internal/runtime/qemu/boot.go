package qemu

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"time"

	persysv1 "github.com/persys-dev/compute/api/persys/v1"
	"github.com/persys-dev/compute/internal/runtime"
)

// Boot failure detection.
//
// QEMU runs with -no-reboot, and a kernel_boot command line without a
// panic= setting gets panic=1, so a guest kernel that panics (no root file
// system, an initrd that is not an initramfs, ...) makes QEMU exit about a
// second later instead of rebooting forever. A guest that reboots itself
// also ends its QEMU; the scheduler then applies the VM again.
//
// Apply waits up to Config.BootCheck after QMP answers (up to
// Config.BootWindow while the console shows a Linux kernel still booting):
// it fails with VM_BOOT_FAILED when QEMU exits or the serial console shows a
// kernel panic, and returns early once the console shows the kernel got
// past mounting its root file system. Status and List keep classifying afterwards: a kernel
// panic on the console since the last start, or a QEMU that exited within
// Config.BootWindow of its start, is FAILED with VM_BOOT_FAILED; a VM that
// ran longer and then died is FAILED with RUNTIME_ERROR.

// Defaults of Config.BootCheck and Config.BootWindow.
const (
	DefaultBootCheck  = 10 * time.Second
	DefaultBootWindow = 60 * time.Second
)

const (
	// panicMarker starts the line a Linux kernel prints when it panics.
	panicMarker = "Kernel panic"
	// kernelBanner starts the first line a Linux kernel prints (at
	// notice level: "quiet" hides it).
	kernelBanner = "Linux version "
	// maxConsoleScan bounds how much of the serial log one check reads.
	maxConsoleScan = 64 << 10
	// maxConsoleMessage bounds the console excerpt in a failure message.
	maxConsoleMessage = 600
)

// pastRootMarkers are console lines a Linux kernel prints after it mounted
// its root file system (or initramfs): from there on a panic is not a boot
// failure of the kind Apply waits for.
// stampOnly matches a kernel console line with nothing after its time stamp.
var stampOnly = regexp.MustCompile(`^\[\s*[0-9]+\.[0-9]+\]$`)

var pastRootMarkers = []string{"Freeing unused kernel", "Run /init as init process", "Run /sbin/init as init process"}

// withPanicSetting appends panic=1 to a kernel command line that has no
// panic= setting, so that a panicking guest reboots (and, with -no-reboot,
// ends QEMU) instead of hanging.
func withPanicSetting(cmdline string) string {
	for _, f := range strings.Fields(cmdline) {
		if strings.HasPrefix(f, "panic=") {
			return cmdline
		}
	}
	return strings.TrimSpace(cmdline + " panic=1")
}

// consoleSince returns the serial console output written since the VM's
// last start (at most maxConsoleScan bytes from its end). When the log was
// cut since then, everything it still holds counts.
func (r *Runtime) consoleSince(rec *record) string {
	path := filepath.Join(r.stateDir(rec.Name), serialLog)
	f, err := os.Open(path)
	if err != nil {
		return ""
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return ""
	}
	off := rec.SerialOffset
	if off < 0 || off > st.Size() {
		off = 0
	}
	if st.Size()-off > maxConsoleScan {
		off = st.Size() - maxConsoleScan
	}
	buf := make([]byte, st.Size()-off)
	n, _ := f.ReadAt(buf, off)
	return string(buf[:n])
}

// kernelPanic returns the console lines around the last kernel panic in
// text: up to three lines before the panic line and the panic line itself.
// It returns "" when text holds no panic.
func kernelPanic(text string) string {
	i := strings.LastIndex(text, panicMarker)
	if i < 0 {
		return ""
	}
	end := strings.IndexByte(text[i:], '\n')
	if end < 0 {
		end = len(text)
	} else {
		end += i
	}
	lines := consoleLines(text[:end])
	if len(lines) > 4 {
		lines = lines[len(lines)-4:]
	}
	return clip(strings.Join(lines, " | "))
}

// consoleTail returns the last few non-empty console lines of text, for a
// failure message. Lines that mention a password are left out: guests such
// as cloud-init print generated passwords on the console.
func consoleTail(text string, n int) string {
	var keep []string
	for _, l := range consoleLines(text) {
		if strings.Contains(strings.ToLower(l), "pass") {
			continue
		}
		keep = append(keep, l)
	}
	if len(keep) > n {
		keep = keep[len(keep)-n:]
	}
	return clip(strings.Join(keep, " | "))
}

// consoleLines splits console output into trimmed, printable, non-empty
// lines.
func consoleLines(text string) []string {
	var out []string
	for _, l := range strings.Split(text, "\n") {
		l = strings.Map(func(r rune) rune {
			if r < 0x20 || r == 0x7f {
				return -1
			}
			return r
		}, l)
		if l = strings.TrimSpace(l); l != "" && !stampOnly.MatchString(l) {
			out = append(out, l)
		}
	}
	return out
}

func clip(s string) string {
	if len(s) > maxConsoleMessage {
		s = "…" + s[len(s)-maxConsoleMessage:]
	}
	return s
}

func pastRoot(text string) bool {
	for _, m := range pastRootMarkers {
		if strings.Contains(text, m) {
			return true
		}
	}
	return false
}

// bootCheck watches a freshly started VM for up to Config.BootCheck (up to
// Config.BootWindow while the console shows a Linux kernel that has not yet
// mounted its root): QEMU exiting or a kernel panic on the console is a
// VM_BOOT_FAILED failure (a QEMU still alive after a panic is killed); the
// console showing the kernel past its root mount, the time running out or
// ctx ending is success.
func (r *Runtime) bootCheck(ctx context.Context, rec *record, pid int) error {
	sd := r.stateDir(rec.Name)
	pf := filepath.Join(sd, pidFile)
	began := time.Now()
	limit := r.cfg.BootCheck
	tick := time.NewTicker(200 * time.Millisecond)
	defer tick.Stop()
	for {
		text := r.consoleSince(rec)
		if lines := kernelPanic(text); lines != "" {
			r.kill(ctx, rec, pid)
			return runtime.Fail(persysv1.FailureReason_FAILURE_REASON_VM_BOOT_FAILED, nil,
				"VM %s did not boot: the guest kernel panicked: %s", rec.Name, lines)
		}
		if !alive(pid, pf) {
			r.noteDown(rec)
			return runtime.Fail(persysv1.FailureReason_FAILURE_REASON_VM_BOOT_FAILED, nil,
				"VM %s did not boot: %s", rec.Name, r.exitMessage(rec))
		}
		if pastRoot(text) {
			return nil
		}
		if time.Since(began) >= limit {
			// A Linux kernel visibly on its way (a slow or busy host):
			// wait for it to mount its root, up to the boot window.
			if limit >= r.cfg.BootWindow || !strings.Contains(text, kernelBanner) {
				return nil
			}
			limit = r.cfg.BootWindow
		}
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
		}
	}
}

// exitMessage describes a QEMU that exited: how long after its start (when
// known), QEMU's own error output and the console's last lines.
func (r *Runtime) exitMessage(rec *record) string {
	msg := "QEMU exited"
	if at, ok := r.downAt(rec); ok && !rec.StartedAt.IsZero() {
		msg += fmt.Sprintf(" %s after its start", at.Sub(rec.StartedAt).Round(time.Second))
	}
	if e := strings.TrimSpace(tailOf(filepath.Join(r.stateDir(rec.Name), errFile), 512)); e != "" {
		msg += ": " + e
	}
	if c := consoleTail(r.consoleSince(rec), 3); c != "" {
		msg += "; console: " + c
	} else {
		msg += "; the console is empty"
	}
	return msg
}

// bootFailure classifies a VM that should run but whose QEMU is gone, or
// that is alive with a panicked kernel: it returns a message when that is a
// boot failure and "" otherwise.
func (r *Runtime) bootFailure(rec *record, up bool) string {
	if rec.StartedAt.IsZero() {
		return "" // started by an older runtime: nothing to compare with
	}
	text := r.consoleSince(rec)
	if lines := kernelPanic(text); lines != "" {
		return "the guest kernel panicked: " + lines
	}
	if up {
		return ""
	}
	at, ok := r.downAt(rec)
	if ok && at.Sub(rec.StartedAt) <= r.cfg.BootWindow {
		return "it did not boot: " + r.exitMessage(rec)
	}
	return ""
}

// noteDown remembers when the runtime first saw rec's QEMU gone since its
// last start (Watch looks every WatchInterval). That time bounds the exit
// from above, so an exit first seen within the boot window happened within
// it; after an agent restart the first sighting may come late, and such an
// exit counts as a runtime error unless the console shows a panic. The time
// lives in memory only.
func (r *Runtime) noteDown(rec *record) {
	if rec.StartedAt.IsZero() {
		return
	}
	r.downMu.Lock()
	defer r.downMu.Unlock()
	if d, ok := r.down[rec.Name]; ok && d.started.Equal(rec.StartedAt) {
		return
	}
	r.down[rec.Name] = downState{started: rec.StartedAt, at: time.Now()}
}

// downAt returns when the runtime first saw rec's QEMU gone since its last
// start.
func (r *Runtime) downAt(rec *record) (time.Time, bool) {
	r.downMu.Lock()
	defer r.downMu.Unlock()
	d, ok := r.down[rec.Name]
	if !ok || !d.started.Equal(rec.StartedAt) {
		return time.Time{}, false
	}
	return d.at, true
}

type downState struct {
	started time.Time
	at      time.Time
}
