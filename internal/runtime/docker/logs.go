package docker

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"strconv"

	"github.com/moby/moby/client"

	"github.com/moby/moby/api/pkg/stdcopy"

	persysv1 "github.com/persys-dev/compute/api/persys/v1"
	"github.com/persys-dev/compute/internal/runtime"
	"github.com/persys-dev/compute/internal/runtime/logfollow"
)

// logLineGuess turns a byte budget into the engine's line-based tail: the
// engine cannot cut by bytes, so ask for enough lines and cut here.
func logLineGuess(tailBytes int64) string {
	lines := tailBytes / 16
	if lines < 100 {
		lines = 100
	}
	return strconv.FormatInt(lines, 10)
}

// Logs returns the last tailBytes bytes of the output (stdout and stderr,
// interleaved as written) of the workload's newest container.
func (r *Runtime) Logs(ctx context.Context, name string, tailBytes int64) ([]byte, bool, error) {
	existing, err := r.listContainers(ctx, name, "")
	if err != nil {
		return nil, false, runtime.Fail(persysv1.FailureReason_FAILURE_REASON_RUNTIME_ERROR, err, "list containers of %s", name)
	}
	if len(existing) == 0 {
		return nil, false, runtime.Fail(persysv1.FailureReason_FAILURE_REASON_RUNTIME_ERROR, nil, "workload %s has no container", name)
	}
	c := newestFirst(existing)[0]
	rc, err := r.cli.ContainerLogs(ctx, c.ID, client.ContainerLogsOptions{ShowStdout: true, ShowStderr: true, Tail: logLineGuess(tailBytes)})
	if err != nil {
		return nil, false, runtime.Fail(persysv1.FailureReason_FAILURE_REASON_RUNTIME_ERROR, err, "logs of container %s", containerLabel(c))
	}
	defer rc.Close()
	var buf bytes.Buffer
	w := &tailWriter{buf: &buf, max: tailBytes}
	// Containers without a TTY (the runtime never allocates one) stream
	// multiplexed frames.
	if _, err := stdcopy.StdCopy(w, w, io.LimitReader(rc, 64<<20)); err != nil {
		return nil, false, runtime.Fail(persysv1.FailureReason_FAILURE_REASON_RUNTIME_ERROR, err, "read logs of container %s", containerLabel(c))
	}
	return buf.Bytes(), w.dropped, nil
}

// tailWriter keeps the last max bytes written to it.
type tailWriter struct {
	buf     *bytes.Buffer
	max     int64
	dropped bool
}

func (t *tailWriter) Write(p []byte) (int, error) {
	n := len(p)
	t.buf.Write(p)
	if over := int64(t.buf.Len()) - t.max; over > 0 {
		t.buf.Next(int(over))
		rest := append([]byte(nil), t.buf.Bytes()...)
		t.buf.Reset()
		t.buf.Write(rest)
		t.dropped = true
	}
	return n, nil
}

var _ runtime.Logger = (*Runtime)(nil)

// FollowLogs streams the output of the workload's newest container. See
// runtime.Follower.
func (r *Runtime) FollowLogs(ctx context.Context, name string, f runtime.LogFollow, emit func([]byte) error) error {
	if f.Service != "" {
		return fmt.Errorf("workload %s is a container, not a compose stack: %w", name, runtime.ErrLogService)
	}
	existing, err := r.listContainers(ctx, name, "")
	if err != nil {
		return runtime.Fail(persysv1.FailureReason_FAILURE_REASON_RUNTIME_ERROR, err, "list containers of %s", name)
	}
	if len(existing) == 0 {
		return runtime.Fail(persysv1.FailureReason_FAILURE_REASON_RUNTIME_ERROR, nil, "workload %s has no container", name)
	}
	f.Start()
	return logfollow.Container(ctx, r.cli, newestFirst(existing)[0].ID, f, emit)
}

var _ runtime.Follower = (*Runtime)(nil)
