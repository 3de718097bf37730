// Package need is how a test reports a missing part of the machine
// (Docker, QEMU, a Debian tool): it skips on a developer's machine and
// fails when env CI is set, because CI must run every test.
package need

import (
	"os"
	"testing"
)

// Missing skips the test with the message, or fails it when CI is set.
func Missing(t testing.TB, format string, args ...any) {
	t.Helper()
	if os.Getenv("CI") != "" {
		t.Fatalf("CI is set, so this fails instead of skipping: "+format, args...)
	}
	t.Skipf(format, args...)
}
