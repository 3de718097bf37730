package gateway_test

import (
	"bytes"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/encoding/protojson"

	"github.com/persys-dev/compute/api/persys/contract"
	persysv1 "github.com/persys-dev/compute/api/persys/v1"
	"github.com/persys-dev/compute/internal/gateway"
	"github.com/persys-dev/compute/internal/manifest"
	"github.com/persys-dev/compute/internal/pki"
	"github.com/persys-dev/compute/internal/runtime/sim"
	"github.com/persys-dev/compute/internal/testutil/callrec"
	"github.com/persys-dev/compute/internal/testutil/eventually"
	"github.com/persys-dev/compute/internal/testutil/realsched"
)

const webManifest = `
apiVersion: persys/v1
kind: Workload
metadata:
  name: web
  labels:
    app: web
spec:
  type: container
  container:
    image: example/web:1
  resources:
    cpu: 250m
    memory: 64Mi
`

// httpClient returns an HTTPS client presenting files' certificate.
func httpClient(t *testing.T, files pki.Files) *http.Client {
	t.Helper()
	cfg, err := pki.ClientTLS(files, "")
	if err != nil {
		t.Fatalf("client tls: %v", err)
	}
	tr := &http.Transport{TLSClientConfig: cfg}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr, Timeout: 30 * time.Second}
}

func call(t *testing.T, c *http.Client, method, url string, body []byte) (int, []byte) {
	t.Helper()
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequest(method, url, rd)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, data
}

func decodeErr(t *testing.T, data []byte) gateway.ErrorDetail {
	t.Helper()
	var body gateway.ErrorBody
	if err := json.Unmarshal(data, &body); err != nil {
		t.Fatalf("error body %q: %v", data, err)
	}
	return body.Error
}

func hasField(d gateway.ErrorDetail, field string) bool {
	for _, f := range d.Fields {
		if f.Field == field && f.Reason != "" {
			return true
		}
	}
	return false
}

// post applies a manifest as the admin and fails the test unless the
// gateway answers want.
func post(t *testing.T, c *http.Client, gw *realsched.Gateway, manifest string, want int) []byte {
	t.Helper()
	code, body := call(t, c, "POST", gw.Endpoint+"/v1/workloads", []byte(manifest))
	if code != want {
		t.Fatalf("apply: code %d, want %d; body %s", code, want, body)
	}
	return body
}

// waitView waits (through the gateway's wait route) until workload name
// is running or failed, and returns its view.
func waitView(t *testing.T, c *http.Client, gw *realsched.Gateway, name string) *persysv1.WorkloadView {
	t.Helper()
	code, body := call(t, c, "GET", gw.Endpoint+"/v1/workloads/"+name+"/wait?for=running&timeout=60s", nil)
	if code != http.StatusOK {
		t.Fatalf("wait for %s: code %d; body %s", name, code, body)
	}
	v := &persysv1.WorkloadView{}
	if err := contract.UnmarshalJSON(protojson.UnmarshalOptions{}, body, v); err != nil {
		t.Fatalf("decode %s: %v", body, err)
	}
	return v
}

func TestApplyCreatedThenUnchanged(t *testing.T) {
	shared.Forget(t, "web")
	c := httpClient(t, shared.Bundle.Admin)
	before := calls.Named("ApplyWorkload", "web")

	body := post(t, c, sharedGW, webManifest, http.StatusCreated)
	resp := &persysv1.ApplyResponse{}
	if err := contract.UnmarshalJSON(protojson.UnmarshalOptions{}, body, resp); err != nil {
		t.Fatalf("decode %s: %v", body, err)
	}
	if resp.GetResult() != "created" || resp.GetWorkload().GetWorkload().GetName() != "web" {
		t.Fatalf("first apply: %v", resp)
	}
	if got := resp.GetWorkload().GetWorkload().GetSpec().GetResources().GetMemoryBytes(); got != 64<<20 {
		t.Errorf("memory = %d, want %d", got, 64<<20)
	}
	// lowerCamel JSON names, enums by name.
	for _, want := range []string{`"cpuMillis"`, `"type":"CONTAINER"`, `"result":"created"`} {
		if !bytes.Contains(body, []byte(want)) {
			t.Errorf("body lacks %s: %s", want, body)
		}
	}

	// The same manifest as JSON: unchanged, 200.
	m, err := manifest.Parse([]byte(webManifest))
	if err != nil {
		t.Fatal(err)
	}
	js, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	body = post(t, c, sharedGW, string(js), http.StatusOK)
	if !bytes.Contains(body, []byte(`"result":"unchanged"`)) {
		t.Fatalf("second apply: body %s", body)
	}
	if n := calls.Named("ApplyWorkload", "web") - before; n != 2 {
		t.Errorf("ApplyWorkload calls = %d, want 2", n)
	}
}

