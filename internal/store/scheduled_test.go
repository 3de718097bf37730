package store_test

import (
	"context"
	"testing"

	persysv1 "github.com/persys-dev/compute/api/persys/v1"
	"github.com/persys-dev/compute/internal/store"
	"github.com/persys-dev/compute/internal/store/storetest"
	"google.golang.org/protobuf/proto"
)

// derivedStatus is a replica placed without a status, with a watch and a
// WatchAll opened before the placement.
type derivedStatus struct {
	s       *store.Store
	ctx     context.Context
	name    string
	wrev    int64
	arev    int64
	watch   <-chan store.Change
	batches <-chan store.Batch
}

const derivedReplica = "web-0123abcd-0"

// TestPlacementStoresNoStatusReadersDeriveIt: a placement without a status
// writes the assignment alone, and every reader (GetStatus, Load, Watch,
// WatchAll, ReadServiceReplicas) sees the SCHEDULED status it implies over
// the older stored one, until a status is written after it.
func TestPlacementStoresNoStatusReadersDeriveIt(t *testing.T) {
	t.Parallel()
	d := placeWithoutStatus(t)
	d.readersDeriveScheduled(t)
	d.watchesInsertScheduled(t)
	d.laterStatusStands(t)
	d.explicitStatusReadOnce(t)
}

// placeWithoutStatus stores a PENDING status, then places the replica
// with none, and checks that the stored status was left alone.
func placeWithoutStatus(t *testing.T) *derivedStatus {
	t.Helper()
	ctx := testCtx(t)
	s, cli := storetest.New(t)
	d := &derivedStatus{s: s, ctx: ctx, name: derivedReplica}
	if _, err := s.CreateService(ctx, &persysv1.Service{Name: "web", Uid: "s1"}); err != nil {
		t.Fatal(err)
	}
	var err error
	if d.wrev, err = s.CreateWorkload(ctx, workload(d.name, "u1")); err != nil {
		t.Fatal(err)
	}
	pending := &persysv1.WorkloadStatus{Name: d.name, Uid: "u1", State: persysv1.ActualState_ACTUAL_STATE_PENDING, Message: "waiting"}
	srev, err := s.PutStatusRev(ctx, pending)
	if err != nil {
		t.Fatal(err)
	}
	d.watch, d.batches = s.Watch(ctx, srev), s.WatchAll(ctx, srev)
	a := assignment(d.name, "u1", "n1")
	a.Decision = &persysv1.PlacementDecision{NodeId: "n1", FeasibleNodes: 2, TotalNodes: 3}
	res := s.CommitPlacements(ctx, []store.PlacementWrite{{Assignment: a, WorkloadRev: d.wrev}})
	if res[0].Err != nil {
		t.Fatal(res[0].Err)
	}
	d.arev = res[0].Rev
	raw, err := cli.Get(ctx, "/persys/status/"+d.name)
	if err != nil || len(raw.Kvs) != 1 || raw.Kvs[0].ModRevision != srev {
		t.Fatalf("stored status: %v, %v; want the pending one at %d, untouched", raw, err, srev)
	}
	return d
}

// checkScheduled fails unless st is the SCHEDULED status on n1 derived
// from the assignment.
func checkScheduled(t *testing.T, where string, st *persysv1.WorkloadStatus) {
	t.Helper()
	if st.GetState() != persysv1.ActualState_ACTUAL_STATE_SCHEDULED || st.GetNodeId() != "n1" || st.GetUid() != "u1" ||
		st.GetUpdatedAt() == nil || st.GetMessage() != "placed on n1 (2 of 3 nodes feasible)" {
		t.Errorf("%s: status %v, want SCHEDULED on n1 derived from the assignment", where, st)
	}
}

