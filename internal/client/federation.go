package client

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strconv"

	"github.com/persys-dev/compute/internal/federation/fedapi"
)

// Calls of a federation's API (persys federation): the client is built
// from the federation's persysctl config like any other.

func clusterPath(name string) string { return "/v1/clusters/" + url.PathEscape(name) }

// doJSON sends body as JSON (when not nil) and decodes a 2xx answer into
// out (when not nil); federation types are plain JSON, not protobuf.
func (c *Client) doJSON(ctx context.Context, method, path string, query url.Values, body, out any) error {
	var data []byte
	if body != nil {
		var err error
		if data, err = json.Marshal(body); err != nil {
			return fmt.Errorf("%s %s: encoding request: %w", method, path, err)
		}
	}
	code, _, resp, err := c.send(ctx, method, path, query, data)
	if err != nil {
		return err
	}
	if code/100 != 2 {
		return decodeError(code, resp)
	}
	if out != nil {
		if err := json.Unmarshal(resp, out); err != nil {
			return fmt.Errorf("%s %s: decoding answer: %w", method, path, err)
		}
	}
	return nil
}

// JoinCluster asks the federation to add a member cluster; the
// federation probes the member with the given identity before storing it.
func (c *Client) JoinCluster(ctx context.Context, req fedapi.JoinRequest) (*fedapi.Cluster, error) {
	out := &fedapi.Cluster{}
	if err := c.doJSON(ctx, http.MethodPost, "/v1/clusters", nil, req, out); err != nil {
		return nil, err
	}
	return out, nil
}

// ListClusters returns the federation's members with their health.
func (c *Client) ListClusters(ctx context.Context) (*fedapi.ClusterList, error) {
	out := &fedapi.ClusterList{}
	if err := c.doJSON(ctx, http.MethodGet, "/v1/clusters", nil, nil, out); err != nil {
		return nil, err
	}
	return out, nil
}

// GetCluster returns one member.
func (c *Client) GetCluster(ctx context.Context, name string) (*fedapi.Cluster, error) {
	out := &fedapi.Cluster{}
	if err := c.doJSON(ctx, http.MethodGet, clusterPath(name), nil, nil, out); err != nil {
		return nil, err
	}
	return out, nil
}

// LabelCluster sets and removes labels of a member.
func (c *Client) LabelCluster(ctx context.Context, name string, req fedapi.LabelsRequest) (*fedapi.Cluster, error) {
	out := &fedapi.Cluster{}
	if err := c.doJSON(ctx, http.MethodPost, clusterPath(name)+"/labels", nil, req, out); err != nil {
		return nil, err
	}
	return out, nil
}

// LeaveCluster removes a member from the federation.
func (c *Client) LeaveCluster(ctx context.Context, name string) error {
	return c.doJSON(ctx, http.MethodDelete, clusterPath(name), nil, nil, nil)
}

// ClusterEvents returns the federation's member events, of one cluster
// when cluster is not empty, at most limit when limit > 0.
func (c *Client) ClusterEvents(ctx context.Context, cluster string, limit int) (*fedapi.EventList, error) {
	q := url.Values{}
	if cluster != "" {
		q.Set("cluster", cluster)
	}
	if limit > 0 {
		q.Set("limit", strconv.Itoa(limit))
	}
	out := &fedapi.EventList{}
	if err := c.doJSON(ctx, http.MethodGet, "/v1/events", q, nil, out); err != nil {
		return nil, err
	}
	return out, nil
}
