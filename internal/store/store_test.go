package store_test

import (
	"errors"
	"strings"
	"sync"
	"testing"

	persysv1 "github.com/persys-dev/compute/api/persys/v1"
	"github.com/persys-dev/compute/internal/store"
	"github.com/persys-dev/compute/internal/store/storetest"
	"google.golang.org/protobuf/proto"
)

func workload(name, uid string) *persysv1.Workload {
	return &persysv1.Workload{
		Name:     name,
		Uid:      uid,
		Revision: 1,
		Spec: &persysv1.WorkloadSpec{
			Type:         persysv1.WorkloadType_WORKLOAD_TYPE_CONTAINER,
			DesiredState: persysv1.DesiredState_DESIRED_STATE_RUNNING,
			Container:    &persysv1.ContainerSpec{Image: "busybox"},
		},
	}
}

func assignment(name, uid, node string) *persysv1.Assignment {
	return &persysv1.Assignment{Name: name, Uid: uid, NodeId: node, Revision: 1}
}

func TestWorkloadCRUD(t *testing.T) {
	t.Parallel()
	ctx := testCtx(t)
	s, cli := storetest.New(t)

	if _, _, err := s.GetWorkload(ctx, "web"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("get missing: %v", err)
	}
	w := workload("web", "u1")
	rev, err := s.CreateWorkload(ctx, w)
	if err != nil {
		t.Fatalf("create: %v", err)
	}
	if _, err := s.CreateWorkload(ctx, workload("web", "u2")); !errors.Is(err, store.ErrExists) {
		t.Fatalf("second create: %v", err)
	}
	got, gotRev, err := s.GetWorkload(ctx, "web")
	if err != nil || gotRev != rev || !proto.Equal(got, w) {
		t.Fatalf("get: %v rev %d (want %d), %v", got, gotRev, rev, err)
	}
	// Keys land under the default prefix.
	if resp, err := cli.Get(ctx, "/persys/workloads/web"); err != nil || len(resp.Kvs) != 1 {
		t.Fatalf("raw key: %v, %v", resp, err)
	}

	w2 := proto.CloneOf(w)
	w2.Revision = 2
	rev2, err := s.UpdateWorkload(ctx, w2, rev)
	if err != nil || rev2 <= rev {
		t.Fatalf("update: rev %d, %v", rev2, err)
	}
	if _, err := s.UpdateWorkload(ctx, w2, rev); !errors.Is(err, store.ErrConflict) {
		t.Fatalf("stale update: %v", err)
	}
	if _, err := s.UpdateWorkload(ctx, workload("nope", "u"), rev); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("update missing: %v", err)
	}
	if err := s.DeleteWorkloadKeys(ctx, "web", rev); !errors.Is(err, store.ErrConflict) {
		t.Fatalf("stale delete: %v", err)
	}
	if err := s.DeleteWorkloadKeys(ctx, "web", rev2); err != nil {
		t.Fatalf("delete: %v", err)
	}
	if err := s.DeleteWorkloadKeys(ctx, "web", rev2); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("delete again: %v", err)
	}
	// Re-creating after delete works.
	if _, err := s.CreateWorkload(ctx, workload("web", "u3")); err != nil {
		t.Fatalf("re-create: %v", err)
	}
}

