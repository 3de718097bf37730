package client

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
)

// Logs is the tail of a workload's log.
type Logs struct {
	Data []byte
	// Node holds the log; Truncated says the log held more.
	Node      string
	Truncated bool
}

// WorkloadLogs returns the last tailBytes bytes (0: the gateway's default)
// of the workload's log: container output or a VM's serial console.
func (c *Client) WorkloadLogs(ctx context.Context, name string, tailBytes int64) (*Logs, error) {
	q := url.Values{}
	if tailBytes > 0 {
		q.Set("tail", strconv.FormatInt(tailBytes, 10))
	}
	code, hdr, data, err := c.send(ctx, "GET", workloadPath(name, "/logs"), q, nil)
	if err != nil {
		return nil, err
	}
	if code/100 != 2 {
		return nil, decodeError(code, data)
	}
	trunc, _ := strconv.ParseBool(hdr.Get("X-Persys-Truncated"))
	return &Logs{Data: data, Node: hdr.Get("X-Persys-Node"), Truncated: trunc}, nil
}

// LogFollow says where a followed log starts.
type LogFollow struct {
	// TailBytes from the end to start with (0: the gateway's default).
	TailBytes int64
	// Since, when set, is an RFC 3339 time or a duration back from now
	// (5m), as the gateway's since parameter.
	Since string
	// Service names one service of a compose workload.
	Service string
}

// FollowLogs streams the workload's log into w as the gateway sends it,
// until ctx ends (nil), the output ends (nil) or the stream fails (the
// gateway's reason, from its X-Persys-Error trailer). It has no timeout
// of its own.
func (c *Client) FollowLogs(ctx context.Context, name string, f LogFollow, w io.Writer) error {
	q := f.query()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.base.String()+workloadPath(name, "/logs")+"?"+q.Encode(), nil)
	if err != nil {
		return err
	}
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return quietCancel(ctx, fmt.Errorf("GET %s: %w", c.base.Host, err))
	}
	defer resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		data, _ := io.ReadAll(io.LimitReader(resp.Body, maxResponseSize))
		return decodeError(resp.StatusCode, data)
	}
	if _, err := io.Copy(w, resp.Body); err != nil {
		return quietCancel(ctx, fmt.Errorf("reading the log of %s: %w", name, err))
	}
	if msg := resp.Trailer.Get("X-Persys-Error"); msg != "" {
		return fmt.Errorf("the log of %s ended early: %s", name, msg)
	}
	return nil
}

func (f LogFollow) query() url.Values {
	q := url.Values{"follow": {"true"}}
	if f.TailBytes > 0 {
		q.Set("tail_bytes", strconv.FormatInt(f.TailBytes, 10))
	}
	if f.Since != "" {
		q.Set("since", f.Since)
	}
	if f.Service != "" {
		q.Set("service", f.Service)
	}
	return q
}

// quietCancel drops an error caused by the caller ending ctx.
func quietCancel(ctx context.Context, err error) error {
	if ctx.Err() != nil {
		return nil
	}
	return err
}