func TestApplyRejectedBeforeScheduler(t *testing.T) {
	c := httpClient(t, shared.Bundle.Admin)
	before := len(calls.Calls("ApplyWorkload"))
	m := workload("rejected")

	tests := []struct {
		name      string
		body      []byte
		wantCode  int
		wantField string
		wantMsg   string
	}{
		{
			name:      "negative memory",
			body:      []byte(strings.Replace(m, "memory: 64Mi", "memory: -1Mi", 1)),
			wantCode:  http.StatusBadRequest,
			wantField: "spec.resources.memory",
		},
		{
			name:      "unknown key",
			body:      []byte(strings.Replace(m, "image: example/web:1", "image: example/web:1\n    imagee: x", 1)),
			wantCode:  http.StatusBadRequest,
			wantField: "spec.container.imagee",
		},
		{
			name:     "empty body",
			body:     []byte{},
			wantCode: http.StatusBadRequest,
			wantMsg:  "empty",
		},
		{
			name:     "oversized body",
			body:     append([]byte(m+"#"), bytes.Repeat([]byte("x"), manifest.MaxSize)...),
			wantCode: http.StatusRequestEntityTooLarge,
			wantMsg:  "larger than the limit of 1048576 bytes",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, body := call(t, c, "POST", sharedGW.Endpoint+"/v1/workloads", tt.body)
			if code != tt.wantCode {
				t.Fatalf("code %d, want %d; body %s", code, tt.wantCode, body)
			}
			d := decodeErr(t, body)
			if d.Code != tt.wantCode {
				t.Errorf("error.code %d, want %d", d.Code, tt.wantCode)
			}
			if tt.wantField != "" && !hasField(d, tt.wantField) {
				t.Errorf("fields %+v lack %s", d.Fields, tt.wantField)
			}
			if tt.wantMsg != "" && !strings.Contains(d.Message, tt.wantMsg) {
				t.Errorf("message %q lacks %q", d.Message, tt.wantMsg)
			}
		})
	}
	if n := len(calls.Calls("ApplyWorkload")) - before; n != 0 {
		t.Errorf("the scheduler was called %d times for invalid input", n)
	}
}

// TestSchedulerRefusalNamesField: what only the scheduler can check (a
// compose file's content) comes back as 400 with the scheduler's field.
// The mapping of every gRPC code is TestHTTPStatus and TestErrorDetail.
func TestSchedulerRefusalNamesField(t *testing.T) {
	c := httpClient(t, shared.Bundle.Admin)
	before := calls.Named("ApplyWorkload", "badcompose")
	code, body := call(t, c, "POST", sharedGW.Endpoint+"/v1/workloads", []byte(badCompose("badcompose")))
	if code != http.StatusBadRequest {
		t.Fatalf("code %d, body %s", code, body)
	}
	d := decodeErr(t, body)
	if len(d.Fields) == 0 || !strings.HasPrefix(d.Fields[0].Field, "spec.compose.inline") || d.Fields[0].Reason == "" {
		t.Errorf("fields %+v, want one under spec.compose.inline", d.Fields)
	}
	if n := calls.Named("ApplyWorkload", "badcompose") - before; n != 1 {
		t.Errorf("ApplyWorkload calls for badcompose = %d, want 1: the scheduler refused it", n)
	}
}

// badCompose is a compose workload whose inline file is no compose file.
func badCompose(name string) string {
	return "kind: Workload\nmetadata: {name: " + name + "}\nspec:\n  type: compose\n  compose:\n    inline: 'services: [not, a, map]'\n"
}

func TestNotFoundAndUnknownRoutes(t *testing.T) {
	c := httpClient(t, shared.Bundle.Admin)

	tests := []struct {
		name, method, path string
		want               int
	}{
		{"missing workload", "GET", "/v1/workloads/nope", http.StatusNotFound},
		{"missing node", "GET", "/v1/nodes/nope", http.StatusNotFound},
		{"delete missing", "DELETE", "/v1/workloads/nope", http.StatusNotFound},
		{"unknown route", "GET", "/v1/nothing", http.StatusNotFound},
		{"wrong method", "PUT", "/v1/workloads", http.StatusMethodNotAllowed},
		{"bad selector", "GET", "/v1/workloads?selector=novalue", http.StatusBadRequest},
		{"bad limit", "GET", "/v1/events?limit=-3", http.StatusBadRequest},
		{"bad events flag", "GET", "/v1/workloads/x?events=maybe", http.StatusBadRequest},
		{"bad wait condition", "GET", "/v1/workloads/x/wait?for=happy", http.StatusBadRequest},
		{"bad wait timeout", "GET", "/v1/workloads/x/wait?timeout=soon", http.StatusBadRequest},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, body := call(t, c, tt.method, sharedGW.Endpoint+tt.path, nil)
			if code != tt.want {
				t.Fatalf("code %d, want %d; body %s", code, tt.want, body)
			}
			d := decodeErr(t, body)
			if d.Code != tt.want || d.Message == "" {
				t.Errorf("error body %+v", d)
			}
			if tt.want == http.StatusBadRequest && len(d.Fields) != 1 {
				t.Errorf("want one field error, got %+v", d.Fields)
			}
		})
	}
}