func TestValidation(t *testing.T) {
	t.Parallel()
	ctx := testCtx(t)
	s, _ := storetest.New(t)
	tests := []struct {
		name  string
		call  func() error
		field string
	}{
		{"create nil", func() error { _, err := s.CreateWorkload(ctx, nil); return err }, "workload"},
		{"create empty name", func() error { _, err := s.CreateWorkload(ctx, workload("", "u")); return err }, "workload name"},
		{"create slash", func() error { _, err := s.CreateWorkload(ctx, workload("a/b", "u")); return err }, "workload name"},
		{"create space", func() error { _, err := s.CreateWorkload(ctx, workload("a b", "u")); return err }, "workload name"},
		{"create dotdot", func() error { _, err := s.CreateWorkload(ctx, workload("..", "u")); return err }, "workload name"},
		{"create long", func() error { _, err := s.CreateWorkload(ctx, workload(strings.Repeat("a", 254), "u")); return err }, "workload name"},
		{"create no uid", func() error { _, err := s.CreateWorkload(ctx, workload("a", "")); return err }, "uid"},
		{"update zero rev", func() error { _, err := s.UpdateWorkload(ctx, workload("a", "u"), 0); return err }, "expectRev"},
		{"delete zero rev", func() error { return s.DeleteWorkloadKeys(ctx, "a", 0) }, "expectRev"},
		{"get bad name", func() error { _, _, err := s.GetWorkload(ctx, "a/b"); return err }, "workload name"},
		{"status no uid", func() error { return s.PutStatus(ctx, &persysv1.WorkloadStatus{Name: "a"}) }, "uid"},
		{"commit nil", func() error { return s.CommitPlacement(ctx, nil, nil, 1, 0) }, "assignment"},
		{"commit no node", func() error { return s.CommitPlacement(ctx, assignment("a", "u", ""), nil, 1, 0) }, "node_id"},
		{"commit zero workload rev", func() error { return s.CommitPlacement(ctx, assignment("a", "u", "n"), nil, 0, 0) }, "workloadRev"},
		{"commit status other uid", func() error {
			return s.CommitPlacement(ctx, assignment("a", "u", "n"), &persysv1.WorkloadStatus{Name: "a", Uid: "x"}, 1, 0)
		}, "uid"},
		{"delete assignment zero rev", func() error { return s.DeleteAssignment(ctx, "a", 0) }, "expectRev"},
		{"node nil", func() error { _, err := s.PutNode(ctx, nil); return err }, "node"},
		{"node bad id", func() error { _, err := s.PutNode(ctx, &persysv1.Node{Id: "x/lease"}); return err }, "node id"},
		{"lease zero ttl", func() error { _, err := s.GrantNodeLease(ctx, "n", 0); return err }, "ttl"},
		{"keepalive zero", func() error { return s.KeepAliveNode(ctx, 0) }, "lease id"},
		{"event nil", func() error { return s.AppendEvent(ctx, nil) }, "event"},
		{"event no type", func() error { return s.AppendEvent(ctx, &persysv1.Event{}) }, "event type"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.call()
			if !errors.Is(err, store.ErrInvalid) || !strings.Contains(err.Error(), tc.field) {
				t.Fatalf("error %v: want ErrInvalid naming %q", err, tc.field)
			}
		})
	}
}

func TestStatus(t *testing.T) {
	t.Parallel()
	ctx := testCtx(t)
	s, _ := storetest.New(t)

	st := &persysv1.WorkloadStatus{Name: "web", Uid: "u1", State: persysv1.ActualState_ACTUAL_STATE_RUNNING, NodeId: "n1"}
	if err := s.PutStatus(ctx, st); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("status without workload: %v", err)
	}
	rev, err := s.CreateWorkload(ctx, workload("web", "u1"))
	if err != nil {
		t.Fatal(err)
	}
	if err := s.PutStatus(ctx, st); err != nil {
		t.Fatalf("put status: %v", err)
	}
	got, _, err := s.GetStatus(ctx, "web")
	if err != nil || !proto.Equal(got, st) {
		t.Fatalf("get status: %v, %v", got, err)
	}
	// A spec update does not disturb status writes.
	if _, err := s.UpdateWorkload(ctx, workload("web", "u1"), rev); err != nil {
		t.Fatal(err)
	}
	if err := s.PutStatus(ctx, st); err != nil {
		t.Fatalf("put status after update: %v", err)
	}
	// A status of another incarnation is refused.
	if err := s.PutStatus(ctx, &persysv1.WorkloadStatus{Name: "web", Uid: "old"}); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("status with old uid: %v", err)
	}
	_, rev, err = s.GetWorkload(ctx, "web")
	if err != nil {
		t.Fatal(err)
	}
	if err := s.DeleteWorkloadKeys(ctx, "web", rev); err != nil {
		t.Fatal(err)
	}
	if err := s.PutStatus(ctx, st); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("status after delete: %v", err)
	}
	if _, _, err := s.GetStatus(ctx, "web"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("status key after refused put: %v", err)
	}
}

