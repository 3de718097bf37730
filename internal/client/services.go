package client

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"

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
