package store_test

import (
	"testing"

	persysv1 "github.com/persys-dev/compute/api/persys/v1"
	"github.com/persys-dev/compute/internal/store"
	"github.com/persys-dev/compute/internal/store/storetest"
	"google.golang.org/protobuf/proto"
)

// TestPlacementStoresNoStatusReadersDeriveIt: a placement without a status
// writes the assignment alone, and every reader (GetStatus, Load, Watch,
// WatchAll, ReadServiceReplicas) sees the SCHEDULED status it implies over
// the older stored one, until a status is written after it.
func TestPlacementStoresNoStatusReadersDeriveIt(t *testing.T) {
	t.Parallel()
	ctx := testCtx(t)
	s, cli := storetest.New(t)
	const name = "web-0123abcd-0"
	if _, err := s.CreateService(ctx, &persysv1.Service{Name: "web", Uid: "s1"}); err != nil {
		t.Fatal(err)
	}
	wrev, err := s.CreateWorkload(ctx, workload(name, "u1"))
	if err != nil {
		t.Fatal(err)
	}
	pending := &persysv1.WorkloadStatus{Name: name, Uid: "u1", State: persysv1.ActualState_ACTUAL_STATE_PENDING, Message: "waiting"}
	srev, err := s.PutStatusRev(ctx, pending)
	if err != nil {
		t.Fatal(err)
	}
	watch := s.Watch(ctx, srev)
	batches := s.WatchAll(ctx, srev)

	a := assignment(name, "u1", "n1")
	a.Decision = &persysv1.PlacementDecision{NodeId: "n1", FeasibleNodes: 2, TotalNodes: 3}
	res := s.CommitPlacements(ctx, []store.PlacementWrite{{Assignment: a, WorkloadRev: wrev}})
	if res[0].Err != nil {
		t.Fatal(res[0].Err)
	}
	arev := res[0].Rev
	raw, err := cli.Get(ctx, "/persys/status/"+name)
	if err != nil || len(raw.Kvs) != 1 || raw.Kvs[0].ModRevision != srev {
		t.Fatalf("stored status: %v, %v; want the pending one at %d, untouched", raw, err, srev)
	}

	check := func(where string, st *persysv1.WorkloadStatus) {
		t.Helper()
		if st.GetState() != persysv1.ActualState_ACTUAL_STATE_SCHEDULED || st.GetNodeId() != "n1" || st.GetUid() != "u1" ||
			st.GetUpdatedAt() == nil || st.GetMessage() != "placed on n1 (2 of 3 nodes feasible)" {
			t.Errorf("%s: status %v, want SCHEDULED on n1 derived from the assignment", where, st)
		}
	}
	st, rev, err := s.GetStatus(ctx, name)
	if err != nil || rev != arev {
		t.Fatalf("GetStatus: rev %d, %v; want %d", rev, err, arev)
	}
	check("GetStatus", st)
	snap, err := s.Load(ctx)
	if err != nil {
		t.Fatal(err)
	}
	check("Load", snap.Statuses[name])
	r, err := s.ReadServiceReplicas(ctx, "web")
	if err != nil {
		t.Fatal(err)
	}
	check("ReadServiceReplicas", r.Statuses[name])

	// The watch sends the assignment, then the status it implies, at its revision.
	for i, want := range []store.Kind{store.KindAssignment, store.KindStatus} {
		c := <-watch
		if c.Kind != want || c.Key != name || c.ModRevision != arev {
			t.Fatalf("watch change %d: %v %q at %d, want %v at %d", i, c.Kind, c.Key, c.ModRevision, want, arev)
		}
		if want == store.KindStatus {
			check("Watch", c.Status)
		}
	}
	b := <-batches
	if b.Revision != arev || len(b.Changes) != 2 || b.Changes[1].Kind != store.KindStatus {
		t.Fatalf("WatchAll batch at %d with %d changes, want the assignment and its status at %d", b.Revision, len(b.Changes), arev)
	}
	check("WatchAll", b.Changes[1].Status)

	// A status written after the assignment is the status again.
	running := &persysv1.WorkloadStatus{Name: name, Uid: "u1", State: persysv1.ActualState_ACTUAL_STATE_RUNNING, NodeId: "n1"}
	if _, err := s.PutStatusRev(ctx, running); err != nil {
		t.Fatal(err)
	}
	if st, _, err := s.GetStatus(ctx, name); err != nil || !proto.Equal(st, running) {
		t.Errorf("GetStatus after the node's report: %v, %v", st, err)
	}
	if snap, err := s.Load(ctx); err != nil || !proto.Equal(snap.Statuses[name], running) {
		t.Errorf("Load after the node's report: %v, %v", snap.Statuses[name], err)
	}
	if r, err := s.ReadServiceReplicas(ctx, "web"); err != nil || !proto.Equal(r.Statuses[name], running) {
		t.Errorf("ReadServiceReplicas after the node's report: %v, %v", r.Statuses[name], err)
	}
	c := <-watch
	if c.Kind != store.KindStatus || !proto.Equal(c.Status, running) {
		t.Errorf("watch after the node's report: %v %v", c.Kind, c.Status)
	}

	// A status committed with the assignment is read as written, once.
	explicit := &persysv1.WorkloadStatus{Name: name, Uid: "u1", State: persysv1.ActualState_ACTUAL_STATE_RUNNING, NodeId: "n2", Message: "kept"}
	mrev, err := s.CommitPlacementRev(ctx, assignment(name, "u1", "n2"), explicit, wrev, arev)
	if err != nil {
		t.Fatal(err)
	}
	if st, _, err := s.GetStatus(ctx, name); err != nil || !proto.Equal(st, explicit) {
		t.Errorf("GetStatus of an explicit status: %v, %v", st, err)
	}
	var statuses int
	for c := range watch {
		if c.Kind == store.KindStatus {
			statuses++
			if !proto.Equal(c.Status, explicit) {
				t.Errorf("watch of an explicit status: %v", c.Status)
			}
		}
		if c.ModRevision == mrev && c.Kind == store.KindStatus {
			break
		}
	}
	if statuses != 1 {
		t.Errorf("watch sent %d statuses for the explicit placement, want 1", statuses)
	}
}

// TestScheduledStatusMessage: the derived status says how the node was
// chosen, in sampled clusters too.
func TestScheduledStatusMessage(t *testing.T) {
	for _, c := range []struct {
		d    *persysv1.PlacementDecision
		want string
	}{
		{nil, "placed on n1"},
		{&persysv1.PlacementDecision{FeasibleNodes: 1, TotalNodes: 3}, "placed on n1 (1 of 3 nodes feasible)"},
		{&persysv1.PlacementDecision{FeasibleNodes: 40, TotalNodes: 5000}, "placed on n1 (40 of 5000 nodes feasible)"},
		{&persysv1.PlacementDecision{FeasibleNodes: 256, TotalNodes: 5000}, "placed on n1 (best of 256 feasible nodes sampled from 5000)"},
	} {
		a := &persysv1.Assignment{Name: "w", Uid: "u", NodeId: "n1", Revision: 4, Decision: c.d}
		st := store.ScheduledStatus(a)
		if st.GetMessage() != c.want || st.GetRevision() != 4 || st.GetState() != persysv1.ActualState_ACTUAL_STATE_SCHEDULED {
			t.Errorf("decision %v: %v, want message %q", c.d, st, c.want)
		}
	}
}
