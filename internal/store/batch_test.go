package store_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"

	persysv1 "github.com/persys-dev/compute/api/persys/v1"
	"github.com/persys-dev/compute/internal/store"
	"github.com/persys-dev/compute/internal/store/storetest"
)

func TestCommitPlacementsGroupsAndIsolatesConflicts(t *testing.T) {
	t.Parallel()
	ctx := testCtx(t)
	s, _ := storetest.New(t)

	const n = 150
	revs := make([]int64, n)
	for i := range n {
		rev, err := s.CreateWorkload(ctx, workload(fmt.Sprintf("w%03d", i), fmt.Sprintf("u%d", i)))
		if err != nil {
			t.Fatalf("create: %v", err)
		}
		revs[i] = rev
	}
	// w000 is already placed by someone else: its write must conflict.
	if _, err := s.CommitPlacementRev(ctx, assignment("w000", "u0", "other"), nil, revs[0], 0); err != nil {
		t.Fatalf("first placement: %v", err)
	}

	ws := make([]store.PlacementWrite, 0, n+3)
	for i := range n {
		ws = append(ws, store.PlacementWrite{Assignment: assignment(fmt.Sprintf("w%03d", i), fmt.Sprintf("u%d", i), "n1"), WorkloadRev: revs[i]})
	}
	ws[7].WorkloadRev = revs[7] - 1 // read an older workload revision
	ws = append(ws,
		store.PlacementWrite{Assignment: assignment("w010", "u10", "n2"), WorkloadRev: revs[10]}, // w010 twice: the second loses
		store.PlacementWrite{Assignment: nil, WorkloadRev: 1},                                    // invalid
		store.PlacementWrite{Assignment: assignment("w011", "u11", "n1"), WorkloadRev: 0},        // invalid revision
	)
	res := s.CommitPlacements(ctx, ws)
	if len(res) != len(ws) {
		t.Fatalf("%d results for %d writes", len(res), len(ws))
	}
	distinct := map[int64]bool{}
	for i, r := range res {
		switch i {
		case 0, 7, n:
			if !errors.Is(r.Err, store.ErrConflict) {
				t.Errorf("write %d: err %v, want a conflict", i, r.Err)
			}
		case n + 1, n + 2:
			if !errors.Is(r.Err, store.ErrInvalid) {
				t.Errorf("write %d: err %v, want invalid", i, r.Err)
			}
		default:
			if r.Err != nil || r.Rev <= 0 {
				t.Errorf("write %d: rev %d err %v", i, r.Rev, r.Err)
				continue
			}
			distinct[r.Rev] = true
			a, arev, err := s.GetAssignment(ctx, ws[i].Assignment.GetName())
			if err != nil || arev != r.Rev || a.GetNodeId() != ws[i].Assignment.GetNodeId() {
				t.Errorf("write %d: stored %v at %d (%v), want node %s at %d", i, a, arev, err, ws[i].Assignment.GetNodeId(), r.Rev)
			}
			st, _, err := s.GetStatus(ctx, ws[i].Assignment.GetName())
			if err != nil || st.GetState() != persysv1.ActualState_ACTUAL_STATE_SCHEDULED {
				t.Errorf("write %d: status %v, %v", i, st, err)
			}
		}
	}
	// Groups of 64: the first and the last held conflicts and were
	// committed write by write; the middle one, free of conflicts, at once.
	if res[64].Rev != res[127].Rev {
		t.Errorf("conflict-free group not committed at once: revisions %d..%d", res[64].Rev, res[127].Rev)
	}
	if len(distinct) > n-64+1 {
		t.Errorf("%d commits for %d writes", len(distinct), n)
	}
	if a, _, err := s.GetAssignment(ctx, "w000"); err != nil || a.GetNodeId() != "other" {
		t.Errorf("w000 overwritten: %v, %v", a, err)
	}
}

func TestCommitPlacementsSplitsLargeValues(t *testing.T) {
	t.Parallel()
	ctx := testCtx(t)
	s, _ := storetest.New(t)

	// Each assignment carries a ~60 KB decision record: 40 of them exceed
	// one request's size limit and must be split into several commits.
	var rejections []*persysv1.NodeRejection
	for i := range 600 {
		rejections = append(rejections, &persysv1.NodeRejection{NodeId: fmt.Sprintf("node-%04d", i),
			Reason: persysv1.RejectReason_REJECT_REASON_INSUFFICIENT_CPU, Detail: strings.Repeat("x", 80)})
	}
	var ws []store.PlacementWrite
	for i := range 40 {
		name := fmt.Sprintf("big%02d", i)
		rev, err := s.CreateWorkload(ctx, workload(name, "u"))
		if err != nil {
			t.Fatalf("create: %v", err)
		}
		a := assignment(name, "u", "n1")
		a.Decision = &persysv1.PlacementDecision{NodeId: "n1", Rejections: rejections}
		ws = append(ws, store.PlacementWrite{Assignment: a, WorkloadRev: rev})
	}
	distinct := map[int64]bool{}
	for i, r := range s.CommitPlacements(ctx, ws) {
		if r.Err != nil {
			t.Fatalf("write %d: %v", i, r.Err)
		}
		distinct[r.Rev] = true
	}
	if len(distinct) < 2 {
		t.Errorf("%d commits for %d large writes, want a split", len(distinct), len(ws))
	}
}

