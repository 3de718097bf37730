package store_test

import (
	"errors"
	"fmt"
	"testing"

	persysv1 "github.com/persys-dev/compute/api/persys/v1"
	"github.com/persys-dev/compute/internal/store"
	"github.com/persys-dev/compute/internal/store/storetest"
	"google.golang.org/protobuf/proto"
)

func TestCreateWorkloadsMixed(t *testing.T) {
	t.Parallel()
	ctx := testCtx(t)
	s, _ := storetest.New(t)

	if _, err := s.CreateWorkload(ctx, workload("old", "u-old")); err != nil {
		t.Fatal(err)
	}
	ws := []*persysv1.Workload{
		workload("a", "ua"),       // 0: new
		workload("old", "u-x"),    // 1: exists
		workload("b", ""),         // 2: invalid uid
		workload("a", "ua2"),      // 3: duplicate of 0 within the batch
		nil,                       // 4: invalid
		workload("c", "uc"),       // 5: new
		workload("bad/name", "u"), // 6: invalid name
	}
	res := s.CreateWorkloads(ctx, ws)
	if len(res) != len(ws) {
		t.Fatalf("%d results for %d writes", len(res), len(ws))
	}
	for i, r := range res {
		switch i {
		case 1, 3:
			if !errors.Is(r.Err, store.ErrExists) || r.Rev != 0 {
				t.Errorf("write %d: rev %d err %v, want ErrExists", i, r.Rev, r.Err)
			}
		case 2, 4, 6:
			if !errors.Is(r.Err, store.ErrInvalid) || r.Rev != 0 {
				t.Errorf("write %d: rev %d err %v, want ErrInvalid", i, r.Rev, r.Err)
			}
		default:
			if r.Err != nil || r.Rev <= 0 {
				t.Errorf("write %d: rev %d err %v", i, r.Rev, r.Err)
				continue
			}
			got, rev, err := s.GetWorkload(ctx, ws[i].GetName())
			if err != nil || rev != r.Rev || !proto.Equal(got, ws[i]) {
				t.Errorf("write %d: stored %v at %d (%v), want %v at %d", i, got, rev, err, ws[i], r.Rev)
			}
		}
	}
	// The existing workload and the first copy of the duplicate are intact.
	if got, _, err := s.GetWorkload(ctx, "old"); err != nil || got.GetUid() != "u-old" {
		t.Errorf("old overwritten: %v, %v", got, err)
	}
	if got, _, err := s.GetWorkload(ctx, "a"); err != nil || got.GetUid() != "ua" {
		t.Errorf("a overwritten by its duplicate: %v, %v", got, err)
	}
	if _, _, err := s.GetWorkload(ctx, "b"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("invalid workload stored: %v", err)
	}
}

func TestCreateWorkloadsLargeBatch(t *testing.T) {
	t.Parallel()
	ctx := testCtx(t)
	s, _ := storetest.New(t)

	const n = store.MaxTxnOps*2 + 44 // three transactions
	ws := make([]*persysv1.Workload, n)
	for i := range ws {
		ws[i] = workload(fmt.Sprintf("w%04d", i), fmt.Sprintf("u%d", i))
	}
	// One in the last group already exists: only that group falls back.
	if _, err := s.CreateWorkload(ctx, workload("w0290", "other")); err != nil {
		t.Fatal(err)
	}
	res := s.CreateWorkloads(ctx, ws)
	distinct := map[int64]int{}
	for i, r := range res {
		if i == 290 {
			if !errors.Is(r.Err, store.ErrExists) {
				t.Errorf("write %d: err %v, want ErrExists", i, r.Err)
			}
			continue
		}
		if r.Err != nil || r.Rev <= 0 {
			t.Fatalf("write %d: rev %d err %v", i, r.Rev, r.Err)
		}
		distinct[r.Rev]++
		got, rev, err := s.GetWorkload(ctx, ws[i].GetName())
		if err != nil || rev != r.Rev || got.GetUid() != ws[i].GetUid() {
			t.Errorf("write %d: stored %v at %d (%v), want rev %d", i, got, rev, err, r.Rev)
		}
	}
	// Two full groups in one commit each, the last write by write.
	if distinct[res[0].Rev] != store.MaxTxnOps || distinct[res[store.MaxTxnOps].Rev] != store.MaxTxnOps {
		t.Errorf("full groups not committed at once: %d and %d writes", distinct[res[0].Rev], distinct[res[store.MaxTxnOps].Rev])
	}
	if want := 2 + 43; len(distinct) != want {
		t.Errorf("%d commits, want %d", len(distinct), want)
	}
	if got, _, err := s.GetWorkload(ctx, "w0290"); err != nil || got.GetUid() != "other" {
		t.Errorf("w0290 overwritten: %v, %v", got, err)
	}
}
