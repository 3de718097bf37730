package client

import (
	"context"
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
