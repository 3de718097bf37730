package qemu

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"time"
)

// qmpTimeout bounds one QMP or guest-agent exchange when the caller's
// context has no earlier deadline. QEMU serves one QMP client at a time, so
// every exchange opens, uses and closes its own connection quickly.
const qmpTimeout = 3 * time.Second

// qmpConn is a minimal QMP client over a unix socket: the greeting, the
// capabilities handshake and synchronous commands; asynchronous events are
// read and dropped while waiting for a command's answer.
type qmpConn struct {
	c   net.Conn
	dec *json.Decoder
}

type qmpError struct {
	Class string `json:"class"`
	Desc  string `json:"desc"`
}

func (e *qmpError) Error() string { return e.Class + ": " + e.Desc }

type qmpMessage struct {
	QMP    json.RawMessage `json:"QMP"`
	Return json.RawMessage `json:"return"`
	Error  *qmpError       `json:"error"`
	Event  string          `json:"event"`
}

func dialUnix(ctx context.Context, path string, timeout time.Duration) (net.Conn, error) {
	deadline := time.Now().Add(timeout)
	if d, ok := ctx.Deadline(); ok && d.Before(deadline) {
		deadline = d
	}
	var dialer net.Dialer
	dctx, cancel := context.WithDeadline(ctx, deadline)
	defer cancel()
	c, err := dialer.DialContext(dctx, "unix", path)
	if err != nil {
		return nil, err
	}
	if err := c.SetDeadline(deadline); err != nil {
		c.Close()
		return nil, err
	}
	return c, nil
}

// dialQMP connects and negotiates capabilities.
func dialQMP(ctx context.Context, path string) (*qmpConn, error) {
	c, err := dialUnix(ctx, path, qmpTimeout)
	if err != nil {
		return nil, fmt.Errorf("qmp: connect: %w", err)
	}
	q := &qmpConn{c: c, dec: json.NewDecoder(c)}
	var greet qmpMessage
	if err := q.dec.Decode(&greet); err != nil {
		c.Close()
		return nil, fmt.Errorf("qmp: greeting: %w", err)
	}
	if greet.QMP == nil {
		c.Close()
		return nil, errors.New("qmp: no greeting from QEMU")
	}
	if _, err := q.execute("qmp_capabilities", nil); err != nil {
		c.Close()
		return nil, err
	}
	return q, nil
}

func (q *qmpConn) Close() error { return q.c.Close() }

func (q *qmpConn) execute(cmd string, args any) (json.RawMessage, error) {
	req := map[string]any{"execute": cmd}
	if args != nil {
		req["arguments"] = args
	}
	if err := json.NewEncoder(q.c).Encode(req); err != nil {
		return nil, fmt.Errorf("qmp: %s: %w", cmd, err)
	}
	for {
		var m qmpMessage
		if err := q.dec.Decode(&m); err != nil {
			return nil, fmt.Errorf("qmp: %s: %w", cmd, err)
		}
		switch {
		case m.Event != "":
			continue
		case m.Error != nil:
			return nil, fmt.Errorf("qmp: %s: %w", cmd, m.Error)
		case m.Return != nil:
			return m.Return, nil
		}
	}
}

// qmpRun runs one command on a fresh connection.
func qmpRun(ctx context.Context, sock, cmd string, args any) (json.RawMessage, error) {
	q, err := dialQMP(ctx, sock)
	if err != nil {
		return nil, err
	}
	defer q.Close()
	return q.execute(cmd, args)
}

// qmpStatus returns query-status's "status" (running, paused, shutdown,
// guest-panicked, internal-error, ...).
func qmpStatus(ctx context.Context, sock string) (string, error) {
	raw, err := qmpRun(ctx, sock, "query-status", nil)
	if err != nil {
		return "", err
	}
	var st struct {
		Status string `json:"status"`
	}
	if err := json.Unmarshal(raw, &st); err != nil {
		return "", fmt.Errorf("qmp: query-status: %w", err)
	}
	return st.Status, nil
}

// guestAddresses asks a QEMU guest agent (if one runs in the guest) for
// its interfaces' addresses, loopback and link-local left out.
func guestAddresses(ctx context.Context, sock string, timeout time.Duration) ([]string, error) {
	c, err := dialUnix(ctx, sock, timeout)
	if err != nil {
		return nil, err
	}
	defer c.Close()
	dec := json.NewDecoder(c)
	enc := json.NewEncoder(c)
	id := time.Now().UnixNano() & 0x7fffffff
	if err := enc.Encode(map[string]any{"execute": "guest-sync", "arguments": map[string]any{"id": id}}); err != nil {
		return nil, err
	}
	for {
		var m struct {
			Return json.RawMessage `json:"return"`
			Error  *qmpError       `json:"error"`
		}
		if err := dec.Decode(&m); err != nil {
			return nil, err
		}
		if m.Error != nil {
			return nil, m.Error
		}
		var got int64
		if json.Unmarshal(m.Return, &got) == nil && got == id {
			break
		}
	}
	if err := enc.Encode(map[string]any{"execute": "guest-network-get-interfaces"}); err != nil {
		return nil, err
	}
	var resp struct {
		Return []struct {
			Name      string `json:"name"`
			Addresses []struct {
				Type    string `json:"ip-address-type"`
				Address string `json:"ip-address"`
			} `json:"ip-addresses"`
		} `json:"return"`
		Error *qmpError `json:"error"`
	}
	if err := dec.Decode(&resp); err != nil {
		return nil, err
	}
	if resp.Error != nil {
		return nil, resp.Error
	}
	var out []string
	for _, iface := range resp.Return {
		if iface.Name == "lo" {
			continue
		}
		for _, a := range iface.Addresses {
			ip := net.ParseIP(a.Address)
			if ip == nil || ip.IsLoopback() || ip.IsLinkLocalUnicast() {
				continue
			}
			out = append(out, ip.String())
		}
	}
	return out, nil
}
