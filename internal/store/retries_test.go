package store_test

import (
	"context"
	"errors"
	"testing"

	persysv1 "github.com/persys-dev/compute/api/persys/v1"
	"github.com/persys-dev/compute/internal/store"
	"github.com/persys-dev/compute/internal/store/storetest"
)

func TestRetryRecords(t *testing.T) {
	s, _ := storetest.New(t)
	ctx := context.Background()
	r := &persysv1.RetryState{Name: "web", Uid: "u1", Revision: 1, Attempts: 3,
		LastReason: persysv1.FailureReason_FAILURE_REASON_IMAGE_NOT_FOUND}

	if err := s.PutRetry(ctx, r); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("PutRetry without workload = %v, want ErrNotFound", err)
	}
	if _, err := s.CreateWorkload(ctx, &persysv1.Workload{Name: "web", Uid: "u1", Revision: 1,
		Spec: &persysv1.WorkloadSpec{Type: persysv1.WorkloadType_WORKLOAD_TYPE_CONTAINER}}); err != nil {
		t.Fatal(err)
	}
	if err := s.PutRetry(ctx, r); err != nil {
		t.Fatal(err)
	}
	got, err := s.GetRetry(ctx, "web")
	if err != nil || got.GetAttempts() != 3 || got.GetLastReason() != r.GetLastReason() {
		t.Fatalf("GetRetry = %v, %v", got, err)
	}
	snap, err := s.Load(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if snap.Retries["web"].GetAttempts() != 3 {
		t.Fatalf("Load retries = %v, want web with 3 attempts", snap.Retries)
	}
	if err := s.DeleteRetry(ctx, "web"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.GetRetry(ctx, "web"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("GetRetry after delete = %v, want ErrNotFound", err)
	}
}
