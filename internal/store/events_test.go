package store_test

import (
	"fmt"
	"testing"
	"time"

	persysv1 "github.com/persys-dev/compute/api/persys/v1"
	"github.com/persys-dev/compute/internal/store"
	"github.com/persys-dev/compute/internal/store/storetest"
	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"
)

func TestEventsOrderFilterLimit(t *testing.T) {
	t.Parallel()
	ctx := testCtx(t)
	s, cli := storetest.New(t)

	// Events in the past so that one stamped "now" is the newest.
	base := time.Now().Add(-time.Hour)
	for i := range 30 {
		wl := "a"
		if i%3 == 0 {
			wl = "b"
		}
		ev := &persysv1.Event{Type: "Placed", Workload: wl, Message: fmt.Sprint(i), Time: timestamppb.New(base.Add(time.Duration(i) * time.Millisecond))}
		if err := s.AppendEvent(ctx, ev); err != nil {
			t.Fatalf("append %d: %v", i, err)
		}
	}
	// Same timestamp twice: both kept, in append order; oldest of all.
	same := timestamppb.New(base.Add(-time.Hour))
	for _, m := range []string{"x", "y"} {
		if err := s.AppendEvent(ctx, &persysv1.Event{Type: "Applied", Workload: "c", Message: m, Time: same}); err != nil {
			t.Fatal(err)
		}
	}
	// No time: set to now, caller's message left alone.
	noTime := &persysv1.Event{Type: "Applied", Workload: "c", Message: "z"}
	if err := s.AppendEvent(ctx, noTime); err != nil {
		t.Fatal(err)
	}
	if noTime.Time != nil {
		t.Fatal("AppendEvent modified its argument")
	}

	msgs := func(evs []*persysv1.Event) string {
		out := make([]string, len(evs))
		for i, e := range evs {
			out[i] = e.GetMessage()
		}
		return fmt.Sprint(out)
	}
	tests := []struct {
		name     string
		workload string
		limit    int
		want     string
	}{
		{"newest last with limit", "", 4, "[27 28 29 z]"},
		{"filter by workload", "b", 3, "[21 24 27]"},
		{"filter beyond available", "c", 10, "[x y z]"},
		{"unknown workload", "none", 5, "[]"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			evs, err := s.ListEvents(ctx, tc.workload, tc.limit)
			if err != nil {
				t.Fatal(err)
			}
			if got := msgs(evs); got != tc.want {
				t.Fatalf("got %s, want %s", got, tc.want)
			}
		})
	}
	all, err := s.ListEvents(ctx, "", 0)
	if err != nil || len(all) != 33 {
		t.Fatalf("default limit: %d events, %v", len(all), err)
	}

	// Events share leases: far fewer leases than events.
	leases, err := cli.Leases(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(leases.Leases) != 1 {
		t.Fatalf("%d leases for 33 events, want 1", len(leases.Leases))
	}
}

func TestEventsPaginateWithFilter(t *testing.T) {
	t.Parallel()
	ctx := testCtx(t)
	s, _ := storetest.New(t)
	// More non-matching events than one scan page, the match at the oldest end.
	if err := s.AppendEvent(ctx, &persysv1.Event{Type: "Placed", Workload: "rare", Message: "old"}); err != nil {
		t.Fatal(err)
	}
	for i := range 600 {
		if err := s.AppendEvent(ctx, &persysv1.Event{Type: "Placed", Workload: "busy", Message: fmt.Sprint(i)}); err != nil {
			t.Fatal(err)
		}
	}
	evs, err := s.ListEvents(ctx, "rare", 5)
	if err != nil || len(evs) != 1 || evs[0].GetMessage() != "old" {
		t.Fatalf("got %v, %v", evs, err)
	}
}

func TestEventsExpire(t *testing.T) {
	t.Parallel()
	ctx := testCtx(t)
	_, cli := storetest.New(t)
	s := store.New(cli, store.Options{EventTTL: time.Second})
	if err := s.AppendEvent(ctx, &persysv1.Event{Type: "Placed", Workload: "w"}); err != nil {
		t.Fatal(err)
	}
	if evs, _ := s.ListEvents(ctx, "", 0); len(evs) != 1 {
		t.Fatalf("before expiry: %v", evs)
	}
	waitFor(t, 15*time.Second, "events to expire", func() bool {
		evs, err := s.ListEvents(ctx, "", 0)
		return err == nil && len(evs) == 0
	})
	// A later window gets a new lease; a revoked lease is replaced.
	if err := s.AppendEvent(ctx, &persysv1.Event{Type: "Placed", Workload: "w"}); err != nil {
		t.Fatal(err)
	}
	leases, err := cli.Leases(ctx)
	if err != nil || len(leases.Leases) != 1 {
		t.Fatalf("leases: %v, %v", leases, err)
	}
	if _, err := cli.Revoke(ctx, leases.Leases[0].ID); err != nil {
		t.Fatal(err)
	}
	if err := s.AppendEvent(ctx, &persysv1.Event{Type: "Placed", Workload: "w", Message: "after revoke"}); err != nil {
		t.Fatalf("append after revoke: %v", err)
	}
	if evs, _ := s.ListEvents(ctx, "w", 0); len(evs) != 1 || evs[0].GetMessage() != "after revoke" {
		t.Fatalf("after revoke: %v", evs)
	}
}

