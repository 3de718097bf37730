package gateway

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"sync/atomic"
	"time"

	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"

	persysv1 "github.com/persys-dev/compute/api/persys/v1"
	"github.com/persys-dev/compute/internal/gateway/httperr"
)

// FollowWriteTimeout bounds each write of a followed log to the client: a
// client that reads slower than that is cut off, never buffered for.
const FollowWriteTimeout = 10 * time.Second

func (g *gateway) followWriteTimeout() time.Duration {
	if g.followWrite <= 0 {
		return FollowWriteTimeout
	}
	return g.followWrite
}

// maxServiceName bounds the service query parameter (as the agent does).
const maxServiceName = 253

func (g *gateway) logRoutes() []route {
	return []route{
		{"GET", "/v1/workloads/{name}/logs", readers, g.logs},
	}
}

// logQuery is the logs route's query, checked.
type logQuery struct {
	follow  bool
	tail    int64
	since   time.Time
	service string
}

// parseLogQuery checks the query; each error names its parameter.
func parseLogQuery(r *http.Request, now time.Time) (logQuery, error) {
	var lq logQuery
	q := r.URL.Query()
	if v := q.Get("follow"); v != "" {
		b, err := strconv.ParseBool(v)
		if err != nil {
			return lq, httperr.Field("follow", fmt.Sprintf("must be true or false, got %q", v))
		}
		lq.follow = b
	}
	tail, err := parseTail(q)
	if err != nil {
		return lq, err
	}
	lq.tail = tail
	if v := q.Get("since"); v != "" {
		if lq.since, err = parseSince(v, now); err != nil {
			return lq, httperr.Field("since", err.Error())
		}
	}
	lq.service = q.Get("service")
	if len(lq.service) > maxServiceName {
		return lq, httperr.Field("service", fmt.Sprintf("must be at most %d bytes", maxServiceName))
	}
	if !lq.follow && (!lq.since.IsZero() || lq.service != "") {
		return lq, httperr.Field("follow", "since and service need follow=true")
	}
	return lq, nil
}

// parseTail reads tail_bytes, or tail, its older name.
func parseTail(q url.Values) (int64, error) {
	for _, p := range []string{"tail_bytes", "tail"} {
		if v := q.Get(p); v != "" {
			n, err := strconv.ParseInt(v, 10, 64)
			if err != nil || n < 0 {
				return 0, httperr.Field(p, fmt.Sprintf("must be a non-negative number of bytes, got %q", v))
			}
			return n, nil
		}
	}
	return 0, nil
}

// parseSince reads an RFC 3339 time or a duration back from now (5m, 1h).
func parseSince(v string, now time.Time) (time.Time, error) {
	if t, err := time.Parse(time.RFC3339Nano, v); err == nil {
		return t, nil
	}
	d, err := time.ParseDuration(v)
	if err != nil {
		return time.Time{}, fmt.Errorf("must be an RFC 3339 time (2006-01-02T15:04:05Z) or a duration such as 5m, got %q", v)
	}
	if d <= 0 {
		return time.Time{}, fmt.Errorf("duration must be positive, got %q", v)
	}
	return now.Add(-d), nil
}

// logs answers the tail of a workload's log as text/plain; the node that
// holds it and whether the log held more are in X-Persys-Node and
// X-Persys-Truncated. With follow=true it streams instead (followLogs).
func (g *gateway) logs(w http.ResponseWriter, r *http.Request) (int, error) {
	lq, err := parseLogQuery(r, time.Now())
	if err != nil {
		return 0, err
	}
	if lq.follow {
		return g.followLogs(w, r, lq)
	}
	ctx, cancel := g.callCtx(r)
	defer cancel()
	resp, err := g.control.GetWorkloadLogs(ctx, &persysv1.GetWorkloadLogsRequest{Name: r.PathValue("name"), TailBytes: lq.tail})
	if err != nil {
		return 0, err
	}
	textHeaders(w, resp.GetNodeId())
	w.Header().Set("X-Persys-Truncated", strconv.FormatBool(resp.GetTruncated()))
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(resp.GetData())
	return http.StatusOK, nil
}

