package health_test

import (
	"errors"
	"testing"
	"time"

	"github.com/persys-dev/compute/internal/federation/fedapi"
	"github.com/persys-dev/compute/internal/federation/health"
)

func TestStep(t *testing.T) {
	joined := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	grace := 15 * time.Second
	at := func(s int) time.Time { return joined.Add(time.Duration(s) * time.Second) }
	down := errors.New("connection refused")
	ok := func(s int) health.Probe {
		return health.Probe{At: at(s), Summary: health.Summary{Leader: "s1", NodesTotal: 2, NodesReady: 1, CPUCapacityMillis: 4000}}
	}
	fail := func(s int) health.Probe { return health.Probe{At: at(s), Err: down} }
	ready := func(s int) fedapi.Health {
		h, _ := health.Step(health.Initial(joined), ok(s), joined, grace)
		return h
	}
	withState := func(h fedapi.Health, s fedapi.State, since int) fedapi.Health {
		h.State, h.Since = s, at(since)
		return h
	}
	tests := []struct {
		name      string
		prev      fedapi.Health
		probe     health.Probe
		wantState fedapi.State
		wantTr    health.Transition
		wantSince time.Time
	}{
		{"first probe reaches a new member", health.Initial(joined), ok(1), fedapi.StateReady, health.ToReady, at(1)},
		{"zero health counts as just joined", fedapi.Health{}, ok(1), fedapi.StateReady, health.ToReady, at(1)},
		{"ready stays ready", ready(1), ok(4), fedapi.StateReady, health.None, at(1)},
		{"a failure within grace is unreachable", ready(1), fail(4), fedapi.StateUnreachable, health.ToUnreachable, at(4)},
		{"unreachable stays so within grace", withState(ready(1), fedapi.StateUnreachable, 4), fail(15), fedapi.StateUnreachable, health.None, at(4)},
		{"grace after the last contact is lost", withState(ready(1), fedapi.StateUnreachable, 4), fail(16), fedapi.StateLost, health.ToLost, at(16)},
		{"lost stays lost", withState(ready(1), fedapi.StateLost, 16), fail(40), fedapi.StateLost, health.None, at(16)},
		{"never reached counts grace from the join", health.Initial(joined), fail(15), fedapi.StateLost, health.ToLost, at(15)},
		{"never reached within grace is unreachable", health.Initial(joined), fail(3), fedapi.StateUnreachable, health.ToUnreachable, at(3)},
		{"a lost member that answers is ready", withState(ready(1), fedapi.StateLost, 16), ok(50), fedapi.StateReady, health.ToReady, at(50)},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, tr := health.Step(tc.prev, tc.probe, joined, grace)
			if got.State != tc.wantState || tr != tc.wantTr || !got.Since.Equal(tc.wantSince) {
				t.Fatalf("state %s transition %q since %s, want %s %q %s", got.State, tr, got.Since, tc.wantState, tc.wantTr, tc.wantSince)
			}
			if got.LastProbe != tc.probe.At {
				t.Fatalf("last probe %s, want %s", got.LastProbe, tc.probe.At)
			}
			if tc.probe.Err == nil {
				if !got.Reachable || got.LastContact != tc.probe.At || got.LastError != "" || got.Leader != "s1" || got.NodesTotal != 2 || got.CPUCapacityMillis != 4000 {
					t.Fatalf("a successful probe left %+v", got)
				}
				return
			}
			if got.Reachable || got.LastError != down.Error() || got.LastContact != tc.prev.LastContact {
				t.Fatalf("a failed probe left %+v (previous contact %s)", got, tc.prev.LastContact)
			}
		})
	}
}
