package gateway_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/status"

	persysv1 "github.com/persys-dev/compute/api/persys/v1"
	"github.com/persys-dev/compute/api/persys/v1/persysv1grpc"
	"github.com/persys-dev/compute/internal/gateway"
	"github.com/persys-dev/compute/internal/pki"
	"github.com/persys-dev/compute/internal/runtime/sim"
	"github.com/persys-dev/compute/internal/scheduler"
	"github.com/persys-dev/compute/internal/scheduler/watchhub"
	"github.com/persys-dev/compute/internal/testutil/realsched"
)

// lineStream reads a watch stream line by line.
type lineStream struct {
	body io.ReadCloser
	sc   *bufio.Scanner
}

// openWatch starts a watch at url; it fails the test unless the answer
// is 200 with x-ndjson.
func openWatch(t *testing.T, ctx context.Context, c *http.Client, url string) *lineStream {
	t.Helper()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != "application/x-ndjson" {
		b, _ := io.ReadAll(resp.Body)
		_ = resp.Body.Close()
		t.Fatalf("GET %s: %d %s: %s", url, resp.StatusCode, resp.Header.Get("Content-Type"), b)
	}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 4<<20)
	return &lineStream{body: resp.Body, sc: sc}
}

func (s *lineStream) next(t *testing.T) gateway.WatchLine {
	t.Helper()
	if !s.sc.Scan() {
		t.Fatalf("watch stream ended: %v", s.sc.Err())
	}
	var l gateway.WatchLine
	if err := json.Unmarshal(s.sc.Bytes(), &l); err != nil {
		t.Fatalf("line %q: %v", s.sc.Text(), err)
	}
	return l
}

// streamClient is httpClient without the overall timeout (a watch lasts).
func streamClient(t *testing.T, files pki.Files) *http.Client {
	c := httpClient(t, files)
	c.Timeout = 0
	return c
}

// change is one PUT or DELETE as the test compares them.
type change struct {
	Rev   int64
	Index int32
	Type  string
	Name  string
	State string
}

func toChange(t *testing.T, l gateway.WatchLine) change {
	t.Helper()
	var v struct {
		Workload struct {
			Name string `json:"name"`
		} `json:"workload"`
		Status struct {
			State string `json:"state"`
		} `json:"status"`
	}
	if err := json.Unmarshal(l.Workload, &v); err != nil {
		t.Fatalf("workload %s: %v", l.Workload, err)
	}
	if l.Index == nil {
		t.Fatalf("%s line without index", l.Type)
	}
	return change{Rev: l.Revision, Index: *l.Index, Type: l.Type, Name: v.Workload.Name, State: v.Status.State}
}

// readUntilBookmark skips the snapshot.
func readUntilBookmark(t *testing.T, s *lineStream) gateway.WatchLine {
	t.Helper()
	for {
		if l := s.next(t); l.Type == "BOOKMARK" {
			return l
		} else if l.Type != "SNAPSHOT" {
			t.Fatalf("before the first bookmark: %+v", l)
		}
	}
}

// Watch while 100 workloads are created and deleted; one watcher stays
// connected, the other disconnects twice and resumes from the last
// position it read. Both see the same changes, in order, exactly once,
// and each workload's last change is its DELETE.
func TestWatchWorkloadsResumeExactlyOnce(t *testing.T) {
	const n = 100
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	c := streamClient(t, shared.Bundle.Admin)
	base := sharedGW.Endpoint + "/v1/workloads?watch=true&selector=suite%3Dwatch100"
	steady := openWatch(t, ctx, c, base)
	defer steady.body.Close()
	start := readUntilBookmark(t, steady)
	moving := openWatch(t, ctx, c, fmt.Sprintf("%s&since=%d", base, start.Revision))

	admin := httpClient(t, shared.Bundle.Admin)
	go func() {
		for i := range n {
			m := workload(fmt.Sprintf("w100-%03d", i))
			m = strings.Replace(m, "  labels:\n", "  labels:\n    suite: watch100\n", 1)
			_, _ = callCtx(ctx, admin, "POST", sharedGW.Endpoint+"/v1/workloads", []byte(m))
		}
		for i := range n {
			_, _ = callCtx(ctx, admin, "DELETE", fmt.Sprintf("%s/v1/workloads/w100-%03d", sharedGW.Endpoint, i), nil)
		}
	}()

	want := collect(t, steady, n, nil)
	var got []change
	reconnects := 0
	for {
		cut := 0
		if reconnects < 2 {
			cut = len(want) / 3 // leave mid-stream, twice
		}
		part := collect(t, moving, n-deleted(got), &cut)
		_ = moving.body.Close()
		got = append(got, part...)
		if deleted(got) == n {
			break
		}
		reconnects++
		last := got[len(got)-1]
		moving = openWatch(t, ctx, c, fmt.Sprintf("%s&since=%d&since_index=%d", base, last.Rev, last.Index))
	}
	if reconnects < 2 {
		t.Fatalf("the resuming watcher never disconnected (%d reconnects)", reconnects)
	}
	if len(got) != len(want) {
		t.Fatalf("resumed watcher saw %d changes, steady one %d", len(got), len(want))
	}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("change %d: resumed %+v, steady %+v", i, got[i], want[i])
		}
	}
	checkSequence(t, want, n)
}

