//go:build !failpoints

package failpoint

// Enabled reports whether this build has failpoints.
const Enabled = false

// Inject does nothing in a build without failpoints.
func Inject(string) {}
