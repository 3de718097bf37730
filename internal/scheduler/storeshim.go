package scheduler

import (
	"context"

	persysv1 "github.com/persys-dev/compute/api/persys/v1"
	"github.com/persys-dev/compute/internal/store"
)

func commitPlacement(ctx context.Context, st *store.Store, a *persysv1.Assignment, s *persysv1.WorkloadStatus, wrev, arev int64) (int64, error) {
	return 0, st.CommitPlacement(ctx, a, s, wrev, arev)
}

func putStatus(ctx context.Context, st *store.Store, s *persysv1.WorkloadStatus) (int64, error) {
	return 0, st.PutStatus(ctx, s)
}