func callCtx(ctx context.Context, c *http.Client, method, url string, body []byte) (int, error) {
	var rd io.Reader
	if body != nil {
		rd = strings.NewReader(string(body))
	}
	req, err := http.NewRequestWithContext(ctx, method, url, rd)
	if err != nil {
		return 0, err
	}
	resp, err := c.Do(req)
	if err != nil {
		return 0, err
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	_ = resp.Body.Close()
	return resp.StatusCode, nil
}

// collect reads PUT and DELETE lines until deletes more DELETEs, or,
// when cut is non-nil and positive, until *cut changes.
func collect(t *testing.T, s *lineStream, deletes int, cut *int) []change {
	t.Helper()
	var out []change
	for deleted(out) < deletes {
		if cut != nil && *cut > 0 && len(out) >= *cut {
			break
		}
		l := s.next(t)
		switch l.Type {
		case "PUT", "DELETE":
			out = append(out, toChange(t, l))
		case "BOOKMARK":
		default:
			t.Fatalf("unexpected line %+v", l)
		}
	}
	return out
}

func deleted(cs []change) int {
	n := 0
	for _, c := range cs {
		if c.Type == "DELETE" {
			n++
		}
	}
	return n
}

// checkSequence: positions strictly increase; every workload appears,
// ends with exactly one DELETE, and nothing follows it.
func checkSequence(t *testing.T, cs []change, n int) {
	t.Helper()
	gone := map[string]bool{}
	for i, c := range cs {
		if i > 0 {
			p := cs[i-1]
			if c.Rev < p.Rev || c.Rev == p.Rev && c.Index <= p.Index {
				t.Fatalf("change %d at %d.%d does not follow %d.%d", i, c.Rev, c.Index, p.Rev, p.Index)
			}
		}
		if gone[c.Name] {
			t.Fatalf("change %d: %s %s after its DELETE", i, c.Type, c.Name)
		}
		gone[c.Name] = c.Type == "DELETE"
	}
	if len(gone) != n {
		t.Fatalf("%d workloads seen, want %d", len(gone), n)
	}
}

// Errors the client can act on: an old position is 410 (list again),
// bad parameters are 400 naming the field, a slow reader is cut off with
// ResourceExhausted naming how far behind it fell, and an agent's
// identity may not watch at all.
func TestWatchRefusals(t *testing.T) {
	rc := realsched.Start(t, realsched.Options{Nodes: []string{"node-1"}, Config: func(c *scheduler.Config) {
		c.Watch = watchhub.Config{Buffer: 8}
	}})
	rc.StartAgent(t, "node-1", sim.Options{})
	gw := rc.StartGateway(t, nil)
	c := httpClient(t, rc.Bundle.Admin)

	tests := []struct {
		name, path string
		code       int
		field      string
	}{
		{"since not a number", "/v1/workloads?watch=true&since=abc", 400, "since"},
		{"since negative", "/v1/nodes?watch=true&since=-3", 400, "since"},
		{"since_index without since", "/v1/services?watch=true&since_index=2", 400, "since_index"},
		{"since_index negative", "/v1/events?follow=true&since=5&since_index=-1", 400, "since_index"},
		{"bad selector", "/v1/workloads?watch=true&selector=novalue", 400, "selector"},
		{"bad watch flag", "/v1/workloads?watch=maybe", 400, "watch"},
		{"bad follow flag", "/v1/events?follow=sometimes", 400, "follow"},
		{"compacted revision", "/v1/workloads?watch=true&since=1", 410, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, body := call(t, c, "GET", gw.Endpoint+tt.path, nil)
			if code != tt.code {
				t.Fatalf("code %d, want %d: %s", code, tt.code, body)
			}
			d := decodeErr(t, body)
			if tt.field != "" && !hasField(d, tt.field) {
				t.Errorf("fields %+v, want one naming %q", d.Fields, tt.field)
			}
			if tt.code == 410 && !strings.Contains(d.Message, "revision 1 is compacted") || tt.code == 410 && !strings.Contains(d.Message, "list again") {
				t.Errorf("message %q, want it to say revision 1 is compacted and to list again", d.Message)
			}
		})
	}

	t.Run("viewer watches as it lists", func(t *testing.T) {
		viewer := streamClient(t, rc.IssueUser(t, "watch-viewer", pki.RoleViewer))
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		s := openWatch(t, ctx, viewer, gw.Endpoint+"/v1/nodes?watch=true")
		defer s.body.Close()
		readUntilBookmark(t, s)
	})

	t.Run("nodes services and events stream", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		sc := streamClient(t, rc.Bundle.Admin)
		nodes := openWatch(t, ctx, sc, gw.Endpoint+"/v1/nodes?watch=true")
		defer nodes.body.Close()
		if l := nodes.next(t); l.Type != "SNAPSHOT" || !strings.Contains(string(l.Node), `"id":"node-1"`) || !strings.Contains(string(l.Node), `"state":"READY"`) {
			t.Fatalf("first node line %+v (node %s), want node-1 READY", l, l.Node)
		}
		svcs := openWatch(t, ctx, sc, gw.Endpoint+"/v1/services?watch=true")
		defer svcs.body.Close()
		readUntilBookmark(t, svcs)
		events := openWatch(t, ctx, sc, gw.Endpoint+"/v1/events?follow=true&type=Created")
		defer events.body.Close()
		readUntilBookmark(t, events)
		if code, body := call(t, c, "POST", gw.Endpoint+"/v1/services", []byte(serviceManifest)); code != http.StatusCreated {
			t.Fatalf("apply service: %d %s", code, body)
		}
		if l := nextChangeLine(t, svcs); l.Type != "PUT" || !strings.Contains(string(l.Service), `"name":"web"`) {
			t.Fatalf("service line %+v (service %s), want PUT of web", l, l.Service)
		}
		// The service's replicas are created: Created events, and only those.
		if l := nextChangeLine(t, events); l.Type != "PUT" || !strings.Contains(string(l.Event), `"type":"Created"`) {
			t.Fatalf("event line %+v (event %s), want a Created event", l, l.Event)
		}
	})

	t.Run("agent identity refused", func(t *testing.T) {
		agent := dialScheduler(t, rc, rc.Bundle.Agents["node-1"])
		st, err := agent.WatchWorkloads(context.Background(), &persysv1.WatchWorkloadsRequest{})
		if err == nil {
			_, err = st.Recv()
		}
		if status.Code(err) != codes.PermissionDenied {
			t.Fatalf("agent watch: %v, want PermissionDenied", err)
		}
	})

	t.Run("slow reader cut off", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		st, err := dialScheduler(t, rc, rc.Bundle.Admin).WatchWorkloads(ctx, &persysv1.WatchWorkloadsRequest{})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := st.Recv(); err != nil { // the bookmark after an empty list
			t.Fatal(err)
		}
		// Never read while hundreds of changes pass: gRPC's flow control
		// stops the sender, and the hub's buffer of 8 overflows.
		var docs []string
		for i := range 150 {
			docs = append(docs, workload(fmt.Sprintf("slow-%03d", i)))
		}
		if code, body := call(t, c, "POST", gw.Endpoint+"/v1/manifests", []byte(strings.Join(docs, "---\n"))); code != 200 {
			t.Fatalf("apply: %d %s", code, body)
		}
		for {
			_, err := st.Recv()
			if err == nil {
				continue
			}
			if status.Code(err) != codes.ResourceExhausted || !strings.Contains(status.Convert(err).Message(), "events behind") {
				t.Fatalf("slow watch ended with %v, want ResourceExhausted ... events behind", err)
			}
			break
		}
	})
}

// nextChangeLine skips bookmarks.
func nextChangeLine(t *testing.T, s *lineStream) gateway.WatchLine {
	t.Helper()
	for {
		if l := s.next(t); l.Type != "BOOKMARK" {
			return l
		}
	}
}

// dialScheduler connects to rc's scheduler as files, with a fixed
// 64 KiB flow-control window (no dynamic growth), so that a client that
// does not read stops the sender soon.
func dialScheduler(t *testing.T, rc *realsched.Cluster, files pki.Files) persysv1grpc.ControlServiceClient {
	t.Helper()
	cfg, err := pki.ClientTLS(files, "")
	if err != nil {
		t.Fatal(err)
	}
	conn, err := grpc.NewClient(rc.Addrs[0], grpc.WithTransportCredentials(credentials.NewTLS(cfg)),
		grpc.WithInitialWindowSize(64<<10), grpc.WithInitialConnWindowSize(64<<10))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	return persysv1grpc.NewControlServiceClient(conn)
}
