package logfollow_test

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/persys-dev/compute/internal/runtime"
	"github.com/persys-dev/compute/internal/runtime/logfollow"
	"github.com/persys-dev/compute/internal/testutil/eventually"
)

// collector gathers what a follow emits.
type collector struct {
	mu     sync.Mutex
	buf    bytes.Buffer
	chunks int
	max    int
}

func (c *collector) emit(p []byte) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.buf.Write(p)
	c.chunks++
	c.max = max(c.max, len(p))
	return nil
}

func (c *collector) String() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.buf.String()
}

func appendFile(t *testing.T, path, s string) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteString(s); err != nil {
		t.Fatal(err)
	}
}

// followFile runs File on path in the background; stop ends it and
// returns its error.
func followFile(t *testing.T, path string, tail int64) (*collector, func() error) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	c := &collector{}
	done := make(chan error, 1)
	go func() { done <- logfollow.File(ctx, path, tail, 10*time.Millisecond, c.emit) }()
	return c, func() error { cancel(); return <-done }
}

func waitFor(t *testing.T, c *collector, want string) {
	t.Helper()
	eventually.Eventually(t, "follow output "+quoted(want), 10*time.Second, func() (bool, string) {
		got := c.String()
		return got == want, got
	})
}

func quoted(s string) string { return "\"" + strings.ReplaceAll(s, "\n", `\n`) + "\"" }

func TestFileFollowsTailThenAppends(t *testing.T) {
	path := filepath.Join(t.TempDir(), "serial.log")
	appendFile(t, path, "old line\nline 1\n")
	c, stop := followFile(t, path, 7)
	waitFor(t, c, "line 1\n")
	appendFile(t, path, "line 2\n")
	waitFor(t, c, "line 1\nline 2\n")
	if err := stop(); err != nil {
		t.Fatal(err)
	}
}

func TestFileSurvivesCutInPlace(t *testing.T) {
	path := filepath.Join(t.TempDir(), "serial.log")
	appendFile(t, path, strings.Repeat("x", 1000)+"\nkept line one\nkept line two\n")
	c, stop := followFile(t, path, 1<<20)
	waitFor(t, c, strings.Repeat("x", 1000)+"\nkept line one\nkept line two\n")
	// As the qemu runtime's cap does: cut to a marker and the newest part,
	// then the writer goes on appending.
	if err := os.WriteFile(path, []byte("[cut]\nkept line one\nkept line two\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	appendFile(t, path, "after cut\n")
	waitFor(t, c, strings.Repeat("x", 1000)+"\nkept line one\nkept line two\nafter cut\n")
	if err := stop(); err != nil {
		t.Fatal(err)
	}
}

func TestFileFollowsRotation(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "serial.log")
	appendFile(t, path, "first file\n")
	c, stop := followFile(t, path, 1<<20)
	waitFor(t, c, "first file\n")
	if err := os.Rename(path, path+".1"); err != nil {
		t.Fatal(err)
	}
	appendFile(t, path, "second file\n")
	waitFor(t, c, "first file\nsecond file\n")
	if err := stop(); err != nil {
		t.Fatal(err)
	}
}

func TestFileAbsentThenCreatedAndRemoved(t *testing.T) {
	path := filepath.Join(t.TempDir(), "serial.log")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	c := &collector{}
	done := make(chan error, 1)
	go func() { done <- logfollow.File(ctx, path, 64, 10*time.Millisecond, c.emit) }()
	appendFile(t, path, "booted\n")
	waitFor(t, c, "booted\n")
	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	// A removed console (the VM was deleted) ends the follow by itself.
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("follow of a removed file did not end")
	}
}

func TestFileChunksAreBounded(t *testing.T) {
	path := filepath.Join(t.TempDir(), "serial.log")
	big := strings.Repeat("y", 3*runtime.MaxLogChunk+5)
	appendFile(t, path, big)
	c, stop := followFile(t, path, int64(len(big)))
	waitFor(t, c, big)
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	if c.max > runtime.MaxLogChunk || c.chunks < 4 {
		t.Fatalf("chunks: %d, largest %d bytes; want at least 4 of at most %d", c.chunks, c.max, runtime.MaxLogChunk)
	}
}
