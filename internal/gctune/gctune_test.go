package gctune

import (
	"os"
	"runtime/debug"
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