// eventsOf decodes a ListEventsResponse body.
func eventsOf(t *testing.T, body []byte) []*persysv1.Event {
	t.Helper()
	resp := &persysv1.ListEventsResponse{}
	if err := contract.UnmarshalJSON(protojson.UnmarshalOptions{}, body, resp); err != nil {
		t.Fatalf("decode %s: %v", body, err)
	}
	return resp.GetEvents()
}

func TestReadRoutes(t *testing.T) {
	shared.Forget(t, "reader")
	c := httpClient(t, shared.Bundle.Admin)
	post(t, c, sharedGW, workload("reader"), http.StatusCreated)
	if v := waitView(t, c, sharedGW, "reader"); v.GetStatus().GetState() != persysv1.ActualState_ACTUAL_STATE_RUNNING {
		t.Fatalf("reader: %v", v.GetStatus())
	}

	tests := []struct {
		name, path string
		want       []string
		wantNot    []string
	}{
		{"list", "/v1/workloads", []string{`"name":"reader"`}, nil},
		{"list selector match", "/v1/workloads?selector=app%3Dreader", []string{`"name":"reader"`}, nil},
		{"list selector miss", "/v1/workloads?selector=app%3Dnone", nil, []string{`"reader"`}},
		{"get", "/v1/workloads/reader", []string{`"name":"reader"`, `"state":"RUNNING"`, `"nodeId":"node-1"`}, []string{`"events"`}},
		{"get with events", "/v1/workloads/reader?events=true", []string{`"events"`, `"Created"`, `"Placed"`}, nil},
		{"nodes", "/v1/nodes", []string{`"id":"node-1"`, `"state":"READY"`}, nil},
		{"node", "/v1/nodes/node-1", []string{`"id":"node-1"`}, nil},
		{"summary", "/v1/cluster/summary", []string{`"nodesTotal":1`, `"nodesReady":1`}, nil},
		{"healthz", "/healthz", []string{"ok"}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, body := call(t, c, "GET", sharedGW.Endpoint+tt.path, nil)
			if code != http.StatusOK {
				t.Fatalf("code %d; body %s", code, body)
			}
			for _, w := range tt.want {
				if !bytes.Contains(body, []byte(w)) {
					t.Errorf("body lacks %s: %s", w, body)
				}
			}
			for _, w := range tt.wantNot {
				if bytes.Contains(body, []byte(w)) {
					t.Errorf("body has %s: %s", w, body)
				}
			}
		})
	}
	t.Run("events of one workload", func(t *testing.T) {
		code, body := call(t, c, "GET", sharedGW.Endpoint+"/v1/events?workload=reader", nil)
		evs := eventsOf(t, body)
		if code != http.StatusOK || len(evs) < 2 {
			t.Fatalf("code %d; body %s", code, body)
		}
		for _, e := range evs {
			if e.GetWorkload() != "reader" {
				t.Errorf("event of %q among reader's: %v", e.GetWorkload(), e)
			}
		}
	})
	t.Run("last event", func(t *testing.T) {
		code, body := call(t, c, "GET", sharedGW.Endpoint+"/v1/events?limit=1", nil)
		if evs := eventsOf(t, body); code != http.StatusOK || len(evs) != 1 {
			t.Fatalf("code %d, %d events, want 1; body %s", code, len(evs), body)
		}
	})
}

