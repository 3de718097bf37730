package scheduler

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"

	"google.golang.org/grpc/status"

	persysv1 "github.com/persys-dev/compute/api/persys/v1"
	"github.com/persys-dev/compute/internal/manifest"
)

// MaxApplyItems bounds the workloads of one ApplyWorkloads call.
const MaxApplyItems = 1000

// applyParallelism bounds the items of one call applied at once. Items
// created together share the group commits, so a batch costs a few etcd
// round trips rather than one per item.
const applyParallelism = 64

// ApplyWorkloads validates every item (one invalid item refuses the whole
// call), then applies each as ApplyWorkload does and answers each on its
// own.
func (c *controlService) ApplyWorkloads(ctx context.Context, req *persysv1.ApplyWorkloadsRequest) (*persysv1.ApplyWorkloadsResponse, error) {
	if err := c.s.serving(ctx); err != nil {
		return nil, err
	}
	items := req.GetItems()
	if err := validateApplyItems(items); err != nil {
		return nil, toStatus(err)
	}
	// What the manifest rules cannot see (compose files, cloud-init) is
	// checked for every item before any is applied, as the rules are. A
	// failure that is not the input's (a Git remote that does not answer)
	// fails only its item.
	prepared := make([]error, len(items))
	forEachItem(len(items), func(i int) {
		prepared[i] = c.s.prepareSpec(ctx, items[i].GetSpec())
	})
	var invalid []manifest.FieldError
	for i, err := range prepared {
		var merr *manifest.Error
		if errors.As(err, &merr) {
			invalid = append(invalid, itemFields(i, items[i].GetName(), merr.Fields)...)
		}
	}
	if len(invalid) > 0 {
		return nil, toStatus(&manifest.Error{Fields: invalid})
	}
	results := make([]*persysv1.ApplyResult, len(items))
	forEachItem(len(items), func(i int) {
		r := &persysv1.ApplyResult{Name: items[i].GetName()}
		results[i] = r
		err := prepared[i]
		if err == nil {
			var w *persysv1.Workload
			w, r.Result, err = c.s.applyWorkload(ctx, items[i])
			if err == nil {
				r.Workload = c.s.viewOf(w.GetName(), false, ctx)
				return
			}
		}
		st := status.Convert(toStatus(err))
		r.ErrorCode, r.ErrorMessage = int32(st.Code()), st.Message()
	})
	return &persysv1.ApplyWorkloadsResponse{Results: results}, nil
}

// validateApplyItems checks the call's shape and every item with the
// manifest rules; fields are named items[i] (name).
func validateApplyItems(items []*persysv1.ApplyRequest) error {
	switch {
	case len(items) == 0:
		return &manifest.Error{Fields: []manifest.FieldError{{Field: "items", Reason: "at least one workload is required"}}}
	case len(items) > MaxApplyItems:
		return &manifest.Error{Fields: []manifest.FieldError{{Field: "items",
			Reason: fmt.Sprintf("%d workloads, more than the limit of %d in one call", len(items), MaxApplyItems)}}}
	}
	var fields []manifest.FieldError
	first := make(map[string]int, len(items))
	for i, it := range items {
		if err := manifest.ValidateApplyRequest(it); err != nil {
			var merr *manifest.Error
			if !errors.As(err, &merr) {
				return err
			}
			fields = append(fields, itemFields(i, it.GetName(), merr.Fields)...)
			continue
		}
		if j, dup := first[it.GetName()]; dup {
			fields = append(fields, manifest.FieldError{Field: fmt.Sprintf("items[%d].metadata.name", i),
				Reason: fmt.Sprintf("%q is also items[%d]; each workload may appear once in a call", it.GetName(), j)})
			continue
		}
		first[it.GetName()] = i
	}
	if len(fields) > 0 {
		return &manifest.Error{Fields: fields}
	}
	return nil
}

// itemFields places an item's field errors under items[i].
func itemFields(i int, name string, fs []manifest.FieldError) []manifest.FieldError {
	out := make([]manifest.FieldError, len(fs))
	for k, f := range fs {
		field := fmt.Sprintf("items[%d]", i)
		switch {
		case strings.HasPrefix(f.Field, "["):
			field += f.Field
		case f.Field != "":
			field += "." + f.Field
		}
		reason := f.Reason
		if name != "" {
			reason = fmt.Sprintf("%s (workload %q)", reason, name)
		}
		out[k] = manifest.FieldError{Field: field, Reason: reason}
	}
	return out
}

// forEachItem runs fn for 0..n-1, at most applyParallelism at once.
func forEachItem(n int, fn func(i int)) {
	if n == 1 {
		fn(0)
		return
	}
	sem := make(chan struct{}, applyParallelism)
	var wg sync.WaitGroup
	for i := range n {
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer func() { <-sem; wg.Done() }()
			fn(i)
		}()
	}
	wg.Wait()
}
