package client

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/cenkalti/backoff/v5"
	"google.golang.org/protobuf/proto"

	"github.com/persys-dev/compute/api/persys/contract"
	persysv1 "github.com/persys-dev/compute/api/persys/v1"
)

// Watch item types, as the gateway's watch lines spell them, plus Relist,
// which the client adds when it has to list again.
const (
	WatchSnapshot = "SNAPSHOT"
	WatchPut      = "PUT"
	WatchDelete   = "DELETE"
	WatchBookmark = "BOOKMARK"
	WatchError    = "ERROR"
	// WatchRelist: the position was too old to resume from; SNAPSHOT
	// items of a new list follow.
	WatchRelist = "RELIST"
)

// maxWatchLine bounds one line of a watch stream.
const maxWatchLine = 8 << 20

// WatchItem is one decoded line of a watch stream; one object is set for
// SNAPSHOT, PUT and DELETE.
type WatchItem struct {
	Type     string
	Revision int64
	Index    *int32
	Workload *persysv1.WorkloadView
	Node     *persysv1.Node
	Service  *persysv1.ServiceView
	Event    *persysv1.Event
}

// WatchOptions filters a watch: Selector for workloads, Workload and Type
// for events.
type WatchOptions struct {
	Selector       map[string]string
	Workload, Type string
}

// watchLine is the gateway's line (internal/gateway WatchLine).
type watchLine struct {
	Type     string          `json:"type"`
	Revision int64           `json:"revision"`
	Index    *int32          `json:"index"`
	Workload json.RawMessage `json:"workload"`
	Node     json.RawMessage `json:"node"`
	Service  json.RawMessage `json:"service"`
	Event    json.RawMessage `json:"event"`
	Error    *struct {
		Code    int    `json:"code"`
		Message string `json:"message"`
	} `json:"error"`
}

// watchPos is where a watch resumes; nil Index means the whole revision.
type watchPos struct {
	rev   int64
	index *int32
}

// errResume ends one connection of a watch that resumes.
var errResume = errors.New("resume")

// Watch follows kind (workloads, nodes, services or events) and calls fn
// for every item until ctx ends or fn fails. A lost connection, a cut-off
// (the reader fell behind) or a scheduler restart reconnect from the last
// position seen, so fn sees every change once; when the gateway no longer
// keeps that position, fn gets RELIST and then a new list.
func (c *Client) Watch(ctx context.Context, kind string, opts WatchOptions, fn func(WatchItem) error) error {
	switch kind {
	case "workloads", "nodes", "services", "events":
	default:
		return fmt.Errorf("watch: unknown kind %q", kind)
	}
	var pos *watchPos
	retry := backoff.NewExponentialBackOff()
	retry.InitialInterval, retry.MaxInterval = 200*time.Millisecond, 10*time.Second
	for {
		err := c.watchOnce(ctx, kind, opts, &pos, fn, retry)
		if ctx.Err() != nil {
			return nil
		}
		if gone(err) {
			pos = nil
			if err := fn(WatchItem{Type: WatchRelist}); err != nil {
				return err
			}
			continue
		}
		if !resumable(err) {
			return err
		}
		t := time.NewTimer(retry.NextBackOff())
		select {
		case <-ctx.Done():
			t.Stop()
			return nil
		case <-t.C:
		}
	}
}

func gone(err error) bool {
	var apiErr *APIError
	return errors.As(err, &apiErr) && apiErr.Code == http.StatusGone
}

// resumable: the connection broke, the reader fell behind, or the
// gateway or scheduler is unavailable; a refusal (4xx) is final.
func resumable(err error) bool {
	var apiErr *APIError
	if errors.As(err, &apiErr) {
		return apiErr.Code >= 500
	}
	return errors.Is(err, errResume) || isTransport(err)
}

// isTransport reports whether err is a broken connection rather than a
// refusal.
func isTransport(err error) bool {
	var ue *url.Error
	return errors.As(err, &ue) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF)
}

