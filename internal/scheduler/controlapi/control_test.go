package controlapi

import (
	"strings"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	persysv1 "github.com/persys-dev/compute/api/persys/v1"
)

// TestValidateAllocatable: an agent's allocatable share must lie between
// zero and its capacity; the refusal names the field.
func TestValidateAllocatable(t *testing.T) {
	capacity := &persysv1.Resources{CpuMillis: 2000, MemoryBytes: 1 << 30, DiskBytes: 1 << 33}
	for _, tc := range []struct {
		alloc   *persysv1.Resources
		wantErr string
	}{
		{nil, ""},
		{&persysv1.Resources{CpuMillis: 1600, MemoryBytes: 1 << 29, DiskBytes: 1 << 33}, ""},
		{&persysv1.Resources{CpuMillis: 2001}, "capabilities.allocatable.cpu_millis"},
		{&persysv1.Resources{MemoryBytes: -1}, "capabilities.allocatable.memory_bytes"},
		{&persysv1.Resources{DiskBytes: 1 << 34}, "capabilities.allocatable.disk_bytes"},
	} {
		err := validateAllocatable(&persysv1.NodeCapabilities{Capacity: capacity, Allocatable: tc.alloc})
		switch {
		case tc.wantErr == "" && err != nil:
			t.Errorf("%v: %v", tc.alloc, err)
		case tc.wantErr != "" && (status.Code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), tc.wantErr)):
			t.Errorf("%v: err %v, want InvalidArgument naming %s", tc.alloc, err, tc.wantErr)
		}
	}
}
