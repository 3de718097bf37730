// Package eventually waits in tests for a condition instead of sleeping
// for a guessed time. Tests call Eventually with what they wait for; on
// timeout it fails the test with the condition's last detail.
package eventually

import (
	"testing"
	"time"
)

// poll is how often the condition is checked.
const poll = 10 * time.Millisecond

// Eventually calls cond until it reports true, and fails t when timeout
// passes first, naming what and the last detail cond gave.
func Eventually(t testing.TB, what string, timeout time.Duration, cond func() (bool, string)) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		ok, detail := cond()
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s: %s", timeout, what, detail)
			return
		}
		time.Sleep(poll)
	}
}

// True adapts a condition without detail to Eventually.
func True(cond func() bool) func() (bool, string) {
	return func() (bool, string) { return cond(), "" }
}
