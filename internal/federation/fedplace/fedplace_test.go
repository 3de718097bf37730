package fedplace_test

import (
	"errors"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"

	persysv1 "github.com/persys-dev/compute/api/persys/v1"
	"github.com/persys-dev/compute/internal/federation/fedapi"
	"github.com/persys-dev/compute/internal/federation/fedplace"
	"github.com/persys-dev/compute/internal/gateway/httperr"
)

func TestValidate(t *testing.T) {
	members := fedplace.Members{"a": {"region": "eu"}, "b": {"region": "us"}}
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
		{"spread of a workload", fedapi.Placement{Clusters: []string{"a"}, Strategy: "spread"}, "placement.strategy"},
		{"weights of a workload", fedapi.Placement{Clusters: []string{"a"}, Weights: map[string]int{"a": 1}}, "placement.weights"},
		{"selector", fedapi.Placement{ClusterSelector: map[string]string{"region": "eu"}}, ""},
		{"selector matching nothing", fedapi.Placement{ClusterSelector: map[string]string{"region": "mars"}}, "placement.clusterSelector"},
		{"selector and clusters", fedapi.Placement{Clusters: []string{"a"}, ClusterSelector: map[string]string{"region": "eu"}}, "placement.clusterSelector"},
		{"failover", fedapi.Placement{Clusters: []string{"a"}, Failover: &fedapi.Failover{Grace: "30s"}}, ""},
		{"failover grace not a duration", fedapi.Placement{Clusters: []string{"a"}, Failover: &fedapi.Failover{Grace: "soon"}}, "placement.failover.grace"},
		{"failover grace too short", fedapi.Placement{Clusters: []string{"a"}, Failover: &fedapi.Failover{Grace: "10ms"}}, "placement.failover.grace"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := fedplace.ValidateWorkload(tc.p, members)
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

func TestValidateService(t *testing.T) {
	members := fedplace.Members{"a": {"region": "eu"}, "b": {"region": "eu"}, "c": {"region": "us"}}
	abc := []string{"a", "b", "c"}
	tests := []struct {
		name  string
		p     fedapi.Placement
		field string
	}{
		{"equal spread", fedapi.Placement{Clusters: abc}, ""},
		{"counts", fedapi.Placement{Clusters: abc, Strategy: "spread", Counts: map[string]int{"a": 2, "b": 2, "c": 2}}, ""},
		{"counts of a selector", fedapi.Placement{ClusterSelector: map[string]string{"region": "eu"}, Counts: map[string]int{"a": 3, "b": 3}}, ""},
		{"counts not adding up", fedapi.Placement{Clusters: abc, Counts: map[string]int{"a": 2, "b": 2}}, "placement.counts"},
		{"count of a cluster outside", fedapi.Placement{ClusterSelector: map[string]string{"region": "eu"}, Counts: map[string]int{"a": 3, "c": 3}}, "placement.counts.c"},
		{"negative weight", fedapi.Placement{Clusters: abc, Weights: map[string]int{"a": -1}}, "placement.weights.a"},
		{"zero weights", fedapi.Placement{Clusters: abc, Weights: map[string]int{"a": 0}}, "placement.weights"},
		{"both", fedapi.Placement{Clusters: abc, Weights: map[string]int{"a": 1}, Counts: map[string]int{"a": 6}}, "placement.counts"},
		{"weights with fill", fedapi.Placement{Clusters: abc, Strategy: "fill", Weights: map[string]int{"a": 1}}, "placement.strategy"},
		{"unknown cluster", fedapi.Placement{Clusters: []string{"a", "z"}}, "placement.clusters[1]"},
		{"bad strategy", fedapi.Placement{Clusters: abc, Strategy: "pack"}, "placement.strategy"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := fedplace.ValidateService(tc.p, members, 6)
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

func TestTargets(t *testing.T) {
	members := fedplace.Members{"c": {"region": "eu"}, "a": {"region": "eu", "tier": "gold"}, "b": {"region": "us"}}
	for _, tc := range []struct {
		p    fedapi.Placement
		want string
	}{
		{fedapi.Placement{Clusters: []string{"b", "a", "gone"}}, "b,a"},
		{fedapi.Placement{ClusterSelector: map[string]string{"region": "eu"}}, "a,c"},
		{fedapi.Placement{ClusterSelector: map[string]string{"region": "eu", "tier": "gold"}}, "a"},
		{fedapi.Placement{ClusterSelector: map[string]string{"region": "mars"}}, ""},
	} {
		if got := strings.Join(fedplace.Targets(tc.p, members), ","); got != tc.want {
			t.Errorf("Targets(%+v) = %q, want %q", tc.p, got, tc.want)
		}
	}
}

func TestSpread(t *testing.T) {
	now := time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)
	ready := fedapi.Health{State: fedapi.StateReady, LastContact: now}
	lost := fedapi.Health{State: fedapi.StateLost, LastContact: now.Add(-time.Minute)}
	briefly := fedapi.Health{State: fedapi.StateUnreachable, LastContact: now.Add(-time.Second)}
	all := map[string]fedapi.Health{"a": ready, "b": ready, "c": ready}
	bLost := map[string]fedapi.Health{"a": ready, "b": lost, "c": ready}
	abc := []string{"a", "b", "c"}
	grace := &fedapi.Failover{Grace: "5s"}
	tests := []struct {
		name     string
		p        fedapi.Placement
		replicas int
		health   map[string]fedapi.Health
		want     string
		ok       bool
	}{
		{"equal", fedapi.Placement{Clusters: abc}, 6, all, "a=2,b=2,c=2", true},
		{"equal with a remainder to the first", fedapi.Placement{Clusters: abc}, 7, all, "a=3,b=2,c=2", true},
		{"remainder follows preference", fedapi.Placement{Clusters: []string{"c", "b", "a"}}, 7, all, "a=2,b=2,c=3", true},
		{"counts kept", fedapi.Placement{Clusters: abc, Counts: map[string]int{"a": 1, "b": 2, "c": 3}}, 6, all, "a=1,b=2,c=3", true},
		{"weights", fedapi.Placement{Clusters: abc, Weights: map[string]int{"a": 2, "b": 1}}, 6, all, "a=4,b=2", true},
		{"lost member's share moves", fedapi.Placement{Clusters: abc, Failover: grace}, 6, bLost, "a=3,c=3", true},
		{"lost member's count moves by the others' counts", fedapi.Placement{Clusters: abc, Counts: map[string]int{"a": 1, "b": 2, "c": 3}, Failover: grace}, 6, bLost, "a=2,c=4", true},
		{"within the grace it stays", fedapi.Placement{Clusters: abc, Failover: grace}, 6, map[string]fedapi.Health{"a": ready, "b": briefly, "c": ready}, "a=2,b=2,c=2", true},
		{"without failover it stays", fedapi.Placement{Clusters: abc}, 6, bLost, "a=2,b=2,c=2", true},
		{"fill", fedapi.Placement{Clusters: abc, Strategy: "fill"}, 6, all, "a=6", true},
		{"fill fails over", fedapi.Placement{Clusters: []string{"b", "a"}, Strategy: "fill", Failover: grace}, 6, bLost, "a=6", true},
		{"all out", fedapi.Placement{Clusters: []string{"b"}, Failover: grace}, 6, bLost, "", false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, reason, ok := fedplace.Spread(tc.p, tc.replicas, tc.health, now)
			if ok != tc.ok || fedplace.FormatShares(got) != tc.want {
				t.Fatalf("Spread = %v (%s), %v; want %s, %v", got, reason, ok, tc.want, tc.ok)
			}
			sum := 0
			for _, n := range got {
				sum += n
			}
			if ok && sum != tc.replicas {
				t.Fatalf("shares %v add up to %d, want %d", got, sum, tc.replicas)
			}
		})
	}
}

// TestSpreadProperties checks, over seeded random placements and
// health, the rules a division must keep: the shares add up to the
// replicas, a cluster past its failover grace gets none, a cluster
// outside the placement or weighing nothing gets none, and with nobody
// out the counts are kept exactly.
func TestSpreadProperties(t *testing.T) {
	rng := rand.New(rand.NewPCG(21, 7))
	now := time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)
	names := []string{"a", "b", "c", "d", "e"}
	for i := range 2000 {
		p := fedapi.Placement{Failover: &fedapi.Failover{Grace: "5s"}}
		for _, n := range names[:1+rng.IntN(len(names))] {
			p.Clusters = append(p.Clusters, n)
		}
		replicas := rng.IntN(50)
		health := map[string]fedapi.Health{}
		for _, c := range p.Clusters {
			if rng.IntN(4) == 0 {
				health[c] = fedapi.Health{State: fedapi.StateLost, LastContact: now.Add(-time.Minute)}
			} else {
				health[c] = fedapi.Health{State: fedapi.StateReady, LastContact: now}
			}
		}
		switch rng.IntN(3) {
		case 1:
			p.Weights = map[string]int{}
			for _, c := range p.Clusters {
				p.Weights[c] = rng.IntN(4)
			}
		case 2:
			p.Counts = map[string]int{}
			left := replicas
			for j, c := range p.Clusters {
				n := left
				if j < len(p.Clusters)-1 {
					n = rng.IntN(left + 1)
				}
				p.Counts[c], left = n, left-n
			}
		}
		shares, reason, ok := fedplace.Spread(p, replicas, health, now)
		if !ok {
			continue
		}
		sum, anyOut := 0, false
		for c, n := range shares {
			sum += n
			if n <= 0 {
				t.Fatalf("case %d: share %d for %s kept: %v", i, n, c, shares)
			}
			if health[c].State == fedapi.StateLost {
				t.Fatalf("case %d: lost cluster %s got %d (%s)", i, c, n, reason)
			}
			if !slices.Contains(p.Clusters, c) {
				t.Fatalf("case %d: %s is not in the placement: %v", i, c, shares)
			}
			if p.Weights != nil && p.Weights[c] == 0 {
				t.Fatalf("case %d: %s weighs nothing and got %d", i, c, n)
			}
		}
		if sum != replicas {
			t.Fatalf("case %d: shares %v add up to %d, want %d", i, shares, sum, replicas)
		}
		for _, c := range p.Clusters {
			anyOut = anyOut || health[c].State == fedapi.StateLost
		}
		if p.Counts != nil && !anyOut {
			for _, c := range p.Clusters {
				if shares[c] != p.Counts[c] {
					t.Fatalf("case %d: counts %v not kept: %v", i, p.Counts, shares)
				}
			}
		}
	}
}
