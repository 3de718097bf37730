// Package model holds the scheduler's domain types and enums, free of
// protobuf: resource amounts and workload types, event types (EventType:
// the one list of what the scheduler emits), assignment causes, and the
// domain's sentinel errors. The numeric values of the
// enums equal those of the matching protobuf enums in api/persys/v1, so
// adapters at the wire boundary convert with a plain type conversion; callers
// must still validate values that come from outside (see Validate and the
// Parse functions) before handing them to pure code such as placement.
package model

import (
	"errors"
	"fmt"
	"strconv"
)

// ErrInvalid is wrapped by every validation error of this package.
var ErrInvalid = errors.New("invalid")

// Resources are amounts of CPU in millicores, memory in bytes and disk in
// bytes. A Resources value is used both for what a workload requests and for
// what a node has (capacity, allocated, free).
type Resources struct {
	CPUMillis   int64
	MemoryBytes int64
	DiskBytes   int64
}

// Add returns r + o, component by component.
func (r Resources) Add(o Resources) Resources {
	return Resources{
		CPUMillis:   r.CPUMillis + o.CPUMillis,
		MemoryBytes: r.MemoryBytes + o.MemoryBytes,
		DiskBytes:   r.DiskBytes + o.DiskBytes,
	}
}

// Sub returns r - o, component by component. The result may be negative
// (an over-committed node); it is not clamped.
func (r Resources) Sub(o Resources) Resources {
	return Resources{
		CPUMillis:   r.CPUMillis - o.CPUMillis,
		MemoryBytes: r.MemoryBytes - o.MemoryBytes,
		DiskBytes:   r.DiskBytes - o.DiskBytes,
	}
}

// Fits reports whether the request r fits in free. A component that r does
// not need (zero or less) always fits, even when free is zero or negative;
// a component that r needs fits when it is at most the free amount, so a
// zero or negative free amount never fits a positive request.
func (r Resources) Fits(free Resources) bool {
	return fits(r.CPUMillis, free.CPUMillis) &&
		fits(r.MemoryBytes, free.MemoryBytes) &&
		fits(r.DiskBytes, free.DiskBytes)
}

func fits(requested, free int64) bool {
	return requested <= 0 || requested <= free
}

// IsZero reports whether every component is zero.
func (r Resources) IsZero() bool { return r == Resources{} }

// Validate returns an error naming the first negative component. field is
// the name of the value in the caller's input (for example
// "spec.resources"); it prefixes the component name in the error.
func (r Resources) Validate(field string) error {
	switch {
	case r.CPUMillis < 0:
		return fmt.Errorf("%s.cpuMillis: %w: must not be negative, got %d", field, ErrInvalid, r.CPUMillis)
	case r.MemoryBytes < 0:
		return fmt.Errorf("%s.memoryBytes: %w: must not be negative, got %d", field, ErrInvalid, r.MemoryBytes)
	case r.DiskBytes < 0:
		return fmt.Errorf("%s.diskBytes: %w: must not be negative, got %d", field, ErrInvalid, r.DiskBytes)
	}
	return nil
}

// WorkloadType says which runtime executes a workload. The values equal
// those of persysv1.WorkloadType; zero is "unspecified" and is never valid.
type WorkloadType int

// Workload types.
const (
	WorkloadContainer WorkloadType = 1
	WorkloadCompose   WorkloadType = 2
	WorkloadVM        WorkloadType = 3
)

// String returns the lowercase name used in manifests, logs and metric
// labels: "container", "compose", "vm"; other values print as
// "WorkloadType(N)".
func (t WorkloadType) String() string {
	switch t {
	case WorkloadContainer:
		return "container"
	case WorkloadCompose:
		return "compose"
	case WorkloadVM:
		return "vm"
	}
	return "WorkloadType(" + strconv.Itoa(int(t)) + ")"
}

// Valid reports whether t is one of the defined workload types.
func (t WorkloadType) Valid() bool {
	return t >= WorkloadContainer && t <= WorkloadVM
}

// ParseWorkloadType parses the names String returns. The error wraps
// ErrInvalid and names the field "type".
func ParseWorkloadType(s string) (WorkloadType, error) {
	switch s {
	case "container":
		return WorkloadContainer, nil
	case "compose":
		return WorkloadCompose, nil
	case "vm":
		return WorkloadVM, nil
	}
	return 0, fmt.Errorf("type: %w: %q is not one of container, compose, vm", ErrInvalid, s)
}
