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
	if ok, detail := Within(timeout, poll, cond); !ok {
		t.Fatalf("timed out after %s waiting for %s: %s", timeout, what, detail)
	}
}

// Within calls cond every interval until it reports true or timeout
// passes, and returns whether it held and the last detail cond gave: for
// waits whose outcome is a result to report (a row of a table), not a
// failure, and for conditions too costly to check every 10 ms.
func Within(timeout, interval time.Duration, cond func() (bool, string)) (bool, string) {
	deadline := time.Now().Add(timeout)
	for {
		ok, detail := cond()
		if ok || time.Now().After(deadline) {
			return ok, detail
		}
		time.Sleep(interval)
	}
}

// True adapts a condition without detail to Eventually.
func True(cond func() bool) func() (bool, string) {
	return func() (bool, string) { return cond(), "" }
}
