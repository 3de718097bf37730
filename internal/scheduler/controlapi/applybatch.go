package controlapi

import (
	"context"
	"errors"
	"fmt"

	"golang.org/x/sync/errgroup"
	"google.golang.org/grpc/status"

	persysv1 "github.com/persys-dev/compute/api/persys/v1"
	"github.com/persys-dev/compute/internal/manifest"
	"github.com/persys-dev/compute/internal/principal"
)

// applyParallelism bounds the items of one call applied at once. Items
// created together share the group commits, so a batch costs a few etcd
// round trips rather than one per item.
const applyParallelism = 64

// ApplyWorkloads validates every item (one invalid item refuses the whole
// call), then applies each as ApplyWorkload does and answers each on its
// own.
func (c *controlService) ApplyWorkloads(ctx context.Context, req *persysv1.ApplyWorkloadsRequest) (*persysv1.ApplyWorkloadsResponse, error) {
	if err := c.s.Serving(ctx); err != nil {
		return nil, err
	}
	items := req.GetItems()
	who, err := principal.Of(ctx)
	if err != nil {
		return nil, err
	}
	if err := manifest.ValidateApplyItems(items); err != nil {
		return nil, toStatus(err)
	}
	// What the manifest rules cannot see (compose files, cloud-init) is
	// checked for every item before any is applied, as the rules are. A
	// failure that is not the input's (a Git remote that does not answer)
	// fails only its item.
	prepared := make([]error, len(items))
	forEach(len(items), func(i int) {
		prepared[i] = c.s.PrepareSpec(ctx, who, items[i].GetSpec())
	})
	var invalid []manifest.FieldError
	for i, err := range prepared {
		var merr *manifest.Error
		if errors.As(err, &merr) {
			invalid = append(invalid, merr.Within(fmt.Sprintf("items[%d]", i), fmt.Sprintf("workload %q", items[i].GetName())).Fields...)
		}
	}
	if len(invalid) > 0 {
		return nil, toStatus(&manifest.Error{Fields: invalid})
	}
	results := make([]*persysv1.ApplyResult, len(items))
	forEach(len(items), func(i int) {
		r := &persysv1.ApplyResult{Name: items[i].GetName()}
		results[i] = r
		err := prepared[i]
		if err == nil {
			var w *persysv1.Workload
			w, r.Result, err = c.s.ApplyWorkload(ctx, who, items[i])
			if err == nil {
				r.Workload = c.s.WorkloadView(w.GetName(), false, ctx)
				return
			}
		}
		st := status.Convert(toStatus(err))
		r.ErrorCode, r.ErrorMessage = int32(st.Code()), st.Message()
	})
	return &persysv1.ApplyWorkloadsResponse{Results: results}, nil
}

// forEach runs fn for 0..n-1, applyParallelism at once, and returns when
// every call has.
func forEach(n int, fn func(i int)) {
	var g errgroup.Group
	g.SetLimit(applyParallelism)
	for i := range n {
		g.Go(func() error { fn(i); return nil })
	}
	_ = g.Wait()
}
