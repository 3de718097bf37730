package model

import (
	"errors"
	"strings"
	"testing"
)

func TestResources(t *testing.T) {
	tests := []struct {
		name      string
		r, o      Resources
		wantAdd   Resources
		wantSub   Resources
		wantFits  bool // r.Fits(o)
		wantValid bool // r.Validate
	}{
		{
			name:      "zero fits zero",
			wantFits:  true,
			wantValid: true,
		},
		{
			name:      "smaller fits",
			r:         Resources{CPUMillis: 500, MemoryBytes: 1 << 20, DiskBytes: 10},
			o:         Resources{CPUMillis: 1000, MemoryBytes: 2 << 20, DiskBytes: 20},
			wantAdd:   Resources{CPUMillis: 1500, MemoryBytes: 3 << 20, DiskBytes: 30},
			wantSub:   Resources{CPUMillis: -500, MemoryBytes: -1 << 20, DiskBytes: -10},
			wantFits:  true,
			wantValid: true,
		},
		{
			name:      "exact fit",
			r:         Resources{CPUMillis: 1000, MemoryBytes: 2, DiskBytes: 3},
			o:         Resources{CPUMillis: 1000, MemoryBytes: 2, DiskBytes: 3},
			wantAdd:   Resources{CPUMillis: 2000, MemoryBytes: 4, DiskBytes: 6},
			wantFits:  true,
			wantValid: true,
		},
		{
			name:      "cpu one over",
			r:         Resources{CPUMillis: 1001},
			o:         Resources{CPUMillis: 1000},
			wantAdd:   Resources{CPUMillis: 2001},
			wantSub:   Resources{CPUMillis: 1},
			wantValid: true,
		},
		{
			name:      "memory one over",
			r:         Resources{MemoryBytes: 11},
			o:         Resources{MemoryBytes: 10},
			wantAdd:   Resources{MemoryBytes: 21},
			wantSub:   Resources{MemoryBytes: 1},
			wantValid: true,
		},
		{
			name:      "disk one over",
			r:         Resources{DiskBytes: 11},
			o:         Resources{DiskBytes: 10},
			wantAdd:   Resources{DiskBytes: 21},
			wantSub:   Resources{DiskBytes: 1},
			wantValid: true,
		},
		{
			name:      "needed resource with zero free does not fit",
			r:         Resources{CPUMillis: 1},
			wantAdd:   Resources{CPUMillis: 1},
			wantSub:   Resources{CPUMillis: 1},
			wantValid: true,
		},
		{
			name:      "unneeded resource with negative free fits",
			r:         Resources{CPUMillis: 100},
			o:         Resources{CPUMillis: 100, MemoryBytes: -5, DiskBytes: -5},
			wantAdd:   Resources{CPUMillis: 200, MemoryBytes: -5, DiskBytes: -5},
			wantSub:   Resources{MemoryBytes: 5, DiskBytes: 5},
			wantFits:  true,
			wantValid: true,
		},
		{
			name:     "negative request is invalid",
			r:        Resources{MemoryBytes: -1},
			wantAdd:  Resources{MemoryBytes: -1},
			wantSub:  Resources{MemoryBytes: -1},
			wantFits: true,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.r.Add(tt.o); got != tt.wantAdd {
				t.Errorf("Add = %+v, want %+v", got, tt.wantAdd)
			}
			if got := tt.r.Sub(tt.o); got != tt.wantSub {
				t.Errorf("Sub = %+v, want %+v", got, tt.wantSub)
			}
			if got := tt.r.Fits(tt.o); got != tt.wantFits {
				t.Errorf("Fits = %v, want %v", got, tt.wantFits)
			}
			err := tt.r.Validate("spec.resources")
			if (err == nil) != tt.wantValid {
				t.Errorf("Validate = %v, want valid %v", err, tt.wantValid)
			}
			if err != nil && (!errors.Is(err, ErrInvalid) || !strings.HasPrefix(err.Error(), "spec.resources.")) {
				t.Errorf("Validate error %q does not wrap ErrInvalid or name the field", err)
			}
		})
	}
}

func TestResourcesValidateNamesField(t *testing.T) {
	tests := []struct {
		name string
		r    Resources
		want string
	}{
		{name: "cpu", r: Resources{CPUMillis: -1}, want: "req.cpuMillis:"},
		{name: "memory", r: Resources{MemoryBytes: -1}, want: "req.memoryBytes:"},
		{name: "disk", r: Resources{DiskBytes: -1}, want: "req.diskBytes:"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.r.Validate("req")
			if err == nil || !strings.HasPrefix(err.Error(), tt.want) {
				t.Fatalf("Validate = %v, want prefix %q", err, tt.want)
			}
		})
	}
}

func TestWorkloadType(t *testing.T) {
	tests := []struct {
		name      string
		typ       WorkloadType
		str       string
		valid     bool
		parseable bool
	}{
		{name: "unspecified", typ: 0, str: "WorkloadType(0)"},
		{name: "container", typ: WorkloadContainer, str: "container", valid: true, parseable: true},
		{name: "compose", typ: WorkloadCompose, str: "compose", valid: true, parseable: true},
		{name: "vm", typ: WorkloadVM, str: "vm", valid: true, parseable: true},
		{name: "out of range", typ: 4, str: "WorkloadType(4)"},
		{name: "negative", typ: -1, str: "WorkloadType(-1)"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.typ.String(); got != tt.str {
				t.Errorf("String = %q, want %q", got, tt.str)
			}
			if got := tt.typ.Valid(); got != tt.valid {
				t.Errorf("Valid = %v, want %v", got, tt.valid)
			}
			got, err := ParseWorkloadType(tt.str)
			if tt.parseable {
				if err != nil || got != tt.typ {
					t.Errorf("ParseWorkloadType(%q) = %v, %v; want %v", tt.str, got, err, tt.typ)
				}
				return
			}
			if err == nil || !errors.Is(err, ErrInvalid) || !strings.HasPrefix(err.Error(), "type:") {
				t.Errorf("ParseWorkloadType(%q) error = %v, want field-named ErrInvalid", tt.str, err)
			}
		})
	}
}

// The numeric values are part of the contract with api/persys/v1; this
// package must not import protobuf, so the numbers are spelled out here.
func TestWorkloadTypeNumbers(t *testing.T) {
	if WorkloadContainer != 1 || WorkloadCompose != 2 || WorkloadVM != 3 {
		t.Fatal("WorkloadType values drifted from the proto enum")
	}
}