func TestDeleteAndRetry(t *testing.T) {
	shared.Forget(t, "retrier")
	c := httpClient(t, shared.Bundle.Admin)
	retries := calls.Named("RetryWorkload", "retrier")
	post(t, c, sharedGW, broken(workload("retrier")), http.StatusCreated)
	if v := waitView(t, c, sharedGW, "retrier"); v.GetStatus().GetReason() != persysv1.FailureReason_FAILURE_REASON_IMAGE_NOT_FOUND {
		t.Fatalf("retrier: %v", v.GetStatus())
	}
	code, body := call(t, c, "POST", sharedGW.Endpoint+"/v1/workloads/retrier/retry", nil)
	if code != http.StatusOK || !bytes.Contains(body, []byte(`"name":"retrier"`)) {
		t.Fatalf("retry: %d %s", code, body)
	}
	if n := calls.Named("RetryWorkload", "retrier") - retries; n != 1 {
		t.Errorf("RetryWorkload calls = %d, want 1", n)
	}
	// Events are written in batches, a moment after the call.
	eventually.Eventually(t, "a RetryRequested event", 10*time.Second, func() (bool, string) {
		code, body := call(t, c, "GET", sharedGW.Endpoint+"/v1/events?workload=retrier", nil)
		return code == http.StatusOK && bytes.Contains(body, []byte(`"RetryRequested"`)), fmt.Sprintf("%d %s", code, body)
	})
	if code, body := call(t, c, "DELETE", sharedGW.Endpoint+"/v1/workloads/retrier", nil); code != http.StatusAccepted {
		t.Fatalf("delete: %d %s", code, body)
	}
	if code, body := call(t, c, "GET", sharedGW.Endpoint+"/v1/workloads/retrier/wait?for=deleted&timeout=60s", nil); code != http.StatusOK {
		t.Fatalf("wait deleted: %d %s", code, body)
	}
	if code, _ := call(t, c, "GET", sharedGW.Endpoint+"/v1/workloads/retrier", nil); code != http.StatusNotFound {
		t.Fatalf("get after delete: %d", code)
	}
}

// waitResult is the answer of a wait request made in the background.
type waitResult struct {
	code int
	body []byte
	err  error
}

func startWait(c *http.Client, url string) <-chan waitResult {
	out := make(chan waitResult, 1)
	go func() {
		resp, err := c.Get(url)
		if err != nil {
			out <- waitResult{err: err}
			return
		}
		defer resp.Body.Close()
		body, err := io.ReadAll(resp.Body)
		out <- waitResult{code: resp.StatusCode, body: body, err: err}
	}()
	return out
}

// waitWatching waits until the scheduler has had want watches of name.
func waitWatching(t *testing.T, name string, want int) {
	t.Helper()
	eventually.Eventually(t, "the watch of "+name+" to start", 10*time.Second, eventually.True(func() bool {
		return calls.Named("WatchWorkload", name) >= want
	}))
}

// TestWaitFollowsStream: a wait follows the scheduler's stream through
// states that do not end it (PENDING, then a new revision being placed)
// to RUNNING of the new revision, without polling.
func TestWaitFollowsStream(t *testing.T) {
	shared.Forget(t, "follower")
	c := httpClient(t, shared.Bundle.Admin)
	post(t, c, sharedGW, workload("follower", unplaceable), http.StatusCreated)
	gets, watches := calls.Named("GetWorkload", "follower"), calls.Named("WatchWorkload", "follower")

	done := startWait(c, sharedGW.Endpoint+"/v1/workloads/follower/wait?for=running&timeout=60s")
	waitWatching(t, "follower", watches+1)
	select {
	case r := <-done:
		t.Fatalf("wait returned on PENDING: %d %s", r.code, r.body)
	default:
	}
	// Placeable now: revision 2 runs on node-1.
	post(t, c, sharedGW, workload("follower"), http.StatusOK)
	r := <-done
	if r.err != nil || r.code != http.StatusOK {
		t.Fatalf("wait: %v %d %s", r.err, r.code, r.body)
	}
	view := &persysv1.WorkloadView{}
	if err := contract.UnmarshalJSON(protojson.UnmarshalOptions{}, r.body, view); err != nil {
		t.Fatal(err)
	}
	if st := view.GetStatus(); st.GetState() != persysv1.ActualState_ACTUAL_STATE_RUNNING || st.GetRevision() != 2 || st.GetNodeId() != "node-1" {
		t.Errorf("status %v, want RUNNING at revision 2 on node-1", st)
	}
	if n := calls.Named("GetWorkload", "follower") - gets; n != 0 {
		t.Errorf("wait polled GetWorkload %d times", n)
	}
	if n := calls.Named("WatchWorkload", "follower") - watches; n != 1 {
		t.Errorf("%d watches, want 1", n)
	}
}