func TestPutStatuses(t *testing.T) {
	t.Parallel()
	ctx := testCtx(t)
	s, _ := storetest.New(t)

	const n = 200
	var sts []*persysv1.WorkloadStatus
	for i := range n {
		name := fmt.Sprintf("s%03d", i)
		if _, err := s.CreateWorkload(ctx, workload(name, "u")); err != nil {
			t.Fatalf("create: %v", err)
		}
		sts = append(sts, &persysv1.WorkloadStatus{Name: name, Uid: "u", State: persysv1.ActualState_ACTUAL_STATE_RUNNING})
	}
	sts = append(sts,
		&persysv1.WorkloadStatus{Name: "missing", Uid: "u", State: persysv1.ActualState_ACTUAL_STATE_RUNNING},           // n: no workload
		&persysv1.WorkloadStatus{Name: "s001", Uid: "other", State: persysv1.ActualState_ACTUAL_STATE_RUNNING},          // n+1: wrong uid
		&persysv1.WorkloadStatus{Name: "s002", Uid: "", State: persysv1.ActualState_ACTUAL_STATE_RUNNING},               // n+2: invalid
		&persysv1.WorkloadStatus{Name: "s003", Uid: "u", State: persysv1.ActualState_ACTUAL_STATE_STOPPED, ExitCode: 3}, // n+3: second write wins
	)
	res := s.PutStatuses(ctx, sts)
	distinct := map[int64]bool{}
	for i, r := range res {
		switch i {
		case n, n + 1:
			if !errors.Is(r.Err, store.ErrNotFound) {
				t.Errorf("status %d: err %v, want not found", i, r.Err)
			}
		case n + 2:
			if !errors.Is(r.Err, store.ErrInvalid) {
				t.Errorf("status %d: err %v, want invalid", i, r.Err)
			}
		default:
			if r.Err != nil || r.Rev <= 0 {
				t.Errorf("status %d: rev %d err %v", i, r.Rev, r.Err)
			}
			distinct[r.Rev] = true
		}
	}
	if len(distinct) > n/10 {
		t.Errorf("%d commits for %d statuses", len(distinct), n)
	}
	if res[n+3].Rev <= res[3].Rev {
		t.Errorf("second write of s003 at %d, not after the first at %d", res[n+3].Rev, res[3].Rev)
	}
	st, rev, err := s.GetStatus(ctx, "s003")
	if err != nil || st.GetExitCode() != 3 || rev != res[n+3].Rev {
		t.Errorf("s003: %v at %d, %v", st, rev, err)
	}
	if _, _, err := s.GetStatus(ctx, "missing"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("status of a missing workload written: %v", err)
	}
	if st, _, err := s.GetStatus(ctx, "s001"); err != nil || st.GetUid() != "u" {
		t.Errorf("s001 status: %v, %v", st, err)
	}
}