func textHeaders(w http.ResponseWriter, node string) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.Header().Set("X-Persys-Node", node)
}

// FollowErrorTrailer names the trailer that carries why a followed log
// ended early (empty: it ended because the output did).
const FollowErrorTrailer = "X-Persys-Error"

// followLogs streams the log as chunked text/plain, flushed per chunk.
// Errors before the first byte are ordinary error answers; a failure later
// ends the body and sets the X-Persys-Error trailer.
func (g *gateway) followLogs(w http.ResponseWriter, r *http.Request, lq logQuery) (int, error) {
	ctx, cancel := context.WithCancel(r.Context())
	defer cancel()
	req := &persysv1.StreamWorkloadLogsRequest{Name: r.PathValue("name"), TailBytes: lq.tail, Service: lq.service}
	if !lq.since.IsZero() {
		req.Since = timestamppb.New(lq.since)
	}
	stream, err := g.control.StreamWorkloadLogs(ctx, req)
	if err != nil {
		return 0, err
	}
	// The agent's first message carries no data: the follow started.
	first, err := stream.Recv()
	if err != nil {
		return 0, followStartErr(r.PathValue("name"), err)
	}
	w.Header().Set("Trailer", FollowErrorTrailer)
	textHeaders(w, first.GetNodeId())
	w.WriteHeader(http.StatusOK)
	rc := http.NewResponseController(w)
	if err := rc.Flush(); err != nil {
		return http.StatusOK, nil
	}
	stopped := endOnShutdown(ctx, r.Context(), cancel)
	err = g.relayLogs(rc, w, stream.Recv, first.GetData())
	if stopped.Load() {
		err = errors.New("the gateway is shutting down; reconnect")
	}
	if err != nil && r.Context().Err() == nil {
		w.Header().Set(FollowErrorTrailer, err.Error())
		g.log.Info("log follow ended", "workload", req.GetName(), "err", err)
	}
	return http.StatusOK, nil
}

// followStartErr is the answer to a follow that ended before it started.
func followStartErr(name string, err error) error {
	if errors.Is(err, io.EOF) {
		return httperr.New(http.StatusNotFound, fmt.Sprintf("workload %q has no output to follow", name))
	}
	return err
}

// relayLogs writes each chunk and flushes it, each write bounded by
// FollowWriteTimeout; it returns nil when the stream ended cleanly.
func (g *gateway) relayLogs(rc *http.ResponseController, w io.Writer, recv func() (*persysv1.StreamWorkloadLogsResponse, error), data []byte) error {
	for {
		if len(data) > 0 {
			_ = rc.SetWriteDeadline(time.Now().Add(g.followWriteTimeout()))
			if _, err := w.Write(data); err != nil {
				return fmt.Errorf("client too slow or gone: %w", err)
			}
			if err := rc.Flush(); err != nil {
				return fmt.Errorf("client too slow or gone: %w", err)
			}
		}
		m, err := recv()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("log stream: %s", status.Convert(err).Message())
		}
		data = m.GetData()
	}
}

// streamStopKey holds, in a request's context, the channel Serve closes
// when it shuts down.
type streamStopKey struct{}

// endOnShutdown calls cancel when the server shuts down (before ctx ends)
// and reports, once cancel was called for that, true.
func endOnShutdown(ctx, reqCtx context.Context, cancel context.CancelFunc) *atomic.Bool {
	var stopped atomic.Bool
	stop, _ := reqCtx.Value(streamStopKey{}).(<-chan struct{})
	if stop == nil {
		return &stopped
	}
	go func() {
		select {
		case <-stop:
			stopped.Store(true)
			cancel()
		case <-ctx.Done():
		}
	}()
	return &stopped
}