// watchOnce runs one connection; *pos follows what fn has seen.
func (c *Client) watchOnce(ctx context.Context, kind string, opts WatchOptions, pos **watchPos,
	fn func(WatchItem) error, retry *backoff.ExponentialBackOff) error {
	body, err := c.openWatch(ctx, kind, opts, *pos)
	if err != nil {
		return err
	}
	defer body.Close()
	sc := bufio.NewScanner(body)
	sc.Buffer(make([]byte, 64<<10), maxWatchLine)
	for sc.Scan() {
		var l watchLine
		if err := json.Unmarshal(sc.Bytes(), &l); err != nil {
			return fmt.Errorf("watch %s: bad line: %w", kind, err)
		}
		if l.Type == WatchError {
			if l.Error != nil && (l.Error.Code == http.StatusTooManyRequests || l.Error.Code >= 500) {
				return errResume
			}
			return &APIError{Code: l.Error.Code, Message: l.Error.Message}
		}
		it, err := decodeWatchItem(l)
		if err != nil {
			return fmt.Errorf("watch %s: %w", kind, err)
		}
		if err := fn(it); err != nil {
			return err
		}
		retry.Reset()
		advance(pos, l)
	}
	if err := sc.Err(); err != nil && ctx.Err() == nil {
		return fmt.Errorf("%w: watch %s: %v", errResume, kind, err) // a broken stream resumes
	}
	return errResume
}

// advance moves the resume position past l.
func advance(pos **watchPos, l watchLine) {
	switch l.Type {
	case WatchPut, WatchDelete:
		*pos = &watchPos{rev: l.Revision, index: l.Index}
	case WatchBookmark:
		if *pos == nil || l.Revision > (*pos).rev {
			*pos = &watchPos{rev: l.Revision}
		}
	}
}

func (c *Client) openWatch(ctx context.Context, kind string, opts WatchOptions, pos *watchPos) (io.ReadCloser, error) {
	q := watchQuery(kind, opts, pos)
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.base.String()+"/v1/"+kind+"?"+q.Encode(), nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Accept", "application/x-ndjson")
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		defer resp.Body.Close()
		data, _ := io.ReadAll(io.LimitReader(resp.Body, maxResponseSize))
		return nil, decodeError(resp.StatusCode, data)
	}
	return resp.Body, nil
}

func decodeWatchItem(l watchLine) (WatchItem, error) {
	it := WatchItem{Type: l.Type, Revision: l.Revision, Index: l.Index}
	for _, f := range []struct {
		raw json.RawMessage
		set func() proto.Message
	}{
		{l.Workload, func() proto.Message { it.Workload = &persysv1.WorkloadView{}; return it.Workload }},
		{l.Node, func() proto.Message { it.Node = &persysv1.Node{}; return it.Node }},
		{l.Service, func() proto.Message { it.Service = &persysv1.ServiceView{}; return it.Service }},
		{l.Event, func() proto.Message { it.Event = &persysv1.Event{}; return it.Event }},
	} {
		if len(f.raw) == 0 {
			continue
		}
		if err := contract.UnmarshalJSON(unmarshal, f.raw, f.set()); err != nil {
			return it, fmt.Errorf("decoding %s item: %w", l.Type, err)
		}
	}
	return it, nil
}

// formatSelector writes a selector as k=v pairs, sorted by key.
func formatSelector(sel map[string]string) string {
	keys := make([]string, 0, len(sel))
	for k := range sel {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = k + "=" + sel[k]
	}
	return strings.Join(parts, ",")
}

// watchQuery is the query of a watch of kind from pos (nil: list first).
func watchQuery(kind string, opts WatchOptions, pos *watchPos) url.Values {
	q := url.Values{}
	if kind == "events" {
		q.Set("follow", "true")
		if opts.Workload != "" {
			q.Set("workload", opts.Workload)
		}
		if opts.Type != "" {
			q.Set("type", opts.Type)
		}
	} else {
		q.Set("watch", "true")
	}
	if sel := formatSelector(opts.Selector); sel != "" {
		q.Set("selector", sel)
	}
	if pos != nil {
		q.Set("since", strconv.FormatInt(pos.rev, 10))
		if pos.index != nil {
			q.Set("since_index", strconv.Itoa(int(*pos.index)))
		}
	}
	return q
}
