// Package logfollow streams a workload's output as it is written, for the
// runtimes that implement runtime.Follower: a Docker container's output
// (the engine's follow, its tail cut to a byte budget, no message sent
// twice) and a file that another process appends to (a VM's serial
// console), surviving truncation and rotation. Callers pass a context that
// ends the stream; nothing here outlives it.
package logfollow

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"strconv"
	"time"

	"github.com/moby/moby/api/pkg/stdcopy"
	"github.com/moby/moby/client"

	"github.com/persys-dev/compute/internal/runtime"
)

// Engine is the part of the Docker client a follow needs.
type Engine interface {
	ContainerLogs(ctx context.Context, id string, o client.ContainerLogsOptions) (client.ContainerLogsResult, error)
}

// Container streams the output (stdout and stderr, as written) of one
// container: its tail of f.TailBytes (whole messages), or everything since
// f.Since, then new output until ctx ends or the container's output ends.
// The tail and the follow overlap in time; messages are told apart by the
// engine's timestamps, so none is sent twice or lost.
func Container(ctx context.Context, eng Engine, id string, f runtime.LogFollow, emit func([]byte) error) error {
	since := f.Since
	var after time.Time
	if since.IsZero() {
		last, err := sendTail(ctx, eng, id, f.TailBytes, emit)
		if err != nil {
			return err
		}
		since, after = last, last
	}
	o := client.ContainerLogsOptions{ShowStdout: true, ShowStderr: true, Follow: true, Timestamps: true, Tail: "all"}
	if !since.IsZero() {
		o.Since = engineTime(since)
	}
	rc, err := eng.ContainerLogs(ctx, id, o)
	if err != nil {
		return quiet(ctx, fmt.Errorf("follow logs of %s: %w", id, err))
	}
	defer rc.Close()
	w := &stamped{after: after, emit: emit}
	if _, err := stdcopy.StdCopy(w, w, rc); err != nil {
		if w.err != nil {
			return w.err
		}
		return quiet(ctx, fmt.Errorf("follow logs of %s: %w", id, err))
	}
	return nil
}

// quiet drops an error caused by the caller going away.
func quiet(ctx context.Context, err error) error {
	if ctx.Err() != nil {
		return nil
	}
	return err
}

// engineTime is the engine's "since" form: seconds.nanoseconds.
func engineTime(t time.Time) string {
	return strconv.FormatInt(t.Unix(), 10) + "." + fmt.Sprintf("%09d", t.Nanosecond())
}

// sendTail sends the newest messages of the container's log that fit in
// budget bytes and returns the time of the newest message (zero when the
// log is empty).
func sendTail(ctx context.Context, eng Engine, id string, budget int64, emit func([]byte) error) (time.Time, error) {
	lines := max(budget/16, 100)
	rc, err := eng.ContainerLogs(ctx, id, client.ContainerLogsOptions{
		ShowStdout: true, ShowStderr: true, Timestamps: true, Tail: strconv.FormatInt(lines, 10)})
	if err != nil {
		return time.Time{}, quiet(ctx, fmt.Errorf("logs of %s: %w", id, err))
	}
	defer rc.Close()
	t := &tailKeeper{budget: budget}
	if _, err := stdcopy.StdCopy(t, t, io.LimitReader(rc, 8*budget+(1<<20))); err != nil {
		return time.Time{}, quiet(ctx, fmt.Errorf("read logs of %s: %w", id, err))
	}
	return t.last, Chunks(bytes.Join(t.msgs, nil), emit)
}

// tailKeeper keeps the newest messages written to it that fit in budget.
type tailKeeper struct {
	budget int64
	size   int64
	msgs   [][]byte
	last   time.Time
}

func (t *tailKeeper) Write(p []byte) (int, error) {
	ts, data := splitStamp(p)
	if !ts.IsZero() {
		t.last = ts
	}
	t.msgs = append(t.msgs, bytes.Clone(data))
	t.size += int64(len(data))
	for t.size > t.budget && len(t.msgs) > 0 {
		t.size -= int64(len(t.msgs[0]))
		t.msgs[0] = nil
		t.msgs = t.msgs[1:]
	}
	return len(p), nil
}

// stamped strips the engine's timestamp off each message and sends the
// messages written after after.
type stamped struct {
	after time.Time
	emit  func([]byte) error
	err   error
}

func (s *stamped) Write(p []byte) (int, error) {
	ts, data := splitStamp(p)
	if !s.after.IsZero() && !ts.IsZero() && !ts.After(s.after) {
		return len(p), nil
	}
	if err := Chunks(bytes.Clone(data), s.emit); err != nil {
		s.err = err
		return 0, err
	}
	return len(p), nil
}

// splitStamp cuts the engine's "RFC3339Nano " prefix off one message
// (the engine writes one frame per message); zero time when absent.
func splitStamp(p []byte) (time.Time, []byte) {
	i := bytes.IndexByte(p, ' ')
	if i <= 0 || i > 40 {
		return time.Time{}, p
	}
	ts, err := time.Parse(time.RFC3339Nano, string(p[:i]))
	if err != nil {
		return time.Time{}, p
	}
	return ts, p[i+1:]
}

// Chunks sends data in chunks of at most runtime.MaxLogChunk bytes.
func Chunks(data []byte, emit func([]byte) error) error {
	for len(data) > 0 {
		n := min(len(data), runtime.MaxLogChunk)
		if err := emit(data[:n]); err != nil {
			return err
		}
		data = data[n:]
	}
	return nil
}
