package eventually

import (
	"fmt"
	"strings"
	"testing"
	"time"
)

// fakeT records Fatalf instead of ending the goroutine.
type fakeT struct {
	testing.TB
	failed string
}

func (f *fakeT) Helper()                           {}
func (f *fakeT) Fatalf(format string, args ...any) { f.failed = fmt.Sprintf(format, args...) }

func TestEventually(t *testing.T) {
	n := 0
	Eventually(t, "three calls", time.Second, True(func() bool { n++; return n == 3 }))
	if n != 3 {
		t.Fatalf("cond called %d times, want 3", n)
	}

	f := &fakeT{TB: t}
	Eventually(f, "never", 30*time.Millisecond, func() (bool, string) { return false, "still no" })
	if !strings.Contains(f.failed, "still no") {
		t.Fatalf("failure %q lacks the last detail", f.failed)
	}
}
