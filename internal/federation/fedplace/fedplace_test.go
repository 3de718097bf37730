package fedplace_test

import (
	"errors"
	"testing"
	"time"

	persysv1 "github.com/persys-dev/compute/api/persys/v1"
	"github.com/persys-dev/compute/internal/federation/fedapi"
	"github.com/persys-dev/compute/internal/federation/fedplace"
	"github.com/persys-dev/compute/internal/gateway/httperr"
)

func TestValidate(t *testing.T) {
	members := map[string]bool{"a": true, "b": true}
	tests := []struct {
		name  string
		p     fedapi.Placement
		field string
	}{
		{"fine", fedapi.Placement{Clusters: []string{"b", "a"}, Offload: true}, ""},
		{"fill named", fedapi.Placement{Clusters: []string{"a"}, Strategy: "fill"}, ""},
		{"no clusters", fedapi.Placement{}, "placement.clusters"},
		{"unknown cluster", fedapi.Placement{Clusters: []string{"a", "c"}}, "placement.clusters[1]"},
		{"twice", fedapi.Placement{Clusters: []string{"a", "a"}}, "placement.clusters[1]"},
		{"other strategy", fedapi.Placement{Clusters: []string{"a"}, Strategy: "spread"}, "placement.strategy"},
		{"failover", fedapi.Placement{Clusters: []string{"a"}, Failover: &fedapi.Failover{Grace: "30s"}}, ""},
		{"failover grace not a duration", fedapi.Placement{Clusters: []string{"a"}, Failover: &fedapi.Failover{Grace: "soon"}}, "placement.failover.grace"},
		{"failover grace too short", fedapi.Placement{Clusters: []string{"a"}, Failover: &fedapi.Failover{Grace: "10ms"}}, "placement.failover.grace"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := fedplace.Validate(tc.p, members)
			if tc.field == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			var he *httperr.Error
			if !errors.As(err, &he) || len(he.Fields) != 1 || he.Fields[0].Field != tc.field {
				t.Fatalf("err %v, want a field error naming %s", err, tc.field)
			}
		})
	}
}

func TestChoose(t *testing.T) {
	ready := fedapi.Health{State: fedapi.StateReady}
	p := fedapi.Placement{Clusters: []string{"a", "b", "c"}, Offload: true}
	tests := []struct {
		name     string
		health   map[string]fedapi.Health
		refusals []fedapi.Refusal
		want     string
		ok       bool
	}{
		{"first ready", map[string]fedapi.Health{"a": ready, "b": ready}, nil, "a", true},
		{"skips unreachable", map[string]fedapi.Health{"a": {State: fedapi.StateUnreachable}, "b": ready}, nil, "b", true},
		{"skips never probed", map[string]fedapi.Health{"b": ready}, nil, "b", true},
		{"skips a refusal of this revision", map[string]fedapi.Health{"a": ready, "b": ready}, []fedapi.Refusal{{Cluster: "a", Revision: 2}}, "b", true},
		{"a refusal of another revision does not count", map[string]fedapi.Health{"a": ready}, []fedapi.Refusal{{Cluster: "a", Revision: 1}}, "a", true},
		{"none left", map[string]fedapi.Health{"a": ready, "c": {State: fedapi.StateLost}}, []fedapi.Refusal{{Cluster: "a", Revision: 2}}, "", false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, reason, ok := fedplace.Choose(p, 2, tc.health, tc.refusals)
			if got != tc.want || ok != tc.ok || reason == "" {
				t.Fatalf("Choose = %q, %q, %v; want %q, %v", got, reason, ok, tc.want, tc.ok)
			}
		})
	}
}

func TestCapacityRefusal(t *testing.T) {
	view := func(s persysv1.ActualState, r persysv1.FailureReason) *persysv1.WorkloadView {
		return &persysv1.WorkloadView{Status: &persysv1.WorkloadStatus{State: s, Reason: r, Message: "cpu"}}
	}
	tests := []struct {
		name string
		v    *persysv1.WorkloadView
		want bool
	}{
		{"pending, no node fits", view(persysv1.ActualState_ACTUAL_STATE_PENDING, persysv1.FailureReason_FAILURE_REASON_NO_FEASIBLE_NODE), true},
		{"pending, insufficient resources", view(persysv1.ActualState_ACTUAL_STATE_PENDING, persysv1.FailureReason_FAILURE_REASON_INSUFFICIENT_RESOURCES), true},
		{"pending, not placed yet", view(persysv1.ActualState_ACTUAL_STATE_PENDING, persysv1.FailureReason_FAILURE_REASON_UNSPECIFIED), false},
		{"running", view(persysv1.ActualState_ACTUAL_STATE_RUNNING, persysv1.FailureReason_FAILURE_REASON_UNSPECIFIED), false},
		{"failed for another reason", view(persysv1.ActualState_ACTUAL_STATE_FAILED, persysv1.FailureReason_FAILURE_REASON_IMAGE_NOT_FOUND), false},
		{"no status", &persysv1.WorkloadView{}, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if _, got := fedplace.CapacityRefusal(tc.v); got != tc.want {
				t.Fatalf("CapacityRefusal = %v, want %v", got, tc.want)
			}
		})
	}
}

func TestFailoverDue(t *testing.T) {
	now := time.Date(2026, 1, 1, 0, 1, 0, 0, time.UTC)
	with := fedapi.Placement{Clusters: []string{"a"}, Failover: &fedapi.Failover{Grace: "30s"}}
	ago := func(s int) time.Time { return now.Add(-time.Duration(s) * time.Second) }
	tests := []struct {
		name string
		p    fedapi.Placement
		h    fedapi.Health
		want bool
	}{
		{"no failover", fedapi.Placement{Clusters: []string{"a"}}, fedapi.Health{State: fedapi.StateLost, LastContact: ago(300)}, false},
		{"ready", with, fedapi.Health{State: fedapi.StateReady, LastContact: ago(300)}, false},
		{"unreachable within grace", with, fedapi.Health{State: fedapi.StateUnreachable, LastContact: ago(29)}, false},
		{"unreachable past grace", with, fedapi.Health{State: fedapi.StateUnreachable, LastContact: ago(30)}, true},
		{"lost past grace", with, fedapi.Health{State: fedapi.StateLost, LastContact: ago(60)}, true},
		{"never reached, since past grace", with, fedapi.Health{State: fedapi.StateLost, Since: ago(31)}, true},
		{"no health", with, fedapi.Health{}, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := fedplace.FailoverDue(tc.p, tc.h, now); got != tc.want {
				t.Fatalf("FailoverDue = %v, want %v", got, tc.want)
			}
		})
	}
}