func TestWaitEnds(t *testing.T) {
	shared.Forget(t, "wait-failed", "wait-pending", "wait-gone")
	c := httpClient(t, shared.Bundle.Admin)

	t.Run("failed is terminal", func(t *testing.T) {
		post(t, c, sharedGW, broken(workload("wait-failed")), http.StatusCreated)
		code, body := call(t, c, "GET", sharedGW.Endpoint+"/v1/workloads/wait-failed/wait?for=running", nil)
		if code != http.StatusOK || !bytes.Contains(body, []byte(`"reason":"IMAGE_NOT_FOUND"`)) {
			t.Fatalf("wait: %d %s", code, body)
		}
	})
	t.Run("a failure older than the apply is not the answer", func(t *testing.T) {
		// wait-failed's revision 1 FAILED above; revision 2 fixes it. The
		// wait must not end on revision 1's status, which stays until the
		// agent reports on revision 2.
		post(t, c, sharedGW, workload("wait-failed"), http.StatusOK)
		code, body := call(t, c, "GET", sharedGW.Endpoint+"/v1/workloads/wait-failed/wait?for=running&timeout=60s", nil)
		if code != http.StatusOK || !bytes.Contains(body, []byte(`"state":"RUNNING"`)) || bytes.Contains(body, []byte("IMAGE_NOT_FOUND")) {
			t.Fatalf("wait after the fix: %d %s, want RUNNING without the old failure", code, body)
		}
		view := &persysv1.WorkloadView{}
		if err := contract.UnmarshalJSON(protojson.UnmarshalOptions{}, body, view); err != nil {
			t.Fatal(err)
		}
		if view.GetStatus().GetRevision() != 2 {
			t.Errorf("status of revision %d, want 2", view.GetStatus().GetRevision())
		}
	})
	t.Run("timeout answers 408 with the last view", func(t *testing.T) {
		post(t, c, sharedGW, workload("wait-pending", unplaceable), http.StatusCreated)
		code, body := call(t, c, "GET", sharedGW.Endpoint+"/v1/workloads/wait-pending/wait?for=running&timeout=200ms", nil)
		if code != http.StatusRequestTimeout || !bytes.Contains(body, []byte(`"state":"PENDING"`)) {
			t.Fatalf("wait: %d %s", code, body)
		}
	})
	t.Run("missing workload", func(t *testing.T) {
		code, body := call(t, c, "GET", sharedGW.Endpoint+"/v1/workloads/nope/wait", nil)
		if code != http.StatusNotFound {
			t.Fatalf("wait: %d %s", code, body)
		}
	})
	t.Run("deleted", func(t *testing.T) {
		post(t, c, sharedGW, workload("wait-gone"), http.StatusCreated)
		watches := calls.Named("WatchWorkload", "wait-gone")
		done := startWait(c, sharedGW.Endpoint+"/v1/workloads/wait-gone/wait?for=deleted&timeout=60s")
		waitWatching(t, "wait-gone", watches+1)
		if code, body := call(t, c, "DELETE", sharedGW.Endpoint+"/v1/workloads/wait-gone", nil); code != http.StatusAccepted {
			t.Fatalf("delete: %d %s", code, body)
		}
		r := <-done
		if r.err != nil || r.code != http.StatusOK {
			t.Fatalf("wait: %v %d %s", r.err, r.code, r.body)
		}
	})
}

func TestTLSRefusals(t *testing.T) {
	// A gateway of its own, whose log holds only these requests.
	var logs realsched.Buffer
	gw := shared.StartGateway(t, func(c *gateway.Config) { c.Logger = slog.New(slog.NewJSONHandler(&logs, nil)) })
	caOnly, err := pki.ClientTLS(shared.Bundle.Admin, "")
	if err != nil {
		t.Fatal(err)
	}
	other, err := pki.Bootstrap(t.TempDir(), nil, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	otherTLS, err := pki.ClientTLS(pki.Files{CA: shared.Bundle.CA, Cert: other.Admin.Cert, Key: other.Admin.Key}, "")
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		cfg  *tls.Config
	}{
		{"certificate of another CA", otherTLS},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := &http.Client{Transport: &http.Transport{TLSClientConfig: tt.cfg}, Timeout: 10 * time.Second}
			resp, err := c.Get(gw.Endpoint + "/healthz")
			if err == nil {
				resp.Body.Close()
				t.Fatalf("request succeeded with status %d", resp.StatusCode)
			}
		})
	}
	// As in production the gateway takes an API token instead of a
	// certificate: without either the handshake passes and a route
	// answers 401.
	t.Run("no client certificate", func(t *testing.T) {
		c := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: caOnly.RootCAs, MinVersion: tls.VersionTLS13}}, Timeout: 10 * time.Second}
		code, body := call(t, c, "GET", gw.Endpoint+"/v1/workloads", nil)
		if code != http.StatusUnauthorized {
			t.Fatalf("code %d, want 401; body %s", code, body)
		}
	})
	// The refused handshake never reached a handler.
	if strings.Contains(logs.String(), `"path":"/healthz"`) {
		t.Errorf("a refused client reached the handler: %s", logs.String())
	}
}