func (d *derivedStatus) readersDeriveScheduled(t *testing.T) {
	t.Helper()
	st, rev, err := d.s.GetStatus(d.ctx, d.name)
	if err != nil || rev != d.arev {
		t.Fatalf("GetStatus: rev %d, %v; want %d", rev, err, d.arev)
	}
	checkScheduled(t, "GetStatus", st)
	snap, err := d.s.Load(d.ctx)
	if err != nil {
		t.Fatal(err)
	}
	checkScheduled(t, "Load", snap.Statuses[d.name])
	r, err := d.s.ReadServiceReplicas(d.ctx, "web")
	if err != nil {
		t.Fatal(err)
	}
	checkScheduled(t, "ReadServiceReplicas", r.Statuses[d.name])
}

// watchesInsertScheduled: the watch sends the assignment, then the status
// it implies, at its revision; WatchAll both in one batch.
func (d *derivedStatus) watchesInsertScheduled(t *testing.T) {
	t.Helper()
	for i, want := range []store.Kind{store.KindAssignment, store.KindStatus} {
		c := <-d.watch
		if c.Kind != want || c.Key != d.name || c.ModRevision != d.arev {
			t.Fatalf("watch change %d: %v %q at %d, want %v at %d", i, c.Kind, c.Key, c.ModRevision, want, d.arev)
		}
		if want == store.KindStatus {
			checkScheduled(t, "Watch", c.Status)
		}
	}
	b := <-d.batches
	if b.Revision != d.arev || len(b.Changes) != 2 || b.Changes[1].Kind != store.KindStatus {
		t.Fatalf("WatchAll batch at %d with %d changes, want the assignment and its status at %d", b.Revision, len(b.Changes), d.arev)
	}
	checkScheduled(t, "WatchAll", b.Changes[1].Status)
}

// laterStatusStands: a status written after the assignment is the status
// again, for every reader.
func (d *derivedStatus) laterStatusStands(t *testing.T) {
	t.Helper()
	running := &persysv1.WorkloadStatus{Name: d.name, Uid: "u1", State: persysv1.ActualState_ACTUAL_STATE_RUNNING, NodeId: "n1"}
	if _, err := d.s.PutStatusRev(d.ctx, running); err != nil {
		t.Fatal(err)
	}
	if st, _, err := d.s.GetStatus(d.ctx, d.name); err != nil || !proto.Equal(st, running) {
		t.Errorf("GetStatus after the node's report: %v, %v", st, err)
	}
	if snap, err := d.s.Load(d.ctx); err != nil || !proto.Equal(snap.Statuses[d.name], running) {
		t.Errorf("Load after the node's report: %v, %v", snap.Statuses[d.name], err)
	}
	if r, err := d.s.ReadServiceReplicas(d.ctx, "web"); err != nil || !proto.Equal(r.Statuses[d.name], running) {
		t.Errorf("ReadServiceReplicas after the node's report: %v, %v", r.Statuses[d.name], err)
	}
	c := <-d.watch
	if c.Kind != store.KindStatus || !proto.Equal(c.Status, running) {
		t.Errorf("watch after the node's report: %v %v", c.Kind, c.Status)
	}
}

// explicitStatusReadOnce: a status committed with the assignment is read
// as written, and the watch sends it once.
func (d *derivedStatus) explicitStatusReadOnce(t *testing.T) {
	t.Helper()
	explicit := &persysv1.WorkloadStatus{Name: d.name, Uid: "u1", State: persysv1.ActualState_ACTUAL_STATE_RUNNING, NodeId: "n2", Message: "kept"}
	mrev, err := d.s.CommitPlacementRev(d.ctx, assignment(d.name, "u1", "n2"), explicit, d.wrev, d.arev)
	if err != nil {
		t.Fatal(err)
	}
	if st, _, err := d.s.GetStatus(d.ctx, d.name); err != nil || !proto.Equal(st, explicit) {
		t.Errorf("GetStatus of an explicit status: %v, %v", st, err)
	}
	var statuses int
	for c := range d.watch {
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