func TestCommitPlacementAndDelete(t *testing.T) {
	t.Parallel()
	ctx := testCtx(t)
	s, cli := storetest.New(t)

	wrev, err := s.CreateWorkload(ctx, workload("web", "u1"))
	if err != nil {
		t.Fatal(err)
	}
	if err := s.CommitPlacement(ctx, assignment("web", "u1", "n1"), nil, wrev+100, 0); !errors.Is(err, store.ErrConflict) {
		t.Fatalf("wrong workload rev: %v", err)
	}
	if err := s.CommitPlacement(ctx, assignment("web", "u1", "n1"), nil, wrev, 0); err != nil {
		t.Fatalf("commit: %v", err)
	}
	a, arev, err := s.GetAssignment(ctx, "web")
	if err != nil || a.GetNodeId() != "n1" {
		t.Fatalf("assignment: %v, %v", a, err)
	}
	st, _, err := s.GetStatus(ctx, "web")
	if err != nil || st.GetState() != persysv1.ActualState_ACTUAL_STATE_SCHEDULED || st.GetNodeId() != "n1" || st.GetUid() != "u1" || st.GetUpdatedAt() == nil {
		t.Fatalf("derived status: %v, %v", st, err)
	}
	// Placing again with "must not exist" conflicts; with the current rev it moves.
	if err := s.CommitPlacement(ctx, assignment("web", "u1", "n2"), nil, wrev, 0); !errors.Is(err, store.ErrConflict) {
		t.Fatalf("second placement: %v", err)
	}
	explicit := &persysv1.WorkloadStatus{Name: "web", Uid: "u1", State: persysv1.ActualState_ACTUAL_STATE_SCHEDULED, NodeId: "n2", Message: "moved"}
	if err := s.CommitPlacement(ctx, assignment("web", "u1", "n2"), explicit, wrev, arev); err != nil {
		t.Fatalf("move: %v", err)
	}
	if st, _, _ := s.GetStatus(ctx, "web"); !proto.Equal(st, explicit) {
		t.Fatalf("explicit status: %v", st)
	}
	_, arev, err = s.GetAssignment(ctx, "web")
	if err != nil {
		t.Fatal(err)
	}
	if err := s.DeleteAssignment(ctx, "web", arev-1); !errors.Is(err, store.ErrConflict) {
		t.Fatalf("stale assignment delete: %v", err)
	}
	if err := s.DeleteAssignment(ctx, "web", arev); err != nil {
		t.Fatalf("delete assignment: %v", err)
	}
	if err := s.DeleteAssignment(ctx, "web", arev); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("delete assignment again: %v", err)
	}

	// DeleteWorkloadKeys removes all four keys.
	if err := s.CommitPlacement(ctx, assignment("web", "u1", "n1"), nil, wrev, 0); err != nil {
		t.Fatal(err)
	}
	if _, err := cli.Put(ctx, "/persys/retries/web", "x"); err != nil {
		t.Fatal(err)
	}
	if _, err := cli.Put(ctx, "/persys/workloads/web2", "keep"); err != nil {
		t.Fatal(err)
	}
	if err := s.DeleteWorkloadKeys(ctx, "web", wrev); err != nil {
		t.Fatalf("delete keys: %v", err)
	}
	for _, k := range []string{"workloads/web", "status/web", "assignments/web", "retries/web"} {
		resp, err := cli.Get(ctx, "/persys/"+k)
		if err != nil || len(resp.Kvs) != 0 {
			t.Errorf("%s still present: %v, %v", k, resp.Kvs, err)
		}
	}
	if resp, _ := cli.Get(ctx, "/persys/workloads/web2"); len(resp.Kvs) != 1 {
		t.Errorf("neighbour key deleted")
	}
}