func TestRoles(t *testing.T) {
	shared.Forget(t, "roles-web", "roles-a", "roles-b")
	viewer := httpClient(t, shared.IssueUser(t, "rita", pki.RoleViewer))
	operator := httpClient(t, shared.IssueUser(t, "oscar", pki.RoleOperator))
	agent := httpClient(t, shared.IssueUser(t, "node-8", pki.RoleAgent))
	stream := []byte(manifestStream("roles-a", "roles-b"))
	applies := func() (int, int) {
		n := 0
		for _, c := range calls.Calls("ApplyWorkloads") {
			if items := c.Request.(*persysv1.ApplyWorkloadsRequest).GetItems(); len(items) > 0 && items[0].GetName() == "roles-a" {
				n++
			}
		}
		return calls.Named("ApplyWorkload", "roles-web"), n
	}
	one, many := applies()

	tests := []struct {
		name   string
		c      *http.Client
		method string
		path   string
		body   []byte
		want   int
	}{
		{"viewer may not apply", viewer, "POST", "/v1/workloads", []byte(workload("roles-web")), http.StatusForbidden},
		{"operator applies", operator, "POST", "/v1/workloads", []byte(workload("roles-web")), http.StatusCreated},
		{"viewer may not apply manifests", viewer, "POST", "/v1/manifests", stream, http.StatusForbidden},
		{"operator applies manifests", operator, "POST", "/v1/manifests", stream, http.StatusOK},
		{"viewer reads", viewer, "GET", "/v1/workloads/roles-web", nil, http.StatusOK},
		{"viewer may not delete", viewer, "DELETE", "/v1/workloads/roles-web", nil, http.StatusForbidden},
		{"agent may not read", agent, "GET", "/v1/workloads", nil, http.StatusForbidden},
		{"agent may check health", agent, "GET", "/healthz", nil, http.StatusOK},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, body := call(t, tt.c, tt.method, sharedGW.Endpoint+tt.path, tt.body)
			if code != tt.want {
				t.Fatalf("code %d, want %d; body %s", code, tt.want, body)
			}
		})
	}
	a, b := applies()
	if a-one != 1 {
		t.Errorf("ApplyWorkload calls = %d, want 1 (the viewer's must not reach the scheduler)", a-one)
	}
	if b-many != 1 {
		t.Errorf("ApplyWorkloads calls = %d, want 1 (the viewer's must not reach the scheduler)", b-many)
	}
}

func TestLogsAndMetrics(t *testing.T) {
	c := httpClient(t, shared.Bundle.Admin)
	call(t, c, "GET", sharedGW.Endpoint+"/v1/workloads/nope", nil)
	call(t, c, "GET", sharedGW.Endpoint+"/v1/nodes", nil)

	logs := shared.Logs()
	for _, want := range []string{`"path":"/v1/workloads/nope"`, `"status":404`, `"user":"admin"`, `"method":"GET"`, `"duration_ms"`} {
		if !strings.Contains(logs, want) {
			t.Errorf("logs lack %s:\n%s", want, logs)
		}
	}
	families, err := gwMetrics.Gather()
	if err != nil {
		t.Fatal(err)
	}
	found := map[string]bool{}
	for _, f := range families {
		for _, m := range f.GetMetric() {
			labels := map[string]string{}
			for _, l := range m.GetLabel() {
				labels[l.GetName()] = l.GetValue()
			}
			if f.GetName() == "persys_gateway_requests_total" {
				found[labels["route"]+" "+labels["code"]] = true
			}
			if f.GetName() == "persys_gateway_request_duration_seconds" {
				found["histogram "+labels["route"]] = true
			}
		}
	}
	for _, want := range []string{"GET /v1/workloads/{name} 404", "GET /v1/nodes 200", "histogram GET /v1/nodes"} {
		if !found[want] {
			t.Errorf("metrics lack %q; have %v", want, found)
		}
	}
}

func TestOpenAPIServed(t *testing.T) {
	c := httpClient(t, shared.Bundle.Admin)
	code, body := call(t, c, "GET", sharedGW.Endpoint+"/openapi.json", nil)
	if code != http.StatusOK {
		t.Fatalf("code %d", code)
	}
	var doc struct {
		OpenAPI    string         `json:"openapi"`
		Paths      map[string]any `json:"paths"`
		Components struct {
			Schemas map[string]any `json:"schemas"`
		} `json:"components"`
	}
	if err := json.Unmarshal(body, &doc); err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(doc.OpenAPI, "3.0") {
		t.Errorf("openapi %q", doc.OpenAPI)
	}
	for _, s := range []string{"WorkloadView", "Manifest", "Error", "Node", "ClusterSummary", "PlacementDecision", "DrainResponse", "LeaderInfo",
		"ServiceView", "ServiceManifest", "ScaleRequest", "RolloutHistoryResponse"} {
		if _, ok := doc.Components.Schemas[s]; !ok {
			t.Errorf("schema %s missing", s)
		}
	}
}

