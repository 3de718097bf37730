package logfollow

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// A poll that lands between a cut's truncate and its write sees an empty
// file; the follow must wait for the write instead of starting over from
// the top (which sent the kept lines twice).
func TestCutSeenMidRewriteSendsNothingTwice(t *testing.T) {
	path := filepath.Join(t.TempDir(), "serial.log")
	first := strings.Repeat("x", 1000) + "\nkept line one\nkept line two\n"
	if err := os.WriteFile(path, []byte(first), 0o644); err != nil {
		t.Fatal(err)
	}
	var got strings.Builder
	fl := &fileFollow{path: path, emit: func(p []byte) error { got.Write(p); return nil }}
	if err := fl.open(1 << 20); err != nil {
		t.Fatal(err)
	}
	defer fl.close()
	poll := func() {
		t.Helper()
		if gone, err := fl.check(); gone || err != nil {
			t.Fatalf("check: gone %v, err %v", gone, err)
		}
		if err := fl.drain(); err != nil {
			t.Fatal(err)
		}
	}
	if err := fl.drain(); err != nil {
		t.Fatal(err)
	}
	// The truncate, seen by two polls before the write lands.
	if err := os.Truncate(path, 0); err != nil {
		t.Fatal(err)
	}
	poll()
	poll()
	if err := os.WriteFile(path, []byte("[cut]\nkept line one\nkept line two\nafter cut\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	poll()
	if want := first + "after cut\n"; got.String() != want {
		t.Fatalf("sent %q, want %q", got.String(), want)
	}
}

// A cut whose kept part never holds what was sent (everything sent was
// dropped) starts over from the top once the cut has had time to settle.
func TestCutWithoutTheSentPartStartsOver(t *testing.T) {
	path := filepath.Join(t.TempDir(), "serial.log")
	if err := os.WriteFile(path, []byte(strings.Repeat("old line\n", 100)), 0o644); err != nil {
		t.Fatal(err)
	}
	var got strings.Builder
	fl := &fileFollow{path: path, emit: func(p []byte) error { got.Write(p); return nil }}
	if err := fl.open(0); err != nil {
		t.Fatal(err)
	}
	defer fl.close()
	if err := os.WriteFile(path, []byte(strings.Repeat("old line\n", 100)+"sent\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := fl.check(); err != nil {
		t.Fatal(err)
	}
	if err := fl.drain(); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte("[cut]\nnew\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	for range cutSettlePolls + 1 {
		if _, err := fl.check(); err != nil {
			t.Fatal(err)
		}
		if err := fl.drain(); err != nil {
			t.Fatal(err)
		}
	}
	if want := "sent\n[cut]\nnew\n"; got.String() != want {
		t.Fatalf("sent %q, want %q", got.String(), want)
	}
}
