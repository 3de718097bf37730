package fedstore_test

import (
	"context"
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/persys-dev/compute/internal/federation/fedapi"
	"github.com/persys-dev/compute/internal/federation/fedstore"
)

// follow collects the messages of the events WatchEvents delivers from
// from until it has want of them.
func follow(t *testing.T, st *fedstore.Store, from fedstore.EventPos, f fedstore.EventFilter, want int, written func()) ([]fedstore.EventChange, int64) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var (
		got   []fedstore.EventChange
		first int64
	)
	errDone := errors.New("done")
	marks := 0
	err := st.WatchEvents(ctx, from, f, func(c fedstore.EventChange) error {
		got = append(got, c)
		if len(got) == want {
			return errDone
		}
		return nil
	}, func(rev int64) error {
		if marks++; marks == 1 {
			first = rev
			if written != nil {
				written()
			}
		}
		return nil
	})
	if !errors.Is(err, errDone) {
		t.Fatalf("watch ended with %v after %d events, want %d", err, len(got), want)
	}
	return got, first
}

func messages(cs []fedstore.EventChange) []string {
	out := make([]string, len(cs))
	for i, c := range cs {
		out[i] = c.Event.Message
	}
	return out
}

// TestWatchEvents follows new events only, in order, filtered; resumes
// after a position inside a relay's transaction of several events, and
// after a whole revision; and refuses a compacted position.
func TestWatchEvents(t *testing.T) {
	st := newStore(t)
	ctx := context.Background()
	if err := st.CreateMember(ctx, fedstore.Member{Name: "b", JoinedAt: time.Now()}); err != nil {
		t.Fatal(err)
	}
	if err := st.AddEvent(ctx, fedapi.Event{Type: fedapi.EventPlaced, Workload: "old", Message: "before the watch"}); err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	relayed := []fedapi.Event{
		{Time: now, Type: "Started", Cluster: "b", Workload: "w", Message: "r1"},
		{Time: now.Add(time.Millisecond), Type: "Started", Cluster: "b", Workload: "x", Message: "r2"},
		{Time: now.Add(2 * time.Millisecond), Type: "Started", Cluster: "b", Workload: "w", Message: "r3"},
	}
	write := func() {
		if err := st.AddEvent(ctx, fedapi.Event{Type: fedapi.EventPlaced, Workload: "w", Message: "p1"}); err != nil {
			t.Error(err)
		}
		if err := st.RelayEvents(ctx, "b", relayed, fedstore.Cursor{Time: now, Seen: 1}); err != nil {
			t.Error(err)
		}
		if err := st.AddEvent(ctx, fedapi.Event{Type: fedapi.EventPlaced, Workload: "w", Message: "p2"}); err != nil {
			t.Error(err)
		}
	}
	all, start := follow(t, st, fedstore.EventPos{}, fedstore.EventFilter{}, 5, write)
	if got, want := messages(all), []string{"p1", "r1", "r2", "r3", "p2"}; !slices.Equal(got, want) {
		t.Fatalf("followed %v, want %v (new events only, in order)", got, want)
	}
	if all[1].Pos.Revision != all[3].Pos.Revision || all[2].Pos.Index != 1 {
		t.Fatalf("relayed positions %+v %+v %+v, want one revision, indexes 0..2", all[1].Pos, all[2].Pos, all[3].Pos)
	}
	tests := []struct {
		name string
		from fedstore.EventPos
		f    fedstore.EventFilter
		want []string
	}{
		{"from the start", fedstore.EventPos{Revision: start, Index: -1}, fedstore.EventFilter{}, []string{"p1", "r1", "r2", "r3", "p2"}},
		{"inside the relay's write", all[1].Pos, fedstore.EventFilter{}, []string{"r2", "r3", "p2"}},
		{"after the relay's write", fedstore.EventPos{Revision: all[1].Pos.Revision, Index: -1}, fedstore.EventFilter{}, []string{"p2"}},
		{"one workload", fedstore.EventPos{Revision: start, Index: -1}, fedstore.EventFilter{Object: "w"}, []string{"p1", "r1", "r3", "p2"}},
		{"one cluster", fedstore.EventPos{Revision: start, Index: -1}, fedstore.EventFilter{Cluster: "b"}, []string{"r1", "r2", "r3"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, _ := follow(t, st, tc.from, tc.f, len(tc.want), nil)
			if !slices.Equal(messages(got), tc.want) {
				t.Fatalf("resumed with %v, want %v", messages(got), tc.want)
			}
		})
	}
	if err := st.Compact(ctx); err != nil {
		t.Fatal(err)
	}
	err := st.WatchEvents(ctx, fedstore.EventPos{Revision: start, Index: -1}, fedstore.EventFilter{}, func(fedstore.EventChange) error { return nil }, func(int64) error { return nil })
	if !errors.Is(err, fedstore.ErrCompacted) {
		t.Fatalf("watch from a compacted revision: %v, want ErrCompacted", err)
	}
}
