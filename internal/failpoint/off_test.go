//go:build !failpoints

package failpoint_test

import (
	"os"
	"testing"

	"github.com/persys-dev/compute/internal/failpoint"
)

// A release build ignores the environment that arms points in a
// failpoints build: no hit kills or holds anything.
func TestReleaseBuildIgnoresArmedPoints(t *testing.T) {
	if failpoint.Enabled {
		t.Fatal("a build without the failpoints tag reports Enabled true")
	}
	t.Setenv(failpoint.Env, failpoint.DockerAfterCreate+"=kill")
	t.Setenv(failpoint.ArmEnv, os.DevNull)
	for range 3 {
		failpoint.Inject(failpoint.DockerAfterCreate)
	}
}

// Every point is named once: a duplicate in Names would hide a typo.
func TestNamesAreUnique(t *testing.T) {
	seen := map[string]bool{}
	for _, n := range failpoint.Names {
		if seen[n] {
			t.Errorf("%s is listed twice", n)
		}
		seen[n] = true
	}
}
