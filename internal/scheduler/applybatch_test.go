package scheduler_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	persysv1 "github.com/persys-dev/compute/api/persys/v1"
	"github.com/persys-dev/compute/internal/scheduler"
)

// TestApplyWorkloads applies a set of workloads in one call: an invalid
// item refuses the whole call and nothing is stored; a valid set is
// created and runs; applied again with one change, each item says what
// happened to it.
func TestApplyWorkloads(t *testing.T) {
	c := newCluster(t)
	names := []string{c.name("set-a"), c.name("set-b"), c.name("set-c")}
	items := func(memB int64) []*persysv1.ApplyRequest {
		var out []*persysv1.ApplyRequest
		for _, n := range names {
			mem := 32 * mib
			if n == names[1] {
				mem = memB
			}
			out = append(out, &persysv1.ApplyRequest{Name: n, Spec: c.spec(mem, nil)})
		}
		return out
	}
	call := func(req *persysv1.ApplyWorkloadsRequest) (*persysv1.ApplyWorkloadsResponse, error) {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		return c.control.ApplyWorkloads(ctx, req)
	}

	t.Run("an invalid item refuses the call", func(t *testing.T) {
		bad := items(32 * mib)
		bad[1].Spec.Container.Image = ""
		bad = append(bad, &persysv1.ApplyRequest{Name: names[0], Spec: c.spec(32*mib, nil)})
		_, err := call(&persysv1.ApplyWorkloadsRequest{Items: bad})
		if status.Code(err) != codes.InvalidArgument {
			t.Fatalf("ApplyWorkloads with an invalid item: %v, want InvalidArgument", err)
		}
		fields := map[string]string{}
		for _, d := range status.Convert(err).Details() {
			if br, ok := d.(*errdetails.BadRequest); ok {
				for _, v := range br.GetFieldViolations() {
					fields[v.GetField()] = v.GetDescription()
				}
			}
		}
		if _, ok := fields["items[1].spec.container.image"]; !ok {
			t.Errorf("violations %v: want items[1].spec.container.image", fields)
		}
		if d := fields["items[3].metadata.name"]; !strings.Contains(d, "items[0]") {
			t.Errorf("violations %v: want items[3].metadata.name naming items[0] (same name)", fields)
		}
		for _, n := range names {
			if _, err := c.get(n); status.Code(err) != codes.NotFound {
				t.Fatalf("%s after a refused call: %v, want NotFound (nothing applied)", n, err)
			}
		}
	})

	t.Run("empty and oversized calls", func(t *testing.T) {
		if _, err := call(&persysv1.ApplyWorkloadsRequest{}); status.Code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), "items") {
			t.Fatalf("empty call: %v, want InvalidArgument naming items", err)
		}
		var many []*persysv1.ApplyRequest
		for i := range scheduler.MaxApplyItems + 1 {
			many = append(many, &persysv1.ApplyRequest{Name: fmt.Sprintf("%s-%d", c.name("many"), i), Spec: c.spec(mib, nil)})
		}
		if _, err := call(&persysv1.ApplyWorkloadsRequest{Items: many}); status.Code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), "limit") {
			t.Fatalf("%d items: %v, want InvalidArgument naming the limit", len(many), err)
		}
	})

	t.Run("a valid set is created and runs", func(t *testing.T) {
		resp, err := call(&persysv1.ApplyWorkloadsRequest{Items: items(32 * mib)})
		if err != nil {
			t.Fatal(err)
		}
		checkResults(t, resp, names, []string{"created", "created", "created"})
		for _, n := range names {
			c.waitRunning(n)
		}
	})

	t.Run("applied again, each item says what changed", func(t *testing.T) {
		resp, err := call(&persysv1.ApplyWorkloadsRequest{Items: items(48 * mib)})
		if err != nil {
			t.Fatal(err)
		}
		checkResults(t, resp, names, []string{"unchanged", "updated", "unchanged"})
		if rev := resp.GetResults()[1].GetWorkload().GetWorkload().GetRevision(); rev != 2 {
			t.Fatalf("%s: revision %d after the update, want 2", names[1], rev)
		}
	})
}

func checkResults(t *testing.T, resp *persysv1.ApplyWorkloadsResponse, names, want []string) {
	t.Helper()
	rs := resp.GetResults()
	if len(rs) != len(names) {
		t.Fatalf("%d results for %d items", len(rs), len(names))
	}
	for i, r := range rs {
		if r.GetName() != names[i] || r.GetResult() != want[i] || r.GetErrorCode() != 0 {
			t.Errorf("results[%d] = %s %q (error %d %s), want %s %q", i, r.GetName(), r.GetResult(),
				r.GetErrorCode(), r.GetErrorMessage(), names[i], want[i])
		}
		if got := r.GetWorkload().GetWorkload().GetName(); got != names[i] {
			t.Errorf("results[%d] carries workload %q, want %q", i, got, names[i])
		}
	}
}