// PutStatusWrites with the workloads' revisions writes in one commit while
// they hold, and falls back to reading the workload when one changed: a
// spec update still lets the status through, a re-created workload (other
// uid) or a deleted one does not.
func TestPutStatusWritesAtWorkloadRevisions(t *testing.T) {
	t.Parallel()
	ctx := testCtx(t)
	s, _ := storetest.New(t)

	const n = 50
	var ws []store.StatusWrite
	for i := range n {
		name := fmt.Sprintf("r%03d", i)
		rev, err := s.CreateWorkload(ctx, workload(name, "u"))
		if err != nil {
			t.Fatalf("create: %v", err)
		}
		ws = append(ws, store.StatusWrite{Status: &persysv1.WorkloadStatus{Name: name, Uid: "u",
			State: persysv1.ActualState_ACTUAL_STATE_RUNNING}, WorkloadRev: rev})
	}
	distinct := map[int64]bool{}
	for i, r := range s.PutStatusWrites(ctx, ws) {
		if r.Err != nil || r.Rev <= 0 {
			t.Fatalf("status %d: rev %d err %v", i, r.Rev, r.Err)
		}
		distinct[r.Rev] = true
	}
	if len(distinct) != 1 {
		t.Errorf("%d commits for %d statuses at their workloads' revisions, want 1", len(distinct), n)
	}

	// r000: spec updated since (same uid); r001: re-created with another
	// uid; r002: deleted; r003: unchanged.
	w0 := workload("r000", "u")
	w0.Labels = map[string]string{"changed": "yes"}
	if _, err := s.UpdateWorkload(ctx, w0, ws[0].WorkloadRev); err != nil {
		t.Fatalf("update r000: %v", err)
	}
	if err := s.DeleteWorkloadKeys(ctx, "r001", ws[1].WorkloadRev); err != nil {
		t.Fatalf("delete r001: %v", err)
	}
	if _, err := s.CreateWorkload(ctx, workload("r001", "u2")); err != nil {
		t.Fatalf("re-create r001: %v", err)
	}
	if err := s.DeleteWorkloadKeys(ctx, "r002", ws[2].WorkloadRev); err != nil {
		t.Fatalf("delete r002: %v", err)
	}
	again := make([]store.StatusWrite, 4)
	for i := range again {
		again[i] = ws[i]
		again[i].Status = &persysv1.WorkloadStatus{Name: ws[i].Status.GetName(), Uid: "u",
			State: persysv1.ActualState_ACTUAL_STATE_STOPPED, ExitCode: 7}
	}
	res := s.PutStatusWrites(ctx, again)
	if res[0].Err != nil || res[3].Err != nil {
		t.Errorf("r000 (spec updated): %v; r003 (unchanged): %v", res[0].Err, res[3].Err)
	}
	for _, i := range []int{1, 2} {
		if !errors.Is(res[i].Err, store.ErrNotFound) {
			t.Errorf("%s: err %v, want not found", again[i].Status.GetName(), res[i].Err)
		}
	}
	for _, name := range []string{"r000", "r003"} {
		if st, _, err := s.GetStatus(ctx, name); err != nil || st.GetExitCode() != 7 {
			t.Errorf("%s status: %v, %v", name, st, err)
		}
	}
	if st, _, err := s.GetStatus(ctx, "r001"); err == nil && st.GetUid() != "u2" {
		t.Errorf("r001 (re-created as u2) got the old incarnation's status: %v", st)
	}
}

// BenchmarkPutStatusWrites writes batches of 128 statuses: "Read" without
// the workloads' revisions (a read of the workloads, then the write, as
// PutStatuses always did), "AtRev" with them (one compared write). One op
// is one batch; ns/status is per status. The embedded server runs in this process, so allocations
// include the server's.
func BenchmarkPutStatusWrites(b *testing.B) {
	ctx := context.Background()
	s, _ := storetest.New(b)
	const batch = 128
	ws := make([]store.StatusWrite, batch)
	for i := range ws {
		name := fmt.Sprintf("b%03d", i)
		rev, err := s.CreateWorkload(ctx, workload(name, "u"))
		if err != nil {
			b.Fatal(err)
		}
		ws[i] = store.StatusWrite{Status: &persysv1.WorkloadStatus{Name: name, Uid: "u", NodeId: "n1",
			State: persysv1.ActualState_ACTUAL_STATE_RUNNING}, WorkloadRev: rev}
	}
	for _, path := range []string{"Read", "AtRev"} {
		b.Run(path, func(b *testing.B) {
			in := slices.Clone(ws)
			if path == "Read" {
				for i := range in {
					in[i].WorkloadRev = 0
				}
			}
			b.ReportAllocs()
			for b.Loop() {
				for _, r := range s.PutStatusWrites(ctx, in) {
					if r.Err != nil {
						b.Fatal(r.Err)
					}
				}
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*batch), "ns/status")
		})
	}
}

// BenchmarkCommitPlacements commits batches of 128 placements (each one
// re-placing its workload, compared on the assignment the one before
// wrote). One op is one batch; ns/placement is per placement. The embedded
// server runs in this process, so allocations include the server's.
func BenchmarkCommitPlacements(b *testing.B) {
	ctx := context.Background()
	s, _ := storetest.New(b)
	const batch = 128
	ws := make([]store.PlacementWrite, batch)
	for i := range ws {
		name := fmt.Sprintf("p%03d", i)
		rev, err := s.CreateWorkload(ctx, workload(name, "u"))
		if err != nil {
			b.Fatal(err)
		}
		a := assignment(name, "u", "n1")
		a.Decision = &persysv1.PlacementDecision{NodeId: "n1", FeasibleNodes: 100, TotalNodes: 100, Strategy: "spread"}
		ws[i] = store.PlacementWrite{Assignment: a, WorkloadRev: rev}
	}
	b.ReportAllocs()
	for b.Loop() {
		for i, r := range s.CommitPlacements(ctx, ws) {
			if r.Err != nil {
				b.Fatal(r.Err)
			}
			ws[i].AssignmentRev = r.Rev
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*batch), "ns/placement")
}
