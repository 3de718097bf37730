package scheduler_test

import (
	"fmt"
	"strings"
	"testing"
	"time"

	persysv1 "github.com/persys-dev/compute/api/persys/v1"
)

// TestCrashLoopBacksOff: a container that starts and exits at once is
// re-applied with backoff, each exit counting as a failed attempt, until
// the attempts run out; it does not loop without pause on the strength of
// each start reaching RUNNING for a moment.
func TestCrashLoopBacksOff(t *testing.T) {
	c := newClusterWith(t, clusterOptions{config: fastConfig})
	name := c.name("crashloop")
	spec := c.spec(64*mib, nil)
	spec.Container.Args = []string{"exit", "3"}
	spec.Container.RestartPolicy = "no"
	c.apply(name, spec)

	// Three container starts and exits; slow on a loaded engine.
	var v *persysv1.WorkloadView
	waitFor(t, name+" to be FAILED for good", 3*time.Minute, func() (bool, string) {
		var err error
		v, err = c.get(name)
		if err != nil {
			return false, err.Error()
		}
		st := v.GetStatus()
		return st.GetState() == persysv1.ActualState_ACTUAL_STATE_FAILED && strings.HasPrefix(st.GetMessage(), "gave up after"),
			fmt.Sprintf("%s/%s attempts %d: %s (events %q)", st.GetState(), st.GetReason(), st.GetAttempts(), st.GetMessage(), c.attemptMessages(name))
	})
	if st := v.GetStatus(); st.GetAttempts() != 3 || !strings.Contains(st.GetMessage(), "gave up after 3 attempts") {
		t.Fatalf("status = %s/%s attempts %d: %s, want gave up after 3 attempts", st.GetState(), st.GetReason(), st.GetAttempts(), st.GetMessage())
	}
	if st := v.GetStatus(); st.GetReason() != persysv1.FailureReason_FAILURE_REASON_CONTAINER_EXITED {
		t.Errorf("reason %s, want CONTAINER_EXITED", st.GetReason())
	}
	msgs := c.attemptMessages(name)
	if len(msgs) == 0 {
		t.Fatal("no AttemptFailed events: the exits were not counted as attempts")
	}
	for _, m := range msgs[:len(msgs)-1] {
		if !strings.Contains(m, "next attempt in") {
			t.Errorf("attempt without backoff: %q", m)
		}
	}
}
