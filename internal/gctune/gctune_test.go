package gctune

import (
	"os"
	"runtime/debug"
	"strings"
	"testing"
)

func TestApply(t *testing.T) {
	prev := debug.SetGCPercent(100)
	defer debug.SetGCPercent(prev)

	t.Setenv("GOGC", "")
	if Apply(300) {
		t.Fatal("Apply set the target although GOGC is set")
	}
	if got := debug.SetGCPercent(100); got != 100 {
		t.Fatalf("target %d after Apply with GOGC set, want 100 left alone", got)
	}
}

func TestApplyWithoutGOGC(t *testing.T) {
	prev := debug.SetGCPercent(100)
	defer debug.SetGCPercent(prev)
	t.Setenv("GOGC", "") // restored after the test
	if err := os.Unsetenv("GOGC"); err != nil {
		t.Fatal(err)
	}
	if !Apply(300) {
		t.Fatal("Apply did not set the target without GOGC")
	}
	if got := debug.SetGCPercent(100); got != 300 {
		t.Fatalf("target %d, want 300", got)
	}
}

func TestValidate(t *testing.T) {
	for _, p := range []int{25, 200, 1000} {
		if err := Validate("--gc-percent", p); err != nil {
			t.Errorf("Validate(%d): %v", p, err)
		}
	}
	for _, p := range []int{-1, 0, 24, 1001} {
		if err := Validate("--gc-percent", p); err == nil {
			t.Errorf("Validate(%d) accepted it", p)
		}
	}
}

func TestParseMemoryLimit(t *testing.T) {
	for in, want := range map[string]MemoryLimit{
		"0": 0, "3584MiB": 3584 << 20, "3.5GiB": 3584 << 20, "4GiB": 4 << 30, "1TiB": 1 << 40,
		"65536KiB": 64 << 20, "100000000": 100000000, "100000000B": 100000000, " 1GiB ": 1 << 30,
	} {
		got, err := ParseMemoryLimit("--memory-limit", in)
		if err != nil || got != want {
			t.Errorf("ParseMemoryLimit(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	for _, in := range []string{"", "-1GiB", "4GB", "4G", "GiB", "lots", "NaN", "Inf", "4096", "1MiB", "9000000TiB"} {
		if _, err := ParseMemoryLimit("--memory-limit", in); err == nil || !strings.Contains(err.Error(), "--memory-limit") {
			t.Errorf("ParseMemoryLimit(%q): %v, want an error naming the flag", in, err)
		}
	}
}

func TestMemoryLimitFlagValue(t *testing.T) {
	var m MemoryLimit
	if err := m.Set("3.5GiB"); err != nil {
		t.Fatal(err)
	}
	if m.String() != "3584MiB" {
		t.Fatalf("String() = %q, want 3584MiB", m.String())
	}
	if err := m.Set("x"); err == nil {
		t.Fatal("Set accepted x")
	}
	if m != 3584<<20 {
		t.Fatalf("a failed Set changed the value to %d", m)
	}
}

func TestApplyMemoryLimit(t *testing.T) {
	prev := debug.SetMemoryLimit(-1)
	defer debug.SetMemoryLimit(prev)
	t.Setenv("GOMEMLIMIT", "") // restored after the test
	if err := os.Unsetenv("GOMEMLIMIT"); err != nil {
		t.Fatal(err)
	}
	if ApplyMemoryLimit(0) {
		t.Fatal("ApplyMemoryLimit(0) set a limit")
	}
	if got := debug.SetMemoryLimit(-1); got != prev {
		t.Fatalf("limit %d after ApplyMemoryLimit(0), want %d left alone", got, prev)
	}
	if !ApplyMemoryLimit(1 << 40) {
		t.Fatal("ApplyMemoryLimit did not set the limit without GOMEMLIMIT")
	}
	if got := debug.SetMemoryLimit(-1); got != 1<<40 {
		t.Fatalf("limit %d, want %d", got, int64(1<<40))
	}
}

func TestApplyMemoryLimitWithGOMEMLIMIT(t *testing.T) {
	prev := debug.SetMemoryLimit(-1)
	defer debug.SetMemoryLimit(prev)
	t.Setenv("GOMEMLIMIT", "2GiB")
	if ApplyMemoryLimit(1 << 40) {
		t.Fatal("ApplyMemoryLimit set the limit although GOMEMLIMIT is set")
	}
	if got := debug.SetMemoryLimit(-1); got != prev {
		t.Fatalf("limit %d after ApplyMemoryLimit with GOMEMLIMIT set, want %d left alone", got, prev)
	}
}
