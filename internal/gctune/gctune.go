// Package gctune sets the garbage collector's target of the scheduler's
// processes.
package gctune

import (
	"fmt"
	"os"
	"runtime/debug"
)

// DefaultPercent is the GC target (GOGC) the scheduler runs with. Its heap
// is mostly a long-lived cache of nodes and workloads, and the garbage is
// the protobuf and gRPC churn of every call; collecting when the heap has
// grown by 200% rather than 100% halves the number of collections for
// about a third more heap. Measured back to back at 5,000 hollow nodes
// and 50,000 workloads: 0.43 against 0.48 ms of CPU per workload, peak RSS
// 1.3 against 1.05 GiB.
const DefaultPercent = 200

// Validate checks a GC target given on a command line.
func Validate(flag string, percent int) error {
	if percent < 25 || percent > 1000 {
		return fmt.Errorf("%s %d: must be between 25 and 1000", flag, percent)
	}
	return nil
}

// Apply sets the GC target to percent, unless the GOGC environment
// variable is set: the operator's own setting wins. It reports whether it
// set the target.
func Apply(percent int) bool {
	if _, ok := os.LookupEnv("GOGC"); ok {
		return false
	}
	debug.SetGCPercent(percent)
	return true
}
