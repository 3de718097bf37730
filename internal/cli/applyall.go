package cli

import (
	"fmt"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"google.golang.org/grpc/codes"

	"github.com/persys-dev/compute/internal/client"
)

// applyAll applies a manifest stream in one call and prints one line per
// workload; with wait it then waits for each applied workload in turn, as
// apply --wait does for one. Any workload that was not applied, failed or
// timed out makes it return an error naming them.
func (o *options) applyAll(cmd *cobra.Command, c *client.Client, data []byte, wait bool, timeout time.Duration) error {
	ctx := cmd.Context()
	resp, err := c.ApplyAll(ctx, data)
	if err != nil {
		return err
	}
	table := !o.structured()
	results := resp.GetResults()
	var notApplied, notReady []string
	for _, r := range results {
		if r.GetErrorCode() != 0 {
			notApplied = append(notApplied, r.GetName())
		}
		if !table {
			continue
		}
		if r.GetErrorCode() != 0 {
			fmt.Fprintf(o.streams.Out, "workload/%s error: %s\n", r.GetName(), itemError(r.GetErrorCode(), r.GetErrorMessage()))
		} else {
			fmt.Fprintf(o.streams.Out, "workload/%s %s\n", r.GetName(), r.GetResult())
		}
	}
	for _, r := range results {
		if !wait || r.GetErrorCode() != 0 {
			continue
		}
		name, forState := r.GetName(), waitFor(r.GetWorkload())
		if failedBefore(r.GetWorkload()) {
			notReady = append(notReady, name)
			if table {
				fmt.Fprintf(o.streams.Out, "workload/%s failed before this apply: %s\n", name, failure(r.GetWorkload()))
			}
			continue
		}
		view, err := c.Wait(ctx, name, forState, timeout)
		if ctx.Err() != nil {
			// Interrupted: the rest is not waited for.
			return fmt.Errorf("waiting for workload %s: %w", name, ctx.Err())
		}
		if view != nil {
			r.Workload = view
		}
		var line string
		switch {
		case err != nil:
			line = "error: " + err.Error()
		case isFailed(view):
			line = "failed: " + failure(view)
		default:
			line = fmt.Sprintf("%s on %s (revision %d)", forState, orNone(workloadNode(view)), view.GetWorkload().GetRevision())
		}
		if err != nil || isFailed(view) {
			notReady = append(notReady, name)
		}
		if table {
			fmt.Fprintf(o.streams.Out, "workload/%s %s\n", name, line)
		}
	}
	if !table {
		if err := printObject(o.streams.Out, o.output, resp); err != nil {
			return err
		}
	}
	var problems []string
	if len(notApplied) > 0 {
		problems = append(problems, fmt.Sprintf("%d of %d workloads failed to apply: %s",
			len(notApplied), len(results), strings.Join(notApplied, ", ")))
	}
	if len(notReady) > 0 {
		problems = append(problems, fmt.Sprintf("%d of %d workloads failed or timed out while waiting: %s",
			len(notReady), len(results), strings.Join(notReady, ", ")))
	}
	if len(problems) > 0 {
		return fmt.Errorf("%s", strings.Join(problems, "; "))
	}
	return nil
}

// itemError is an item's error message, or its gRPC code when it has none.
func itemError(code int32, msg string) string {
	if msg != "" {
		return msg
	}
	return codes.Code(code).String()
}
