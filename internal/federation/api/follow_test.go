package api_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/persys-dev/compute/internal/client"
	"github.com/persys-dev/compute/internal/federation/fedapi"
	"github.com/persys-dev/compute/internal/federation/fedtest"
	"github.com/persys-dev/compute/internal/pki"
)

// TestFollowEvents follows the federation's events with persysctl's
// client: a BOOKMARK first, then each new event of the workload asked
// for, with its type and cluster, and nothing of another workload.
func TestFollowEvents(t *testing.T) {
	fed := fedtest.StartFederation(t, 15*time.Second)
	viewer := fed.IssueClient(t, "watcher", pki.RoleViewer)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	errDone := errors.New("done")
	var got []client.WatchItem
	err := viewer.Watch(ctx, "events", client.WatchOptions{Workload: "w"}, func(it client.WatchItem) error {
		got = append(got, it)
		if it.Type == client.WatchBookmark && len(got) == 1 {
			for _, e := range []fedapi.Event{
				{Type: fedapi.EventPlaced, Cluster: "a", Workload: "other", Message: "not this one"},
				{Type: fedapi.EventPlaced, Cluster: "a", Workload: "w", Message: "placed on a"},
			} {
				if err := fed.Store.AddEvent(ctx, e); err != nil {
					return err
				}
			}
		}
		if it.Type == client.WatchPut {
			return errDone
		}
		return nil
	})
	if !errors.Is(err, errDone) {
		t.Fatalf("follow: %v after %d items", err, len(got))
	}
	e := got[len(got)-1].Event
	if got[0].Type != client.WatchBookmark || e.GetWorkload() != "w" || e.GetType() != fedapi.EventPlaced || e.GetMessage() != "placed on a" {
		t.Fatalf("followed %+v, ending with %v; want a BOOKMARK first and w's placement", got, e)
	}
}
