//go:build failpoints

package failpoint_test

import (
	"bytes"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/persys-dev/compute/internal/failpoint"
	"github.com/persys-dev/compute/internal/testutil/eventually"
)

// childEnv selects, in a re-executed test binary, what the child does: it
// hits a point the given number of times and reports each hit on stdout.
const childEnv = "PERSYS_FAILPOINT_TEST_CHILD"

func TestMain(m *testing.M) {
	if spec := os.Getenv(childEnv); spec != "" {
		name, n, _ := strings.Cut(spec, ":")
		for i := range len(n) {
			failpoint.Inject(name)
			os.Stdout.WriteString("hit " + string(rune('1'+i)) + "\n")
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// child runs the test binary as a process that hits name hits times
// (hits ≤ 9) with env added, and returns its stdout, stderr and exit.
func child(t *testing.T, name string, hits int, env ...string) (stdout, stderr string, err error) {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), append(env, childEnv+"="+name+":"+strings.Repeat("x", hits))...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err = cmd.Run()
	return out.String(), errb.String(), err
}

func killedBySIGKILL(err error) bool {
	var ee *exec.ExitError
	if !errors.As(err, &ee) {
		return false
	}
	ws, ok := ee.Sys().(syscall.WaitStatus)
	return ok && ws.Signaled() && ws.Signal() == syscall.SIGKILL
}

func TestEnabledInThisBuild(t *testing.T) {
	if !failpoint.Enabled {
		t.Fatal("a build with the failpoints tag reports Enabled false")
	}
}

func TestKillAtTheArmedHit(t *testing.T) {
	out, errOut, err := child(t, failpoint.DockerAfterCreate, 5, failpoint.Env+"="+failpoint.DockerAfterCreate+"=kill@3")
	if !killedBySIGKILL(err) {
		t.Fatalf("child ended with %v, want SIGKILL; stderr %q", err, errOut)
	}
	if out != "hit 1\nhit 2\n" {
		t.Fatalf("child reported %q before the kill, want two hits", out)
	}
	if !strings.Contains(errOut, "failpoint docker/after-create: killing the process (hit 3)") {
		t.Fatalf("stderr %q does not name the point and hit", errOut)
	}
}

func TestUnarmedPointDoesNothing(t *testing.T) {
	out, errOut, err := child(t, failpoint.DockerAfterStart, 3, failpoint.Env+"="+failpoint.DockerAfterCreate+"=kill")
	if err != nil {
		t.Fatalf("child ended with %v; stderr %q", err, errOut)
	}
	if out != "hit 1\nhit 2\nhit 3\n" {
		t.Fatalf("child reported %q, want three hits", out)
	}
}

func TestBadSpecsEndTheProcessWithAReason(t *testing.T) {
	for spec, want := range map[string]string{
		"docker/after-creat=kill":    "with a known NAME",
		"docker/after-create":        "is not NAME=kill",
		"docker/after-create=crash":  "the action is kill",
		"docker/after-create=kill@0": "positive integer",
		"docker/after-create=pause":  "pause needs " + failpoint.ArmEnv,
	} {
		_, errOut, err := child(t, failpoint.DockerAfterCreate, 1, failpoint.Env+"="+spec)
		var ee *exec.ExitError
		if !errors.As(err, &ee) || ee.ExitCode() != 2 {
			t.Errorf("spec %q: child ended with %v, want exit 2", spec, err)
		}
		if !strings.Contains(errOut, want) {
			t.Errorf("spec %q: stderr %q does not say %q", spec, errOut, want)
		}
	}
}

func TestArmFileGatesAndReplacesTheSpec(t *testing.T) {
	arm := filepath.Join(t.TempDir(), "arm")
	// No file: the point of Env is not armed.
	out, _, err := child(t, failpoint.SchedulerAfterAssign, 2,
		failpoint.Env+"="+failpoint.SchedulerAfterAssign+"=kill", failpoint.ArmEnv+"="+arm)
	if err != nil || out != "hit 1\nhit 2\n" {
		t.Fatalf("unarmed: out %q err %v", out, err)
	}
	// A file that holds a spec arms its own point instead of Env's.
	if err := os.WriteFile(arm, []byte(failpoint.SchedulerMidMove+"=kill@2\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	out, _, err = child(t, failpoint.SchedulerAfterAssign, 2,
		failpoint.Env+"="+failpoint.SchedulerAfterAssign+"=kill", failpoint.ArmEnv+"="+arm)
	if err != nil || out != "hit 1\nhit 2\n" {
		t.Fatalf("file armed another point: out %q err %v", out, err)
	}
	out, _, err = child(t, failpoint.SchedulerMidMove, 3, failpoint.ArmEnv+"="+arm)
	if !killedBySIGKILL(err) || out != "hit 1\n" {
		t.Fatalf("file's point: out %q err %v, want a kill at hit 2", out, err)
	}
}

func TestPauseHoldsUntilTheArmFileGoes(t *testing.T) {
	arm := filepath.Join(t.TempDir(), "arm")
	if err := os.WriteFile(arm, []byte(failpoint.DockerAfterImage+"=pause"), 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), failpoint.ArmEnv+"="+arm, childEnv+"="+failpoint.DockerAfterImage+":xx")
	var out, errb syncBuffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	eventually.Eventually(t, "the child pauses at the point", 30*time.Second, eventually.True(func() bool {
		return strings.Contains(errb.String(), "paused (hit 1)")
	}))
	if got := out.String(); got != "" {
		t.Fatalf("the paused child went on: %q", got)
	}
	if err := os.Remove(arm); err != nil {
		t.Fatal(err)
	}
	if err := cmd.Wait(); err != nil {
		t.Fatalf("child: %v; stderr %q", err, errb.String())
	}
	if got := out.String(); got != "hit 1\nhit 2\n" {
		t.Fatalf("child reported %q after the pause, want both hits", got)
	}
}

// syncBuffer is a buffer a child process writes while the test reads it.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}