func TestCommitPlacementRaceHasOneWinner(t *testing.T) {
	t.Parallel()
	ctx := testCtx(t)
	s, _ := storetest.New(t)

	const workloads, schedulers = 10, 4
	for i := range workloads {
		name := "w" + string(rune('a'+i))
		wrev, err := s.CreateWorkload(ctx, workload(name, "u"))
		if err != nil {
			t.Fatal(err)
		}
		var (
			wg      sync.WaitGroup
			mu      sync.Mutex
			winners []string
		)
		start := make(chan struct{})
		for j := range schedulers {
			node := "n" + string(rune('0'+j))
			wg.Go(func() {
				<-start
				err := s.CommitPlacement(ctx, assignment(name, "u", node), nil, wrev, 0)
				switch {
				case err == nil:
					mu.Lock()
					winners = append(winners, node)
					mu.Unlock()
				case !errors.Is(err, store.ErrConflict):
					t.Errorf("%s on %s: %v", name, node, err)
				}
			})
		}
		close(start)
		wg.Wait()
		if len(winners) != 1 {
			t.Fatalf("%s: winners %v, want exactly one", name, winners)
		}
		a, _, err := s.GetAssignment(ctx, name)
		if err != nil || a.GetNodeId() != winners[0] {
			t.Fatalf("%s: stored %v, winner %s, %v", name, a, winners[0], err)
		}
		st, _, err := s.GetStatus(ctx, name)
		if err != nil || st.GetNodeId() != winners[0] {
			t.Fatalf("%s: status %v, winner %s, %v", name, st, winners[0], err)
		}
	}
}

func TestPrefixOption(t *testing.T) {
	t.Parallel()
	ctx := testCtx(t)
	_, cli := storetest.New(t)
	a := store.New(cli, store.Options{Prefix: "/a/"})
	b := store.New(cli, store.Options{Prefix: "/b"})
	if a.Prefix() != "/a" {
		t.Fatalf("prefix %q", a.Prefix())
	}
	if _, err := a.CreateWorkload(ctx, workload("web", "u")); err != nil {
		t.Fatal(err)
	}
	if _, _, err := b.GetWorkload(ctx, "web"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("prefixes not isolated: %v", err)
	}
	if resp, _ := cli.Get(ctx, "/a/workloads/web"); len(resp.Kvs) != 1 {
		t.Fatal("key not under /a/")
	}
}

func TestRevisionReturningVariants(t *testing.T) {
	t.Parallel()
	ctx := testCtx(t)
	s, _ := storetest.New(t)

	wrev, err := s.CreateWorkload(ctx, workload("web", "u1"))
	if err != nil {
		t.Fatal(err)
	}
	cur, err := s.Revision(ctx)
	if err != nil || cur != wrev {
		t.Fatalf("revision %d after create at %d: %v", cur, wrev, err)
	}
	crev, err := s.CommitPlacementRev(ctx, assignment("web", "u1", "n1"), nil, wrev, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, arev, _ := s.GetAssignment(ctx, "web"); arev != crev {
		t.Fatalf("commit returned %d, assignment at %d", crev, arev)
	}
	// The returned revision is the one to compare against next.
	if _, err := s.CommitPlacementRev(ctx, assignment("web", "u1", "n2"), nil, wrev, crev); err != nil {
		t.Fatalf("second commit with returned rev: %v", err)
	}
	srev, err := s.PutStatusRev(ctx, &persysv1.WorkloadStatus{Name: "web", Uid: "u1", State: persysv1.ActualState_ACTUAL_STATE_RUNNING})
	if err != nil {
		t.Fatal(err)
	}
	if _, got, _ := s.GetStatus(ctx, "web"); got != srev {
		t.Fatalf("put status returned %d, status at %d", srev, got)
	}
}