// nodeCluster is a real scheduler of its own with sim agents on node-1
// and node-2, a recorder of the calls that reach it and a gateway whose
// call timeout is one second: node tests cordon and drain.
type nodeCluster struct {
	rc    *realsched.Cluster
	gw    *realsched.Gateway
	calls *callrec.Recorder
}

func startNodeCluster(t *testing.T) *nodeCluster {
	t.Helper()
	rec := &callrec.Recorder{}
	rc := realsched.Start(t, realsched.Options{Nodes: []string{"node-1", "node-2"}, NoSecrets: true, ServerOptions: rec.ServerOptions()})
	rc.StartAgent(t, "node-1", sim.Options{})
	rc.StartAgent(t, "node-2", sim.Options{})
	gw := rc.StartGateway(t, func(c *gateway.Config) { c.CallTimeout = time.Second })
	return &nodeCluster{rc: rc, gw: gw, calls: rec}
}

// lastDrain is the last DrainNode call that reached the scheduler.
func (nc *nodeCluster) lastDrain(t *testing.T) (*persysv1.DrainRequest, time.Duration) {
	t.Helper()
	cs := nc.calls.Calls("DrainNode")
	if len(cs) == 0 {
		t.Fatal("no DrainNode call reached the scheduler")
	}
	last := cs[len(cs)-1]
	return last.Request.(*persysv1.DrainRequest), last.Left
}

func TestNodeRoutes(t *testing.T) {
	nc := startNodeCluster(t)
	c := httpClient(t, nc.rc.Bundle.Admin)
	url := nc.gw.Endpoint

	// With node-2 cordoned, web runs on node-1.
	code, body := call(t, c, "POST", url+"/v1/nodes/node-2/cordon", nil)
	if code != http.StatusOK || !bytes.Contains(body, []byte(`"cordoned":true`)) {
		t.Fatalf("cordon: %d %s", code, body)
	}
	post(t, c, nc.gw, webManifest, http.StatusCreated)
	if v := waitView(t, c, nc.gw, "web"); v.GetStatus().GetNodeId() != "node-1" {
		t.Fatalf("web: %v, want running on node-1", v.GetStatus())
	}
	// An incomplete drain is still 200; the body says what did not move.
	code, body = call(t, c, "POST", url+"/v1/nodes/node-1/drain?timeout=2s", nil)
	if code != http.StatusOK || bytes.Contains(body, []byte(`"complete":true`)) || !bytes.Contains(body, []byte(`"reason":"NO_FEASIBLE_NODE"`)) {
		t.Fatalf("incomplete drain: %d %s", code, body)
	}
	code, body = call(t, c, "POST", url+"/v1/nodes/node-2/uncordon", nil)
	if code != http.StatusOK || bytes.Contains(body, []byte(`"cordoned"`)) {
		t.Fatalf("uncordon: %d %s", code, body)
	}
	if code, _ := call(t, c, "POST", url+"/v1/nodes/nope/cordon", nil); code != http.StatusNotFound {
		t.Fatalf("cordon of a missing node: %d", code)
	}

	code, body = call(t, c, "POST", url+"/v1/nodes/node-1/drain?timeout=90s", nil)
	if code != http.StatusOK {
		t.Fatalf("drain: %d %s", code, body)
	}
	resp := &persysv1.DrainResponse{}
	if err := contract.UnmarshalJSON(protojson.UnmarshalOptions{}, body, resp); err != nil {
		t.Fatal(err)
	}
	if !resp.GetComplete() || !resp.GetNode().GetCordoned() {
		t.Fatalf("drain answer %v", resp)
	}
	// web may have moved already once node-2 could take it.
	for _, w := range resp.GetWorkloads() {
		if w.GetToNode() != "node-2" {
			t.Fatalf("drain moved %v, want to node-2", w)
		}
	}
	if v := waitView(t, c, nc.gw, "web"); v.GetStatus().GetNodeId() != "node-2" {
		t.Fatalf("web after the drain: %v", v.GetStatus())
	}
	req, left := nc.lastDrain(t)
	if req.GetTimeoutSeconds() != 90 {
		t.Errorf("timeout_seconds %d, want 90", req.GetTimeoutSeconds())
	}
	// The call's deadline is the drain timeout plus 10 s, not the 1 s
	// call timeout of this gateway.
	if left <= 90*time.Second || left > 100*time.Second {
		t.Errorf("drain call had %s left on arrival, want within (90s, 100s]", left)
	}

	checkDrainTimeouts(t, nc, c)

	code, body = call(t, c, "GET", url+"/v1/leader", nil)
	if code != http.StatusOK || !bytes.Contains(body, []byte(`"isLeader":true`)) {
		t.Fatalf("leader: %d %s", code, body)
	}
}

