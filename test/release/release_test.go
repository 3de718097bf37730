// Package release tests what ships: `make dist` (scripts/dist.sh), the
// systemd units, the OCI image and the Debian package, each built the way
// a release builds it.
package release

import (
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
)

// TestMain removes what the tests built once for all of them.
func TestMain(m *testing.M) {
	code := m.Run()
	if imageTag != "" {
		_ = exec.Command("docker", "rmi", "-f", imageTag).Run()
	}
	if distDir != "" {
		_ = os.RemoveAll(distDir)
	}
	os.Exit(code)
}

// root is the repository's top folder.
func root(t *testing.T) string {
	t.Helper()
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "..")
}

// run runs a command in the repository and returns its combined output.
func run(t *testing.T, env []string, name string, args ...string) string {
	t.Helper()
	cmd := exec.Command(name, args...)
	cmd.Dir = root(t)
	cmd.Env = append(os.Environ(), env...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return string(out)
}
