package realsched

import (
	"context"
	"fmt"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	persysv1 "github.com/persys-dev/compute/api/persys/v1"
	"github.com/persys-dev/compute/internal/testutil/eventually"
)

// Forget deletes the named workloads when the test ends and waits until
// they are gone, so that a test of a shared cluster leaves it as it found
// it (and go test -count=N can run it again). Names never applied are
// fine.
func (c *Cluster) Forget(t testing.TB, names ...string) {
	t.Helper()
	admin := c.Admin(t)
	t.Cleanup(func() {
		for _, n := range names {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			_, err := admin.DeleteWorkload(ctx, &persysv1.DeleteRequest{Name: n})
			cancel()
			if err != nil && status.Code(err) != codes.NotFound {
				t.Errorf("realsched: delete workload %s: %v", n, err)
			}
		}
		for _, n := range names {
			eventually.Eventually(t, "workload "+n+" gone", time.Minute, func() (bool, string) {
				ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
				defer cancel()
				_, err := admin.GetWorkload(ctx, &persysv1.GetWorkloadRequest{Name: n})
				return status.Code(err) == codes.NotFound, fmt.Sprint(err)
			})
		}
	})
}
