package store_test

import (
	"context"
	"fmt"
	"math"
	"slices"
	"sync"
	"testing"
	"time"

	persysv1 "github.com/persys-dev/compute/api/persys/v1"
	"github.com/persys-dev/compute/internal/store"
	"github.com/persys-dev/compute/internal/store/storetest"
	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/protobuf/proto"
)

func TestLoadIsOneRevision(t *testing.T) {
	t.Parallel()
	ctx := testCtx(t)
	s, cli := storetest.New(t)

	// More workloads than one page, written in batches.
	const bulk = 1100
	for i := 0; i < bulk; i += 100 {
		var ops []clientv3.Op
		for j := i; j < i+100; j++ {
			b, err := proto.Marshal(workload(fmt.Sprintf("bulk-%04d", j), "u"))
			if err != nil {
				t.Fatal(err)
			}
			ops = append(ops, clientv3.OpPut(fmt.Sprintf("/persys/workloads/bulk-%04d", j), string(b)))
		}
		if _, err := cli.Txn(ctx).Then(ops...).Commit(); err != nil {
			t.Fatal(err)
		}
	}
	wrev, err := s.CreateWorkload(ctx, workload("pair", "u"))
	if err != nil {
		t.Fatal(err)
	}
	if err := s.CommitPlacement(ctx, assignment("pair", "u", "n0"), nil, wrev, 0); err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{"n0", "n1"} {
		if _, err := s.PutNode(ctx, &persysv1.Node{Id: id}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := s.GrantNodeLease(ctx, "n1", time.Minute); err != nil {
		t.Fatal(err)
	}
	if err := s.AppendEvent(ctx, &persysv1.Event{Type: "Placed"}); err != nil {
		t.Fatal(err)
	}

	// A writer moves the placement back and forth; assignment and status
	// change in one transaction, so every snapshot must see them agree.
	wctx, stop := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Go(func() {
		for i := 1; wctx.Err() == nil; i++ {
			_, arev, err := s.GetAssignment(wctx, "pair")
			if err != nil {
				return
			}
			if err := s.CommitPlacement(wctx, assignment("pair", "u", fmt.Sprint("n", i%2)), nil, wrev, arev); err != nil && wctx.Err() == nil {
				t.Errorf("writer: %v", err)
				return
			}
		}
	})
	for range 5 {
		snap, err := s.Load(ctx)
		if err != nil {
			t.Fatalf("load: %v", err)
		}
		if len(snap.Workloads) != bulk+1 || len(snap.WorkloadRevs) != bulk+1 {
			t.Fatalf("%d workloads", len(snap.Workloads))
		}
		a, st := snap.Assignments["pair"], snap.Statuses["pair"]
		if a.GetNodeId() != st.GetNodeId() {
			t.Fatalf("torn snapshot at %d: assignment on %s, status on %s", snap.Revision, a.GetNodeId(), st.GetNodeId())
		}
		raw, err := cli.Get(ctx, "/persys/assignments/pair", clientv3.WithRev(snap.Revision))
		if err != nil || raw.Kvs[0].ModRevision != snap.AssignmentRevs["pair"] {
			t.Fatalf("assignment rev %d, at snapshot revision it was %v (%v)", snap.AssignmentRevs["pair"], raw, err)
		}
		if snap.WorkloadRevs["pair"] != wrev {
			t.Fatalf("workload rev %d, want %d", snap.WorkloadRevs["pair"], wrev)
		}
		if len(snap.Nodes) != 2 || !snap.AliveNodes["n1"] || snap.AliveNodes["n0"] {
			t.Fatalf("nodes %v alive %v", snap.Nodes, snap.AliveNodes)
		}
	}
	stop()
	wg.Wait()
}

type seen struct {
	Kind    store.Kind
	Key     string
	Deleted bool
}

func TestWatchTypedChanges(t *testing.T) {
	t.Parallel()
	ctx := testCtx(t)
	s, cli := storetest.New(t)

	snap, err := s.Load(ctx)
	if err != nil {
		t.Fatal(err)
	}
	wctx, cancel := context.WithCancel(ctx)
	ch := s.Watch(wctx, snap.Revision)

	wrev, err := s.CreateWorkload(ctx, workload("web", "u1"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.PutNode(ctx, &persysv1.Node{Id: "n1", Address: "a:1"}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.GrantNodeLease(ctx, "n1", time.Second); err != nil {
		t.Fatal(err)
	}
	if err := s.CommitPlacement(ctx, assignment("web", "u1", "n1"), nil, wrev, 0); err != nil {
		t.Fatal(err)
	}
	if err := s.AppendEvent(ctx, &persysv1.Event{Type: "Placed", Workload: "web"}); err != nil {
		t.Fatal(err)
	}
	if _, err := cli.Put(ctx, "/persys/retries/web", "x"); err != nil {
		t.Fatal(err)
	}
	if _, err := cli.Put(ctx, "/persys/workloads/broken", "\xff\xff"); err != nil {
		t.Fatal(err)
	}
	if err := s.DeleteWorkloadKeys(ctx, "web", wrev); err != nil {
		t.Fatal(err)
	}

	var got []seen
	var lastRev int64
	timeout := time.After(15 * time.Second)
	for done := false; !done; {
		select {
		case c, ok := <-ch:
			if !ok {
				t.Fatal("channel closed early")
			}
			if c.ModRevision < lastRev {
				t.Fatalf("revision went back: %d after %d", c.ModRevision, lastRev)
			}
			lastRev = c.ModRevision
			got = append(got, seen{c.Kind, c.Key, c.Deleted})
			done = checkWatchedChange(t, c, wrev)
		case <-timeout:
			t.Fatalf("timed out; got %v", got)
		}
	}
	want := []seen{
		{store.KindWorkload, "web", false},
		{store.KindNode, "n1", false},
		{store.KindNodeLease, "n1", false},
		{store.KindAssignment, "web", false},
		{store.KindStatus, "web", false},
		{store.KindWorkload, "web", true},
		{store.KindStatus, "web", true},
		{store.KindAssignment, "web", true},
		{store.KindNodeLease, "n1", true},
	}
	// Within one transaction the order of events is etcd's; compare sorted
	// runs of equal revisions by sorting on kind inside known groups.
	norm := func(v []seen) []seen {
		out := slices.Clone(v)
		slices.SortStableFunc(out[3:5], func(a, b seen) int { return int(a.Kind) - int(b.Kind) })
		slices.SortStableFunc(out[5:8], func(a, b seen) int { return int(a.Kind) - int(b.Kind) })
		return out
	}
	if len(got) != len(want) || !slices.Equal(norm(got), norm(want)) {
		t.Fatalf("changes\n got %v\nwant %v", got, want)
	}

	cancel()
	for c := range ch {
		if c.Kind == store.KindResync {
			t.Fatalf("resync after cancel: %v", c.Err)
		}
	}
}

// checkWatchedChange checks the payload of one change of
// TestWatchTypedChanges (wrev: the workload's revision) and reports
// whether it is the last one, the node lease's deletion.
func checkWatchedChange(t *testing.T, c store.Change, wrev int64) bool {
	t.Helper()
	switch {
	case c.Kind == store.KindWorkload && !c.Deleted:
		if c.Workload.GetUid() != "u1" || c.ModRevision != wrev {
			t.Errorf("workload change %v rev %d", c.Workload, c.ModRevision)
		}
	case c.Kind == store.KindAssignment && !c.Deleted:
		if c.Assignment.GetNodeId() != "n1" {
			t.Errorf("assignment change %v", c.Assignment)
		}
	case c.Kind == store.KindStatus && !c.Deleted:
		if c.Status.GetState() != persysv1.ActualState_ACTUAL_STATE_SCHEDULED {
			t.Errorf("status change %v", c.Status)
		}
	case c.Kind == store.KindNode && !c.Deleted:
		if c.Node.GetAddress() != "a:1" {
			t.Errorf("node change %v", c.Node)
		}
	case c.Deleted && (c.Workload != nil || c.Status != nil || c.Assignment != nil || c.Node != nil):
		t.Errorf("delete with payload: %+v", c)
	case c.Kind == store.KindNodeLease && c.Deleted:
		return true
	}
	return false
}

func TestWatchResyncOnCompaction(t *testing.T) {
	t.Parallel()
	ctx := testCtx(t)
	s, cli := storetest.New(t)
	var rev int64
	for i := range 5 {
		r, err := s.CreateWorkload(ctx, workload(fmt.Sprint("w", i), "u"))
		if err != nil {
			t.Fatal(err)
		}
		rev = r
	}
	if _, err := cli.Compact(ctx, rev); err != nil {
		t.Fatal(err)
	}
	ch := s.Watch(ctx, 1)
	c, ok := <-ch
	if !ok || c.Kind != store.KindResync || c.Err == nil {
		t.Fatalf("first value %+v (open %v), want resync with cause", c, ok)
	}
	if _, ok := <-ch; ok {
		t.Fatal("channel open after resync")
	}
}

func TestWatchResyncOnClientClose(t *testing.T) {
	t.Parallel()
	ctx := testCtx(t)
	e := storetest.Embedded(t)
	cli, err := e.Client()
	if err != nil {
		t.Fatal(err)
	}
	s := store.New(cli, store.Options{})
	now, err := cli.Get(ctx, "any")
	if err != nil {
		t.Fatal(err)
	}
	ch := s.Watch(ctx, now.Header.Revision)
	if _, err := s.CreateWorkload(ctx, workload("w", "u")); err != nil {
		t.Fatal(err)
	}
	if c := <-ch; c.Kind != store.KindWorkload {
		t.Fatalf("first change %+v", c)
	}
	cli.Close()
	var last store.Change
	for c := range ch {
		last = c
	}
	if last.Kind != store.KindResync {
		t.Fatalf("last change %+v, want resync", last)
	}
}

func TestKindString(t *testing.T) {
	t.Parallel()
	tests := []struct {
		kind store.Kind
		want string
	}{
		{store.KindWorkload, "workload"},
		{store.KindStatus, "status"},
		{store.KindAssignment, "assignment"},
		{store.KindNode, "node"},
		{store.KindNodeLease, "node-lease"},
		{store.KindResync, "resync"},
		{store.Kind(99), "unknown"},
	}
	for _, tc := range tests {
		t.Run(tc.want, func(t *testing.T) {
			if got := tc.kind.String(); got != tc.want {
				t.Fatalf("got %q", got)
			}
		})
	}
}

// WatchSkipping drops the puts the watcher holds (without the status an
// assignment implies), asks only about puts of workloads, statuses and
// assignments, and still delivers everything else, deletes included.
func TestWatchSkipping(t *testing.T) {
	t.Parallel()
	ctx := testCtx(t)
	s, _ := storetest.New(t)

	snap, err := s.Load(ctx)
	if err != nil {
		t.Fatal(err)
	}
	// The watcher holds "mine"'s spec and assignment (as if it recorded
	// its own writes before their echoes came), not its status, and
	// nothing of "theirs".
	var mu sync.Mutex
	held := map[string]int64{store.KindWorkload.String(): math.MaxInt64, store.KindAssignment.String(): math.MaxInt64}
	var asked []seen
	known := func(kind store.Kind, key string, rev int64) bool {
		mu.Lock()
		defer mu.Unlock()
		asked = append(asked, seen{kind, key, false})
		return key == "mine" && rev <= held[kind.String()]
	}
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	ch := s.WatchSkipping(wctx, snap.Revision, known)

	mrev, err := s.CreateWorkload(ctx, workload("mine", "u1"))
	if err != nil {
		t.Fatal(err)
	}
	trev, err := s.CreateWorkload(ctx, workload("theirs", "u2"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.CommitPlacementRev(ctx, assignment("mine", "u1", "n1"), nil, mrev, 0); err != nil {
		t.Fatal(err)
	}
	if _, err := s.CommitPlacementRev(ctx, assignment("theirs", "u2", "n1"), nil, trev, 0); err != nil {
		t.Fatal(err)
	}
	st := &persysv1.WorkloadStatus{Name: "mine", Uid: "u1", State: persysv1.ActualState_ACTUAL_STATE_RUNNING, NodeId: "n1", Revision: 1}
	if _, err := s.PutStatusRev(ctx, st); err != nil { // not held: delivered
		t.Fatal(err)
	}
	if _, err := s.PutNode(ctx, &persysv1.Node{Id: "n1", Address: "a:1"}); err != nil {
		t.Fatal(err)
	}
	if err := s.DeleteWorkloadKeys(ctx, "mine", mrev); err != nil {
		t.Fatal(err)
	}

	var got []seen
	timeout := time.After(15 * time.Second)
	for len(got) < 8 {
		select {
		case c := <-ch:
			if c.Kind == store.KindResync {
				t.Fatalf("resync: %v", c.Err)
			}
			if c.Key == "mine" && !c.Deleted && c.Kind == store.KindStatus && c.Status.GetState() != persysv1.ActualState_ACTUAL_STATE_RUNNING {
				t.Fatalf("the skipped assignment's status was derived: %v", c.Status)
			}
			got = append(got, seen{c.Kind, c.Key, c.Deleted})
		case <-timeout:
			t.Fatalf("timed out; got %v", got)
		}
	}
	want := []seen{
		{store.KindWorkload, "theirs", false},
		{store.KindAssignment, "theirs", false},
		{store.KindStatus, "theirs", false}, // derived from its assignment
		{store.KindStatus, "mine", false},
		{store.KindNode, "n1", false},
		{store.KindWorkload, "mine", true},
		{store.KindStatus, "mine", true},
		{store.KindAssignment, "mine", true},
	}
	sortRun := func(v []seen) []seen {
		out := slices.Clone(v)
		slices.SortStableFunc(out[1:3], func(a, b seen) int { return int(a.Kind) - int(b.Kind) })
		slices.SortStableFunc(out[5:8], func(a, b seen) int { return int(a.Kind) - int(b.Kind) })
		return out
	}
	if !slices.Equal(sortRun(got), sortRun(want)) {
		t.Fatalf("changes\n got %v\nwant %v", got, want)
	}
	mu.Lock()
	defer mu.Unlock()
	for _, a := range asked {
		if a.Kind != store.KindWorkload && a.Kind != store.KindStatus && a.Kind != store.KindAssignment {
			t.Fatalf("asked about a %v", a.Kind)
		}
	}
	if len(asked) != 5 {
		t.Fatalf("asked about %v, want the five puts of workloads, assignments and statuses", asked)
	}
}
