package qemu

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"syscall"
	"unsafe"
)

// DetectAccel returns "kvm" when KVM really works on this machine and "tcg"
// otherwise. /dev/kvm alone is not enough (it may exist without nested
// virtualization, and QEMU then hangs): the CPU must advertise vmx or svm,
// and /dev/kvm must open and answer KVM_GET_API_VERSION with 12.
func DetectAccel() string {
	info, err := os.ReadFile("/proc/cpuinfo")
	if err != nil {
		return "tcg"
	}
	hasFlag := false
	for _, line := range strings.Split(string(info), "\n") {
		if !strings.HasPrefix(line, "flags") {
			continue
		}
		for _, f := range strings.Fields(line) {
			if f == "vmx" || f == "svm" {
				hasFlag = true
			}
		}
		break
	}
	if !hasFlag {
		return "tcg"
	}
	f, err := os.OpenFile("/dev/kvm", os.O_RDWR, 0)
	if err != nil {
		return "tcg"
	}
	defer f.Close()
	const kvmGetAPIVersion = 0xAE00
	v, _, errno := syscall.Syscall(syscall.SYS_IOCTL, f.Fd(), kvmGetAPIVersion, uintptr(unsafe.Pointer(nil)))
	if errno != 0 || v != 12 {
		return "tcg"
	}
	return "kvm"
}

// readPid reads a QEMU pidfile.
func readPid(path string) (int, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, err
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil || pid <= 0 {
		return 0, fmt.Errorf("pidfile %s: bad content", path)
	}
	return pid, nil
}

// procState returns the state letter of /proc/<pid>/stat ("R", "S", "Z"…).
func procState(pid int) (string, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return "", err
	}
	// pid (comm) state ...; comm may contain spaces and parentheses.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 || i+2 >= len(b) {
		return "", errors.New("unexpected /proc stat format")
	}
	return string(b[i+2 : i+3]), nil
}

// alive reports whether pid is a live (non-zombie) QEMU whose command line
// names pidfile, so a recycled pid is never mistaken for the VM. A zombie
// that is our child is reaped.
func alive(pid int, pidfile string) bool {
	if pid <= 0 {
		return false
	}
	st, err := procState(pid)
	if err != nil {
		return false
	}
	if st == "Z" || st == "X" {
		var ws syscall.WaitStatus
		_, _ = syscall.Wait4(pid, &ws, syscall.WNOHANG, nil)
		return false
	}
	cmdline, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	if err != nil {
		return false
	}
	return bytes.Contains(cmdline, []byte(pidfile))
}
