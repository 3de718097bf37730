package fedplace

import (
	"maps"
	"strings"
	"testing"
	"time"

	"github.com/persys-dev/compute/internal/federation/fedapi"
)

func TestOffload(t *testing.T) {
	now := time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)
	abc := fedapi.Placement{Clusters: []string{"a", "b", "c"}, Offload: true,
		Failover: &fedapi.Failover{Grace: "10s"}}
	ready := map[string]fedapi.Health{"a": {State: fedapi.StateReady}, "b": {State: fedapi.StateReady}, "c": {State: fedapi.StateReady}}
	lostB := map[string]fedapi.Health{"a": {State: fedapi.StateReady}, "b": {State: fedapi.StateLost, LastContact: now.Add(-time.Minute)}, "c": {State: fedapi.StateReady}}
	cap := func(n int, rev int64) fedapi.ServiceCap {
		return fedapi.ServiceCap{Replicas: n, Revision: rev, Reason: "no node fits"}
	}
	tests := []struct {
		name   string
		shares fedapi.Shares
		caps   map[string]fedapi.ServiceCap
		health map[string]fedapi.Health
		want   fedapi.Shares
		note   string // in the notes; "" for none
	}{
		{"no caps", fedapi.Shares{"a": 2, "b": 2, "c": 2}, nil, ready, fedapi.Shares{"a": 2, "b": 2, "c": 2}, ""},
		{"a's rest to b", fedapi.Shares{"a": 2, "b": 2, "c": 2}, map[string]fedapi.ServiceCap{"a": cap(1, 3)}, ready,
			fedapi.Shares{"a": 1, "b": 3, "c": 2}, "offloaded from a 1 to b (no node fits)"},
		{"a holds none", fedapi.Shares{"a": 2, "b": 2, "c": 2}, map[string]fedapi.ServiceCap{"a": cap(0, 3)}, ready,
			fedapi.Shares{"b": 4, "c": 2}, "offloaded from a 2 to b"},
		{"b full: a's rest to c", fedapi.Shares{"a": 2, "b": 2, "c": 2}, map[string]fedapi.ServiceCap{"a": cap(1, 3), "b": cap(2, 3)}, ready,
			fedapi.Shares{"a": 1, "b": 2, "c": 3}, "offloaded from a 1 to c"},
		{"b takes up to its cap, c the rest", fedapi.Shares{"a": 6}, map[string]fedapi.ServiceCap{"a": cap(2, 3), "b": cap(2, 3)}, ready,
			fedapi.Shares{"a": 2, "b": 2, "c": 2}, "offloaded from a 2 to b, 2 to c"},
		{"c wraps to a", fedapi.Shares{"a": 2, "b": 2, "c": 2}, map[string]fedapi.ServiceCap{"c": cap(0, 3)}, ready,
			fedapi.Shares{"a": 4, "b": 2}, "offloaded from c 2 to a"},
		{"lost b skipped", fedapi.Shares{"a": 3, "c": 3}, map[string]fedapi.ServiceCap{"a": cap(1, 3)}, lostB,
			fedapi.Shares{"a": 1, "c": 5}, "offloaded from a 2 to c"},
		{"every cluster full: stays", fedapi.Shares{"a": 2, "b": 2, "c": 2}, map[string]fedapi.ServiceCap{"a": cap(1, 3), "b": cap(2, 3), "c": cap(2, 3)}, ready,
			fedapi.Shares{"a": 2, "b": 2, "c": 2}, "a keeps 1 more than fit"},
		{"some room left elsewhere", fedapi.Shares{"a": 4, "b": 1, "c": 1}, map[string]fedapi.ServiceCap{"a": cap(1, 3), "b": cap(2, 3), "c": cap(2, 3)}, ready,
			fedapi.Shares{"a": 2, "b": 2, "c": 2}, "a keeps 1 more than fit"},
		{"cap of an older revision", fedapi.Shares{"a": 2, "b": 2, "c": 2}, map[string]fedapi.ServiceCap{"a": cap(0, 2)}, ready,
			fedapi.Shares{"a": 2, "b": 2, "c": 2}, ""},
		{"cap not reached", fedapi.Shares{"a": 2, "b": 2, "c": 2}, map[string]fedapi.ServiceCap{"a": cap(2, 3)}, ready,
			fedapi.Shares{"a": 2, "b": 2, "c": 2}, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			in := maps.Clone(tc.shares)
			got, notes := Offload(abc, tc.shares, tc.caps, 3, tc.health, now)
			if !maps.Equal(got, tc.want) {
				t.Fatalf("shares %v, want %v (notes %q)", got, tc.want, notes)
			}
			if !maps.Equal(in, tc.shares) {
				t.Fatalf("Offload changed its input to %v", tc.shares)
			}
			total := 0
			for _, n := range got {
				total += n
			}
			if total != 6 {
				t.Fatalf("%d replicas after offload, want the 6 kept", total)
			}
			joined := strings.Join(notes, "; ")
			if (tc.note == "") != (joined == "") || !strings.Contains(joined, tc.note) {
				t.Fatalf("notes %q, want %q", joined, tc.note)
			}
		})
	}
}
