package statecache

import (
	"testing"
	"time"
)

// A FAILED report is counted once for every run in the desired state
// before it: after an apply that reached the state (that attempt failed
// after all), after a run long enough for the attempts to be forgotten
// (attempt 1), and after a run a restarted scheduler only saw; never
// again for the same failure, and not after a retry that starts over.
func TestFailedAfterReachCountsEachRunOnce(t *testing.T) {
	now := time.Unix(1_000, 0)
	c := New(Config{Now: func() time.Time { return now }, Backoff: func(n int) time.Duration { return time.Duration(n) * time.Second }})
	c.WorkloadWritten(workloadNamed("web", "u1", 100), 2)

	if a, _ := c.FailedAfterReach("web"); a != 0 {
		t.Fatalf("a failure before any run counted as attempt %d, want none (the apply's answer counts it)", a)
	}
	if a, _, _ := c.BeginAttempt("web"); a != 1 {
		t.Fatalf("first apply is attempt %d", a)
	}
	c.MarkReached("web")
	if a, d := c.FailedAfterReach("web"); a != 1 || d != time.Second {
		t.Fatalf("failure after the first apply reached: attempt %d backoff %s, want 1 and 1s", a, d)
	}
	if a, _ := c.FailedAfterReach("web"); a != 0 {
		t.Fatalf("the same failure counted twice (attempt %d)", a)
	}

	c.BeginAttempt("web")
	c.MarkReached("web")
	c.ResetAttempts("web") // the run held for StableAfter
	if a, d := c.FailedAfterReach("web"); a != 1 || d != time.Second {
		t.Fatalf("failure after a stable run: attempt %d backoff %s, want 1 and 1s", a, d)
	}

	c.ResetAttempts("web") // a retry starts over
	if a, _ := c.FailedAfterReach("web"); a != 0 {
		t.Fatalf("a retry's restart counted the old failure again as attempt %d", a)
	}

	c.SeenReached("web") // a restarted scheduler sees it running
	if a, _ := c.FailedAfterReach("web"); a != 1 {
		t.Fatalf("failure of a run only seen: attempt %d, want 1", a)
	}
}
