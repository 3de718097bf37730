package client

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"time"

	persysv1 "github.com/persys-dev/compute/api/persys/v1"
)

func servicePath(name string, rest ...string) string {
	p := "/v1/services/" + url.PathEscape(name)
	for _, r := range rest {
		p += r
	}
	return p
}

// ApplyService sends a service manifest (YAML or JSON); Result is
// "created", "updated" or "unchanged".
func (c *Client) ApplyService(ctx context.Context, manifest []byte) (*persysv1.ApplyServiceResponse, error) {
	if manifest == nil {
		manifest = []byte{}
	}
	out := &persysv1.ApplyServiceResponse{}
	if _, err := c.do(ctx, http.MethodPost, "/v1/services", nil, manifest, out); err != nil {
		return nil, err
	}
	return out, nil
}

// ListServices returns every service with its rollout progress.
func (c *Client) ListServices(ctx context.Context) (*persysv1.ListServicesResponse, error) {
	out := &persysv1.ListServicesResponse{}
	if _, err := c.do(ctx, http.MethodGet, "/v1/services", nil, nil, out); err != nil {
		return nil, err
	}
	return out, nil
}

// GetService returns one service (with its recent events when events).
func (c *Client) GetService(ctx context.Context, name string, events bool) (*persysv1.ServiceView, error) {
	var q url.Values
	if events {
		q = url.Values{"events": {"true"}}
	}
	out := &persysv1.ServiceView{}
	if _, err := c.do(ctx, http.MethodGet, servicePath(name), q, nil, out); err != nil {
		return nil, err
	}
	return out, nil
}

// DeleteService deletes a service; its replicas go asynchronously.
func (c *Client) DeleteService(ctx context.Context, name string) error {
	_, err := c.do(ctx, http.MethodDelete, servicePath(name), nil, nil, &persysv1.DeleteServiceResponse{}, http.StatusAccepted)
	return err
}

// ScaleService sets a service's replicas.
func (c *Client) ScaleService(ctx context.Context, name string, replicas int32) (*persysv1.ServiceView, error) {
	body, err := json.Marshal(map[string]int32{"replicas": replicas})
	if err != nil {
		return nil, err
	}
	out := &persysv1.ServiceView{}
	if _, err := c.do(ctx, http.MethodPost, servicePath(name, "/scale"), nil, body, out); err != nil {
		return nil, err
	}
	return out, nil
}

// RolloutHistory lists a service's kept revisions, oldest first.
func (c *Client) RolloutHistory(ctx context.Context, name string) (*persysv1.RolloutHistoryResponse, error) {
	out := &persysv1.RolloutHistoryResponse{}
	if _, err := c.do(ctx, http.MethodGet, servicePath(name, "/history"), nil, nil, out); err != nil {
		return nil, err
	}
	return out, nil
}

// RolloutUndo returns a service's template to revision to (0: the one
// before the current).
func (c *Client) RolloutUndo(ctx context.Context, name string, to uint64) (*persysv1.ServiceView, error) {
	var body []byte
	if to != 0 {
		body = []byte(fmt.Sprintf(`{"toRevision": %d}`, to))
	}
	out := &persysv1.ServiceView{}
	if _, err := c.do(ctx, http.MethodPost, servicePath(name, "/undo"), nil, body, out); err != nil {
		return nil, err
	}
	return out, nil
}

// Rollout operations RolloutOp takes.
const (
	RolloutPause   = "pause"
	RolloutResume  = "resume"
	RolloutPromote = "promote"
)

// RolloutOp pauses, resumes or promotes a service's update.
func (c *Client) RolloutOp(ctx context.Context, name, op string) (*persysv1.ServiceView, error) {
	switch op {
	case RolloutPause, RolloutResume, RolloutPromote:
	default:
		return nil, fmt.Errorf("rollout: unknown operation %q (pause, resume or promote)", op)
	}
	out := &persysv1.ServiceView{}
	if _, err := c.do(ctx, http.MethodPost, servicePath(name, "/"+op), nil, nil, out); err != nil {
		return nil, err
	}
	return out, nil
}

// ServiceEndpoints returns the service's endpoints: its ready replicas
// that are not being removed, with where to reach them.
func (c *Client) ServiceEndpoints(ctx context.Context, name string) (*persysv1.ServiceEndpointList, error) {
	out := &persysv1.ServiceEndpointList{}
	if _, err := c.do(ctx, http.MethodGet, servicePath(name, "/endpoints"), nil, nil, out); err != nil {
		return nil, err
	}
	return out, nil
}

// maxEndpointsLine bounds one line of the endpoints watch (1,000 replicas
// with a few ports each fit well within it).
const maxEndpointsLine = 8 << 20

// WatchServiceEndpoints follows the service's endpoints: fn gets each
// NDJSON line of the watch (the whole set, SNAPSHOT first then UPDATE),
// raw, until ctx ends (nil), the stream ends or fn fails. Only the
// opening of the stream is bounded by DefaultCallTimeout.
func (c *Client) WatchServiceEndpoints(ctx context.Context, name string, fn func(line []byte) error) error {
	sctx, cancel := context.WithCancel(ctx)
	defer cancel()
	req, err := http.NewRequestWithContext(sctx, http.MethodGet, c.base.String()+servicePath(name, "/endpoints")+"?watch=true", nil)
	if err != nil {
		return err
	}
	req.Header.Set("Accept", "application/x-ndjson")
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	opening := time.AfterFunc(DefaultCallTimeout, cancel)
	resp, err := c.http.Do(req)
	if !opening.Stop() && err != nil {
		return fmt.Errorf("GET %s: no answer within %s", c.base.Host, DefaultCallTimeout)
	}
	if err != nil {
		if ctx.Err() != nil {
			return nil
		}
		return fmt.Errorf("GET %s: %w", c.base.Host, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		data, _ := io.ReadAll(io.LimitReader(resp.Body, maxResponseSize))
		return decodeError(resp.StatusCode, data)
	}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 0, 64<<10), maxEndpointsLine)
	for sc.Scan() {
		if err := fn(sc.Bytes()); err != nil {
			return err
		}
	}
	if ctx.Err() != nil {
		return nil
	}
	if err := sc.Err(); err != nil {
		return fmt.Errorf("endpoints watch of %q: %w", name, err)
	}
	return fmt.Errorf("endpoints watch of %q: the gateway ended the stream", name)
}
