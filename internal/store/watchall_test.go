package store_test

import (
	"context"
	"testing"
	"time"

	persysv1 "github.com/persys-dev/compute/api/persys/v1"
	"github.com/persys-dev/compute/internal/store"
	"github.com/persys-dev/compute/internal/store/storetest"
)

// WatchAll delivers one Batch per revision, with the changes of a
// transaction together, and decodes services and events too; the
// snapshot it starts from holds them at one revision.
func TestWatchAllBatchesByRevision(t *testing.T) {
	s, _ := storetest.New(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := s.AppendEvent(ctx, &persysv1.Event{Type: "Created", Workload: "old"}); err != nil {
		t.Fatal(err)
	}
	snap, err := s.LoadWatchState(ctx, 10)
	if err != nil {
		t.Fatal(err)
	}
	if len(snap.Events) != 1 || snap.Events[0].GetWorkload() != "old" || snap.EventRevs[0] == 0 {
		t.Fatalf("snapshot events %v at %v, want the one appended", snap.Events, snap.EventRevs)
	}
	ch := s.WatchAll(ctx, snap.Revision)
	res := s.CreateWorkloads(ctx, []*persysv1.Workload{
		{Name: "a", Uid: "ua", Revision: 1}, {Name: "b", Uid: "ub", Revision: 1}})
	if res[0].Err != nil || res[1].Err != nil {
		t.Fatal(res)
	}
	svc := &persysv1.Service{Name: "web", Uid: "us", Spec: &persysv1.ServiceSpec{Replicas: 1, Template: &persysv1.WorkloadSpec{}}}
	if _, err := s.CreateService(ctx, svc); err != nil {
		t.Fatal(err)
	}
	if err := s.AppendEvents(ctx, []*persysv1.Event{{Type: "Placed", Workload: "a"}, {Type: "Placed", Workload: "b"}}); err != nil {
		t.Fatal(err)
	}
	next := func() store.Batch {
		t.Helper()
		for {
			select {
			case b := <-ch:
				if b.Err != nil {
					t.Fatal(b.Err)
				}
				if len(b.Changes) > 0 {
					return b
				}
			case <-ctx.Done():
				t.Fatal("no batch")
			}
		}
	}
	b := next()
	if len(b.Changes) != 2 || b.Changes[0].Key != "a" || b.Changes[1].Key != "b" || b.Revision != res[0].Rev {
		t.Fatalf("first batch %+v, want workloads a and b at revision %d", b, res[0].Rev)
	}
	if b = next(); len(b.Changes) != 1 || b.Changes[0].Kind != store.KindService || b.Changes[0].Service.GetName() != "web" {
		t.Fatalf("second batch %+v, want service web", b)
	}
	if b = next(); len(b.Changes) != 1 || b.Changes[0].Kind != store.KindEvents || len(b.Changes[0].Events) != 2 {
		t.Fatalf("third batch %+v, want two events in one key", b)
	}
}
