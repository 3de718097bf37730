package compose

import (
	"bytes"
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"

	"github.com/docker/compose/v5/pkg/api"
	"github.com/moby/moby/api/types/container"
	"golang.org/x/sync/errgroup"

	persysv1 "github.com/persys-dev/compute/api/persys/v1"
	"github.com/persys-dev/compute/internal/runtime"
	"github.com/persys-dev/compute/internal/runtime/logfollow"
)

// FollowLogs streams the output of one service (f.Service) or of every
// service, each line prefixed "SERVICE | " as docker compose logs -f does.
// It ends when ctx ends or every followed container's output ended. See
// runtime.Follower.
func (r *Runtime) FollowLogs(ctx context.Context, name string, f runtime.LogFollow, emit func([]byte) error) error {
	ctrs, err := r.containers(ctx, name)
	if err != nil {
		return runtime.Fail(persysv1.FailureReason_FAILURE_REASON_RUNTIME_ERROR, err, "list containers of %s", name)
	}
	if len(ctrs) == 0 {
		return runtime.Fail(persysv1.FailureReason_FAILURE_REASON_RUNTIME_ERROR, nil, "workload %s has no containers", name)
	}
	slices.SortFunc(ctrs, func(a, b container.Summary) int {
		return strings.Compare(a.Labels[api.ServiceLabel]+first(a.Names), b.Labels[api.ServiceLabel]+first(b.Names))
	})
	if f.Service != "" {
		ctrs, err = ofService(ctrs, name, f.Service)
		if err != nil {
			return err
		}
	}
	f.Start()
	return followAll(ctx, r.cli, ctrs, f, emit)
}

// followAll follows every container at once; a line is never split
// between two containers' output, and all end when one fails.
func followAll(ctx context.Context, eng logfollow.Engine, ctrs []container.Summary, f runtime.LogFollow, emit func([]byte) error) error {
	var mu sync.Mutex
	g, gctx := errgroup.WithContext(ctx)
	for _, c := range ctrs {
		prefix := ""
		if f.Service == "" {
			prefix = c.Labels[api.ServiceLabel] + " | "
		}
		send := func(p []byte) error {
			mu.Lock()
			defer mu.Unlock()
			return logfollow.Chunks(prefixLines(prefix, p), emit)
		}
		g.Go(func() error { return logfollow.Container(gctx, eng, c.ID, f, send) })
	}
	return g.Wait()
}

// ofService keeps the containers of service, or names the services there are.
func ofService(ctrs []container.Summary, name, service string) ([]container.Summary, error) {
	var have []string
	out := slices.DeleteFunc(slices.Clone(ctrs), func(c container.Summary) bool {
		have = append(have, c.Labels[api.ServiceLabel])
		return c.Labels[api.ServiceLabel] != service
	})
	if len(out) == 0 {
		return nil, fmt.Errorf("service %q is not in workload %s (services: %s): %w",
			service, name, strings.Join(slices.Compact(have), ", "), runtime.ErrLogService)
	}
	return out, nil
}

// prefixLines puts prefix before every line of p ("" leaves p as it is).
func prefixLines(prefix string, p []byte) []byte {
	if prefix == "" {
		return p
	}
	var b bytes.Buffer
	for line := range bytes.Lines(p) {
		b.WriteString(prefix)
		b.Write(line)
		if !bytes.HasSuffix(line, []byte("\n")) {
			b.WriteByte('\n')
		}
	}
	return b.Bytes()
}

var _ runtime.Follower = (*Runtime)(nil)