func TestNodeRouteRoles(t *testing.T) {
	nc := startNodeCluster(t)
	viewer := httpClient(t, nc.rc.IssueUser(t, "vera", pki.RoleViewer))
	operator := httpClient(t, nc.rc.IssueUser(t, "otto", pki.RoleOperator))
	tests := []struct {
		name   string
		c      *http.Client
		method string
		path   string
		want   int
	}{
		{"viewer may not cordon", viewer, "POST", "/v1/nodes/node-1/cordon", http.StatusForbidden},
		{"viewer may not uncordon", viewer, "POST", "/v1/nodes/node-1/uncordon", http.StatusForbidden},
		{"viewer may not drain", viewer, "POST", "/v1/nodes/node-1/drain", http.StatusForbidden},
		{"viewer reads the leader", viewer, "GET", "/v1/leader", http.StatusOK},
		{"operator cordons", operator, "POST", "/v1/nodes/node-1/cordon", http.StatusOK},
		{"operator uncordons", operator, "POST", "/v1/nodes/node-1/uncordon", http.StatusOK},
		{"operator drains", operator, "POST", "/v1/nodes/node-1/drain?timeout=5s", http.StatusOK},
		{"cordon is POST only", operator, "GET", "/v1/nodes/node-1/cordon", http.StatusMethodNotAllowed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, body := call(t, tt.c, tt.method, nc.gw.Endpoint+tt.path, nil)
			if code != tt.want {
				t.Fatalf("code %d, want %d; body %s", code, tt.want, body)
			}
		})
	}
	for _, m := range []string{"CordonNode", "UncordonNode", "DrainNode"} {
		if n := len(nc.calls.Calls(m)); n != 1 {
			t.Errorf("%s calls = %d, want 1 (the viewer's must not reach the scheduler)", m, n)
		}
	}
}

// checkDrainTimeouts checks that the drain timeout query reaches the
// scheduler as seconds with the call's deadline 10 s later, and that bad
// ones are refused before they reach it.
func checkDrainTimeouts(t *testing.T, nc *nodeCluster, c *http.Client) {
	t.Helper()
	timeouts := []struct {
		name  string
		query string
		want  int64
	}{
		{"default two minutes", "", 120},
		{"seconds", "?timeout=45", 45},
		{"rounded up", "?timeout=1500ms", 2},
		{"minutes", "?timeout=3m", 180},
	}
	for _, tt := range timeouts {
		t.Run("timeout "+tt.name, func(t *testing.T) {
			code, body := call(t, c, "POST", nc.gw.Endpoint+"/v1/nodes/node-1/drain"+tt.query, nil)
			if code != http.StatusOK {
				t.Fatalf("drain: %d %s", code, body)
			}
			req, left := nc.lastDrain(t)
			if req.GetTimeoutSeconds() != tt.want {
				t.Errorf("timeout_seconds %d, want %d", req.GetTimeoutSeconds(), tt.want)
			}
			if limit := time.Duration(tt.want)*time.Second + 10*time.Second; left <= time.Duration(tt.want)*time.Second || left > limit {
				t.Errorf("%s left on arrival, want within (%ds, %s]", left, tt.want, limit)
			}
		})
	}
	bad := []struct{ name, query string }{
		{"word", "?timeout=soon"},
		{"zero", "?timeout=0s"},
		{"negative", "?timeout=-5"},
		{"over an hour", "?timeout=2h"},
	}
	drains := len(nc.calls.Calls("DrainNode"))
	for _, tt := range bad {
		t.Run("bad timeout "+tt.name, func(t *testing.T) {
			code, body := call(t, c, "POST", nc.gw.Endpoint+"/v1/nodes/node-1/drain"+tt.query, nil)
			if code != http.StatusBadRequest || !hasField(decodeErr(t, body), "timeout") {
				t.Fatalf("drain%s: %d %s", tt.query, code, body)
			}
		})
	}
	if n := len(nc.calls.Calls("DrainNode")); n != drains {
		t.Errorf("invalid drains reached the scheduler")
	}
}
