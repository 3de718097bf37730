package compose

import (
	"bytes"
	"context"
	"io"
	"slices"
	"strconv"
	"strings"

	"github.com/docker/compose/v5/pkg/api"
	"github.com/moby/moby/api/pkg/stdcopy"
	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/client"

	persysv1 "github.com/persys-dev/compute/api/persys/v1"
	"github.com/persys-dev/compute/internal/runtime"
)

// Logs returns the tail of the services' output, each line prefixed by
// its service name, services in name order.
func (r *Runtime) Logs(ctx context.Context, name string, tailBytes int64) ([]byte, bool, error) {
	if tailBytes <= 0 {
		tailBytes = 64 << 10
	}
	ctrs, err := r.containers(ctx, name)
	if err != nil {
		return nil, false, err
	}
	if len(ctrs) == 0 {
		return nil, false, runtime.Fail(persysv1.FailureReason_FAILURE_REASON_RUNTIME_ERROR, nil, "workload %s has no containers", name)
	}
	slices.SortFunc(ctrs, func(a, b container.Summary) int {
		return strings.Compare(a.Labels[api.ServiceLabel]+first(a.Names), b.Labels[api.ServiceLabel]+first(b.Names))
	})
	lines := strconv.FormatInt(tailBytes/16+100, 10)
	var buf bytes.Buffer
	for _, c := range ctrs {
		rc, err := r.cli.ContainerLogs(ctx, c.ID, client.ContainerLogsOptions{ShowStdout: true, ShowStderr: true, Tail: lines})
		if err != nil {
			return nil, false, runtime.Fail(persysv1.FailureReason_FAILURE_REASON_RUNTIME_ERROR, err, "logs of %s", first(c.Names))
		}
		var out bytes.Buffer
		_, err = stdcopy.StdCopy(&out, &out, io.LimitReader(rc, 4*tailBytes+(1<<20)))
		_ = rc.Close()
		if err != nil {
			return nil, false, runtime.Fail(persysv1.FailureReason_FAILURE_REASON_RUNTIME_ERROR, err, "read logs of %s", first(c.Names))
		}
		prefix := c.Labels[api.ServiceLabel] + " | "
		for line := range strings.Lines(out.String()) {
			buf.WriteString(prefix)
			buf.WriteString(line)
			if !strings.HasSuffix(line, "\n") {
				buf.WriteByte('\n')
			}
		}
	}
	data := buf.Bytes()
	if int64(len(data)) > tailBytes {
		return data[int64(len(data))-tailBytes:], true, nil
	}
	return data, false, nil
}