// A batch larger than one transaction is stored whole, in order; an
// invalid event is refused by name without losing the others.
func TestAppendEventsBatch(t *testing.T) {
	t.Parallel()
	ctx := testCtx(t)
	s, _ := storetest.New(t)
	base := time.Now().Add(-time.Minute)
	var evs []*persysv1.Event
	for i := range 300 {
		evs = append(evs, &persysv1.Event{Type: "Placed", Workload: fmt.Sprintf("w%03d", i), Message: fmt.Sprint(i),
			Time: timestamppb.New(base.Add(time.Duration(i) * time.Microsecond))})
	}
	evs = append(evs, &persysv1.Event{Workload: "no-type"}, nil)
	err := s.AppendEvents(ctx, evs)
	if err == nil {
		t.Fatal("batch with invalid events: no error")
	}
	got, lerr := s.ListEvents(ctx, "", 1000)
	if lerr != nil {
		t.Fatal(lerr)
	}
	if len(got) != 300 {
		t.Fatalf("%d events stored, want 300 (err %v)", len(got), err)
	}
	for i, ev := range got {
		if ev.GetMessage() != fmt.Sprint(i) {
			t.Fatalf("event %d has message %q: out of order", i, ev.GetMessage())
		}
	}
	if err := s.AppendEvents(ctx, nil); err != nil {
		t.Fatalf("empty batch: %v", err)
	}
}

// A burst is stored as few keys, each named after its newest event, and
// read back with the keys that hold one Event each (audit events, keys
// from before batching), in time order.
func TestEventsStoredInBatches(t *testing.T) {
	t.Parallel()
	ctx := testCtx(t)
	s, cli := storetest.New(t)
	base := time.Now().Add(-time.Minute)
	var evs []*persysv1.Event
	for i := range 600 {
		evs = append(evs, &persysv1.Event{Type: "Placed", Workload: "w", Message: fmt.Sprint(i),
			Time: timestamppb.New(base.Add(time.Duration(2*i) * time.Millisecond))})
	}
	if err := s.AppendEvents(ctx, evs); err != nil {
		t.Fatal(err)
	}
	// One Event alone under a key, timed between two of the burst's.
	single, err := proto.Marshal(&persysv1.Event{Type: "Legacy", Workload: "w", Message: "single",
		Time: timestamppb.New(base.Add(599 * time.Millisecond))})
	if err != nil {
		t.Fatal(err)
	}
	key := fmt.Sprintf("%s/events/%020d-%010d", s.Prefix(), base.Add(599*time.Millisecond).UnixNano(), 0)
	if _, err := cli.Put(ctx, key, string(single)); err != nil {
		t.Fatal(err)
	}
	// An undecodable value is skipped, not fatal.
	if _, err := cli.Put(ctx, s.Prefix()+"/events/99999999999999999999-0000000000", "\xff\xff"); err != nil {
		t.Fatal(err)
	}

	raw, err := cli.Get(ctx, s.Prefix()+"/events/", clientv3.WithPrefix(), clientv3.WithKeysOnly())
	if err != nil {
		t.Fatal(err)
	}
	if len(raw.Kvs) != 3+2 { // 256 + 256 + 88, the single one, the bad one
		t.Fatalf("%d keys under events/ for a burst of 600 and two single keys, want 5", len(raw.Kvs))
	}
	got, err := s.ListEvents(ctx, "w", 1000)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 601 {
		t.Fatalf("listed %d events, want 601", len(got))
	}
	for i := 1; i < len(got); i++ {
		if got[i].GetTime().AsTime().Before(got[i-1].GetTime().AsTime()) {
			t.Fatalf("event %d (%s) is older than event %d (%s)", i, got[i].GetMessage(), i-1, got[i-1].GetMessage())
		}
	}
	if got[300].GetMessage() != "single" {
		t.Fatalf("event 300 is %q, want the single one between 299 and 300", got[300].GetMessage())
	}
	// The newest few come from the newest key alone.
	last, err := s.ListEvents(ctx, "", 3)
	if err != nil || len(last) != 3 || last[0].GetMessage() != "597" || last[2].GetMessage() != "599" {
		t.Fatalf("newest 3: %v, %v", last, err)
	}
}
