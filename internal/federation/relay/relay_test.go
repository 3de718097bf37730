package relay_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	persysv1 "github.com/persys-dev/compute/api/persys/v1"
	"github.com/persys-dev/compute/internal/federation/fedapi"
	"github.com/persys-dev/compute/internal/federation/fedstore"
	"github.com/persys-dev/compute/internal/federation/fedtest"
	"github.com/persys-dev/compute/internal/federation/fedwork"
	"github.com/persys-dev/compute/internal/federation/relay"
	"github.com/persys-dev/compute/internal/testutil/eventually"
)

func TestAfter(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	ev := func(sec int, msg string) *persysv1.Event {
		return &persysv1.Event{Time: timestamppb.New(t0.Add(time.Duration(sec) * time.Second)), Message: msg}
	}
	// Two events share the instant 2s; the member answers newest last.
	poll := []*persysv1.Event{ev(1, "a"), ev(2, "b"), ev(2, "c"), ev(3, "d")}
	tests := []struct {
		name     string
		evs      []*persysv1.Event
		cur      fedstore.Cursor
		limit    int
		want     string
		wantNext fedstore.Cursor
		gap      bool
	}{
		{"from the start", poll, fedstore.Cursor{Time: t0}, 10, "abcd", fedstore.Cursor{Time: t0.Add(3 * time.Second), Seen: 1}, false},
		{"after one of an instant", poll, fedstore.Cursor{Time: t0.Add(2 * time.Second), Seen: 1}, 10, "cd", fedstore.Cursor{Time: t0.Add(3 * time.Second), Seen: 1}, false},
		{"ending on an instant", poll[:3], fedstore.Cursor{Time: t0.Add(time.Second), Seen: 1}, 10, "bc", fedstore.Cursor{Time: t0.Add(2 * time.Second), Seen: 2}, false},
		{"nothing new", poll, fedstore.Cursor{Time: t0.Add(3 * time.Second), Seen: 1}, 10, "", fedstore.Cursor{Time: t0.Add(3 * time.Second), Seen: 1}, false},
		{"a full poll all new may have missed some", poll, fedstore.Cursor{Time: t0}, 4, "abcd", fedstore.Cursor{Time: t0.Add(3 * time.Second), Seen: 1}, true},
		{"out of order", []*persysv1.Event{ev(3, "d"), ev(1, "a")}, fedstore.Cursor{Time: t0}, 10, "ad", fedstore.Cursor{Time: t0.Add(3 * time.Second), Seen: 1}, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			fresh, next, gap := relay.After(tc.evs, tc.cur, tc.limit)
			var got strings.Builder
			for _, e := range fresh {
				got.WriteString(e.GetMessage())
			}
			if got.String() != tc.want || !next.Time.Equal(tc.wantNext.Time) || next.Seen != tc.wantNext.Seen || gap != tc.gap {
				t.Fatalf("After = %q, %+v, gap %v; want %q, %+v, gap %v", got.String(), next, gap, tc.want, tc.wantNext, tc.gap)
			}
		})
	}
}

// TestRelay relays a real member's events with the cluster named, once
// each across rounds.
func TestRelay(t *testing.T) {
	m := fedtest.StartMember(t)
	fed := fedtest.StartFederation(t, 15*time.Second)
	ctx := context.Background()
	if _, err := fed.Admin.JoinCluster(ctx, m.Join(t, "a")); err != nil {
		t.Fatal(err)
	}
	mc := m.Cluster.Client(t, m.Gateway)
	if _, err := mc.Apply(ctx, []byte("apiVersion: persys/v1\nkind: Workload\nmetadata:\n  name: w1\nspec:\n  type: container\n  desiredState: running\n  container:\n    image: sim/app:1\n  resources:\n    cpu: 100m\n    memory: 16Mi\n")); err != nil {
		t.Fatal(err)
	}
	r := relay.New(relay.Config{Store: fed.Store, Lookup: fedwork.Lookup(fed.Store)})
	t.Cleanup(r.Close)
	eventually.Eventually(t, "w1's member events relayed", 30*time.Second, func() (bool, string) {
		if err := r.Round(ctx); err != nil {
			return false, err.Error()
		}
		evs, err := fed.Store.FindEvents(ctx, fedstore.EventFilter{Object: "w1"}, 0)
		if err != nil {
			return false, err.Error()
		}
		for _, e := range evs {
			if e.Cluster == "a" && e.NodeID == "a/node-1" {
				return true, ""
			}
		}
		return false, fmt.Sprintf("%d events of w1, none on a/node-1", len(evs))
	})
	before, err := fed.Store.FindEvents(ctx, fedstore.EventFilter{Cluster: "a"}, 0)
	if err != nil {
		t.Fatal(err)
	}
	member, err := mc.ListEvents(ctx, "", 0)
	if err != nil {
		t.Fatal(err)
	}
	if err := r.Round(ctx); err != nil {
		t.Fatal(err)
	}
	after, err := fed.Store.FindEvents(ctx, fedstore.EventFilter{Cluster: "a"}, 0)
	if err != nil {
		t.Fatal(err)
	}
	// A second round relays only what the member wrote meanwhile.
	relayed := 0
	for _, e := range after {
		if e.Type != fedapi.EventJoined {
			relayed++
		}
	}
	if relayed > len(member.GetEvents())+5 || len(after) < len(before) {
		t.Fatalf("%d relayed events of a for %d at the member: relayed twice?", relayed, len(member.GetEvents()))
	}
	seen := map[string]int{}
	for _, e := range after {
		seen[e.Time.String()+e.Type+e.Message]++
		if seen[e.Time.String()+e.Type+e.Message] > 1 {
			t.Fatalf("event relayed twice: %+v", e)
		}
	}
}
