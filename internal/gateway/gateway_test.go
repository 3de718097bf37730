package gateway_test

import (
	"bytes"
	"crypto/tls"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protojson"

	persysv1 "github.com/persys-dev/compute/api/persys/v1"
	"github.com/persys-dev/compute/internal/gateway"
	"github.com/persys-dev/compute/internal/gateway/gatewaytest"
	"github.com/persys-dev/compute/internal/manifest"
	"github.com/persys-dev/compute/internal/pki"
	"github.com/persys-dev/compute/internal/testutil/eventually"
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

func TestApplyCreatedThenUnchanged(t *testing.T) {
	env := gatewaytest.Start(t)
	c := httpClient(t, env.Bundle.Admin)

	code, body := call(t, c, "POST", env.Endpoint+"/v1/workloads", []byte(webManifest))
	if code != http.StatusCreated {
		t.Fatalf("first apply: code %d, body %s", code, body)
	}
	resp := &persysv1.ApplyResponse{}
	if err := protojson.Unmarshal(body, resp); err != nil {
		t.Fatalf("decode %s: %v", body, err)
	}
	if resp.GetResult() != "created" || resp.GetWorkload().GetWorkload().GetName() != "web" {
		t.Fatalf("first apply: %v", resp)
	}
	if got := resp.GetWorkload().GetWorkload().GetSpec().GetResources().GetMemoryBytes(); got != 64<<20 {
		t.Errorf("memory = %d, want %d", got, 64<<20)
	}
	// lowerCamel JSON names, enums by name.
	for _, want := range []string{`"cpuMillis"`, `"WORKLOAD_TYPE_CONTAINER"`, `"result":"created"`} {
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
	code, body = call(t, c, "POST", env.Endpoint+"/v1/workloads", js)
	if code != http.StatusOK || !bytes.Contains(body, []byte(`"result":"unchanged"`)) {
		t.Fatalf("second apply: code %d, body %s", code, body)
	}
	if n := env.Control.Calls("ApplyWorkload"); n != 2 {
		t.Errorf("ApplyWorkload calls = %d, want 2", n)
	}
}

func TestApplyRejectedBeforeScheduler(t *testing.T) {
	env := gatewaytest.Start(t)
	c := httpClient(t, env.Bundle.Admin)

	tests := []struct {
		name      string
		body      []byte
		wantCode  int
		wantField string
		wantMsg   string
	}{
		{
			name:      "negative memory",
			body:      []byte(strings.Replace(webManifest, "memory: 64Mi", "memory: -1Mi", 1)),
			wantCode:  http.StatusBadRequest,
			wantField: "spec.resources.memory",
		},
		{
			name:      "unknown key",
			body:      []byte(strings.Replace(webManifest, "image: example/web:1", "image: example/web:1\n    imagee: x", 1)),
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
			body:     append([]byte(webManifest+"#"), bytes.Repeat([]byte("x"), manifest.MaxSize)...),
			wantCode: http.StatusRequestEntityTooLarge,
			wantMsg:  "larger than the limit of 1048576 bytes",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, body := call(t, c, "POST", env.Endpoint+"/v1/workloads", tt.body)
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
	if n := env.Control.Calls("ApplyWorkload"); n != 0 {
		t.Errorf("the scheduler was called %d times for invalid input", n)
	}
}

func TestSchedulerErrorsMapped(t *testing.T) {
	env := gatewaytest.Start(t)
	c := httpClient(t, env.Bundle.Admin)

	st, err := status.New(codes.InvalidArgument, "invalid manifest: spec.resources.cpu: exceeds every node").
		WithDetails(&errdetails.BadRequest{FieldViolations: []*errdetails.BadRequest_FieldViolation{
			{Field: "spec.resources.cpu", Description: "exceeds every node"},
		}})
	if err != nil {
		t.Fatal(err)
	}
	env.Control.SetError("ApplyWorkload", st.Err())
	code, body := call(t, c, "POST", env.Endpoint+"/v1/workloads", []byte(webManifest))
	if code != http.StatusBadRequest {
		t.Fatalf("code %d, body %s", code, body)
	}
	if d := decodeErr(t, body); !hasField(d, "spec.resources.cpu") {
		t.Errorf("fields %+v lack spec.resources.cpu", d.Fields)
	}

	tests := []struct {
		name string
		code codes.Code
		want int
	}{
		{"already exists", codes.AlreadyExists, http.StatusConflict},
		{"aborted", codes.Aborted, http.StatusConflict},
		{"failed precondition", codes.FailedPrecondition, http.StatusConflict},
		{"unavailable", codes.Unavailable, http.StatusServiceUnavailable},
		{"deadline", codes.DeadlineExceeded, http.StatusGatewayTimeout},
		{"permission", codes.PermissionDenied, http.StatusForbidden},
		{"unauthenticated", codes.Unauthenticated, http.StatusUnauthorized},
		{"internal", codes.Internal, http.StatusInternalServerError},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			env.Control.SetError("ListNodes", status.Error(tt.code, "boom"))
			code, body := call(t, c, "GET", env.Endpoint+"/v1/nodes", nil)
			if code != tt.want || decodeErr(t, body).Code != tt.want {
				t.Errorf("code %d, want %d; body %s", code, tt.want, body)
			}
		})
	}
}

func TestNotFoundAndUnknownRoutes(t *testing.T) {
	env := gatewaytest.Start(t)
	c := httpClient(t, env.Bundle.Admin)

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
			code, body := call(t, c, tt.method, env.Endpoint+tt.path, nil)
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

func TestReadRoutes(t *testing.T) {
	env := gatewaytest.Start(t)
	c := httpClient(t, env.Bundle.Admin)
	env.Control.AddNode(&persysv1.Node{Id: "node-1", State: persysv1.NodeState_NODE_STATE_READY})
	env.Control.AddEvent(&persysv1.Event{Type: "Placed", Workload: "web", NodeId: "node-1"})
	env.Control.AddEvent(&persysv1.Event{Type: "Applied", Workload: "web", NodeId: "node-1"})
	env.Control.AddEvent(&persysv1.Event{Type: "Placed", Workload: "db", NodeId: "node-1"})
	env.Control.SetSummary(&persysv1.ClusterSummary{NodesTotal: 1, NodesReady: 1, Leader: "scheduler"})
	if code, body := call(t, c, "POST", env.Endpoint+"/v1/workloads", []byte(webManifest)); code != http.StatusCreated {
		t.Fatalf("apply: %d %s", code, body)
	}

	tests := []struct {
		name, path string
		want       []string
		wantNot    []string
	}{
		{"list", "/v1/workloads", []string{`"name":"web"`}, nil},
		{"list selector match", "/v1/workloads?selector=app%3Dweb", []string{`"name":"web"`}, nil},
		{"list selector miss", "/v1/workloads?selector=app%3Ddb", nil, []string{`"web"`}},
		{"get", "/v1/workloads/web", []string{`"name":"web"`}, []string{`"events"`}},
		{"get with events", "/v1/workloads/web?events=true", []string{`"events"`, `"Applied"`}, nil},
		{"nodes", "/v1/nodes", []string{`"id":"node-1"`, `"NODE_STATE_READY"`}, nil},
		{"node", "/v1/nodes/node-1", []string{`"id":"node-1"`}, nil},
		{"summary", "/v1/cluster/summary", []string{`"nodesTotal":1`, `"leader":"scheduler"`}, nil},
		{"events of web", "/v1/events?workload=web", []string{`"Applied"`}, []string{`"db"`}},
		{"last event", "/v1/events?limit=1", []string{`"db"`}, []string{`"web"`}},
		{"healthz", "/healthz", []string{"ok"}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, body := call(t, c, "GET", env.Endpoint+tt.path, nil)
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
}

func TestDeleteAndRetry(t *testing.T) {
	env := gatewaytest.Start(t)
	c := httpClient(t, env.Bundle.Admin)
	if code, body := call(t, c, "POST", env.Endpoint+"/v1/workloads", []byte(webManifest)); code != http.StatusCreated {
		t.Fatalf("apply: %d %s", code, body)
	}
	// Retry of a workload that did not fail: the scheduler's
	// FailedPrecondition becomes 409.
	if code, body := call(t, c, "POST", env.Endpoint+"/v1/workloads/web/retry", nil); code != http.StatusConflict {
		t.Fatalf("retry of pending: %d %s", code, body)
	}
	if err := env.Control.SetStatus("web", &persysv1.WorkloadStatus{State: persysv1.ActualState_ACTUAL_STATE_FAILED, Reason: persysv1.FailureReason_FAILURE_REASON_IMAGE_NOT_FOUND}); err != nil {
		t.Fatal(err)
	}
	code, body := call(t, c, "POST", env.Endpoint+"/v1/workloads/web/retry", nil)
	if code != http.StatusOK || !bytes.Contains(body, []byte("ACTUAL_STATE_PENDING")) {
		t.Fatalf("retry: %d %s", code, body)
	}
	if code, body := call(t, c, "DELETE", env.Endpoint+"/v1/workloads/web", nil); code != http.StatusAccepted {
		t.Fatalf("delete: %d %s", code, body)
	}
	if code, _ := call(t, c, "GET", env.Endpoint+"/v1/workloads/web", nil); code != http.StatusNotFound {
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

func TestWaitFollowsStream(t *testing.T) {
	env := gatewaytest.Start(t)
	c := httpClient(t, env.Bundle.Admin)
	if code, body := call(t, c, "POST", env.Endpoint+"/v1/workloads", []byte(webManifest)); code != http.StatusCreated {
		t.Fatalf("apply: %d %s", code, body)
	}

	done := startWait(c, env.Endpoint+"/v1/workloads/web/wait?for=running&timeout=60s")
	eventually.Eventually(t, "the watch to start", 10*time.Second, eventually.True(func() bool { return env.Control.Calls("WatchWorkload") == 1 }))
	// An intermediate state does not end the wait.
	if err := env.Control.SetStatus("web", &persysv1.WorkloadStatus{State: persysv1.ActualState_ACTUAL_STATE_CREATING, NodeId: "node-1", Revision: 1}); err != nil {
		t.Fatal(err)
	}
	select {
	case r := <-done:
		t.Fatalf("wait returned on CREATING: %d %s", r.code, r.body)
	default:
	}
	if err := env.Control.SetStatus("web", &persysv1.WorkloadStatus{State: persysv1.ActualState_ACTUAL_STATE_RUNNING, NodeId: "node-1", Revision: 1}); err != nil {
		t.Fatal(err)
	}
	r := <-done
	if r.err != nil || r.code != http.StatusOK {
		t.Fatalf("wait: %v %d %s", r.err, r.code, r.body)
	}
	view := &persysv1.WorkloadView{}
	if err := protojson.Unmarshal(r.body, view); err != nil {
		t.Fatal(err)
	}
	if view.GetStatus().GetState() != persysv1.ActualState_ACTUAL_STATE_RUNNING {
		t.Errorf("state %v, want RUNNING", view.GetStatus().GetState())
	}
	if n := env.Control.Calls("GetWorkload"); n != 0 {
		t.Errorf("wait polled GetWorkload %d times", n)
	}
}

func TestWaitEnds(t *testing.T) {
	env := gatewaytest.Start(t)
	c := httpClient(t, env.Bundle.Admin)
	if code, body := call(t, c, "POST", env.Endpoint+"/v1/workloads", []byte(webManifest)); code != http.StatusCreated {
		t.Fatalf("apply: %d %s", code, body)
	}

	t.Run("failed is terminal", func(t *testing.T) {
		if err := env.Control.SetStatus("web", &persysv1.WorkloadStatus{State: persysv1.ActualState_ACTUAL_STATE_FAILED, Reason: persysv1.FailureReason_FAILURE_REASON_IMAGE_NOT_FOUND, Message: "no such image"}); err != nil {
			t.Fatal(err)
		}
		code, body := call(t, c, "GET", env.Endpoint+"/v1/workloads/web/wait?for=running", nil)
		if code != http.StatusOK || !bytes.Contains(body, []byte("FAILURE_REASON_IMAGE_NOT_FOUND")) {
			t.Fatalf("wait: %d %s", code, body)
		}
	})
	t.Run("timeout answers 408 with the last view", func(t *testing.T) {
		if err := env.Control.SetStatus("web", &persysv1.WorkloadStatus{State: persysv1.ActualState_ACTUAL_STATE_PENDING}); err != nil {
			t.Fatal(err)
		}
		code, body := call(t, c, "GET", env.Endpoint+"/v1/workloads/web/wait?for=running&timeout=200ms", nil)
		if code != http.StatusRequestTimeout || !bytes.Contains(body, []byte("ACTUAL_STATE_PENDING")) {
			t.Fatalf("wait: %d %s", code, body)
		}
	})
	t.Run("missing workload", func(t *testing.T) {
		code, body := call(t, c, "GET", env.Endpoint+"/v1/workloads/nope/wait", nil)
		if code != http.StatusNotFound {
			t.Fatalf("wait: %d %s", code, body)
		}
	})
	t.Run("deleted", func(t *testing.T) {
		calls := env.Control.Calls("WatchWorkload")
		done := startWait(c, env.Endpoint+"/v1/workloads/web/wait?for=deleted&timeout=60s")
		eventually.Eventually(t, "the watch to start", 10*time.Second, eventually.True(func() bool { return env.Control.Calls("WatchWorkload") == calls+1 }))
		env.Control.Remove("web")
		r := <-done
		if r.err != nil || r.code != http.StatusOK {
			t.Fatalf("wait: %v %d %s", r.err, r.code, r.body)
		}
	})
}

func TestTLSRefusals(t *testing.T) {
	env := gatewaytest.Start(t)
	caOnly, err := pki.ClientTLS(env.Bundle.Admin, "")
	if err != nil {
		t.Fatal(err)
	}
	other, err := pki.Bootstrap(t.TempDir(), nil, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	otherTLS, err := pki.ClientTLS(pki.Files{CA: env.Bundle.CA, Cert: other.Admin.Cert, Key: other.Admin.Key}, "")
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		cfg  *tls.Config
	}{
		{"no client certificate", &tls.Config{RootCAs: caOnly.RootCAs, MinVersion: tls.VersionTLS13}},
		{"certificate of another CA", otherTLS},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := &http.Client{Transport: &http.Transport{TLSClientConfig: tt.cfg}, Timeout: 10 * time.Second}
			resp, err := c.Get(env.Endpoint + "/healthz")
			if err == nil {
				resp.Body.Close()
				t.Fatalf("request succeeded with status %d", resp.StatusCode)
			}
		})
	}
	// The refused handshakes never reached a handler.
	if strings.Contains(env.Logs(), `"path":"/healthz"`) {
		t.Errorf("a refused client reached the handler: %s", env.Logs())
	}
}

func TestRoles(t *testing.T) {
	env := gatewaytest.Start(t)
	viewer := httpClient(t, env.IssueUser(t, "vera", pki.RoleViewer))
	operator := httpClient(t, env.IssueUser(t, "otto", pki.RoleOperator))
	agent := httpClient(t, env.IssueUser(t, "node-9", pki.RoleAgent))

	tests := []struct {
		name   string
		c      *http.Client
		method string
		path   string
		body   []byte
		want   int
	}{
		{"viewer may not apply", viewer, "POST", "/v1/workloads", []byte(webManifest), http.StatusForbidden},
		{"operator applies", operator, "POST", "/v1/workloads", []byte(webManifest), http.StatusCreated},
		{"viewer may not apply manifests", viewer, "POST", "/v1/manifests", []byte(manifestStream("web", "db")), http.StatusForbidden},
		{"operator applies manifests", operator, "POST", "/v1/manifests", []byte(manifestStream("web", "db")), http.StatusOK},
		{"viewer reads", viewer, "GET", "/v1/workloads/web", nil, http.StatusOK},
		{"viewer may not delete", viewer, "DELETE", "/v1/workloads/web", nil, http.StatusForbidden},
		{"agent may not read", agent, "GET", "/v1/workloads", nil, http.StatusForbidden},
		{"agent may check health", agent, "GET", "/healthz", nil, http.StatusOK},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, body := call(t, tt.c, tt.method, env.Endpoint+tt.path, tt.body)
			if code != tt.want {
				t.Fatalf("code %d, want %d; body %s", code, tt.want, body)
			}
		})
	}
	if n := env.Control.Calls("ApplyWorkload"); n != 1 {
		t.Errorf("ApplyWorkload calls = %d, want 1 (the viewer's must not reach the scheduler)", n)
	}
	if n := env.Control.Calls("ApplyWorkloads"); n != 1 {
		t.Errorf("ApplyWorkloads calls = %d, want 1 (the viewer's must not reach the scheduler)", n)
	}
}

func TestLogsAndMetrics(t *testing.T) {
	env := gatewaytest.Start(t)
	c := httpClient(t, env.Bundle.Admin)
	call(t, c, "GET", env.Endpoint+"/v1/workloads/nope", nil)
	call(t, c, "GET", env.Endpoint+"/v1/nodes", nil)

	logs := env.Logs()
	for _, want := range []string{`"path":"/v1/workloads/nope"`, `"status":404`, `"user":"admin"`, `"method":"GET"`, `"duration_ms"`} {
		if !strings.Contains(logs, want) {
			t.Errorf("logs lack %s:\n%s", want, logs)
		}
	}
	families, err := env.Registry.Gather()
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
	env := gatewaytest.Start(t)
	c := httpClient(t, env.Bundle.Admin)
	code, body := call(t, c, "GET", env.Endpoint+"/openapi.json", nil)
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

func TestNodeRoutes(t *testing.T) {
	env := gatewaytest.StartWith(t, gatewaytest.Options{CallTimeout: time.Second})
	c := httpClient(t, env.Bundle.Admin)
	env.Control.AddNode(&persysv1.Node{Id: "node-1", State: persysv1.NodeState_NODE_STATE_READY})
	env.Control.AddNode(&persysv1.Node{Id: "node-2", State: persysv1.NodeState_NODE_STATE_READY})
	if code, body := call(t, c, "POST", env.Endpoint+"/v1/workloads", []byte(webManifest)); code != http.StatusCreated {
		t.Fatalf("apply: %d %s", code, body)
	}
	if err := env.Control.SetStatus("web", &persysv1.WorkloadStatus{State: persysv1.ActualState_ACTUAL_STATE_RUNNING, NodeId: "node-1", Revision: 1}); err != nil {
		t.Fatal(err)
	}

	code, body := call(t, c, "POST", env.Endpoint+"/v1/nodes/node-2/cordon", nil)
	if code != http.StatusOK || !bytes.Contains(body, []byte(`"cordoned":true`)) {
		t.Fatalf("cordon: %d %s", code, body)
	}
	code, body = call(t, c, "POST", env.Endpoint+"/v1/nodes/node-2/uncordon", nil)
	if code != http.StatusOK || bytes.Contains(body, []byte(`"cordoned"`)) {
		t.Fatalf("uncordon: %d %s", code, body)
	}
	if code, _ := call(t, c, "POST", env.Endpoint+"/v1/nodes/nope/cordon", nil); code != http.StatusNotFound {
		t.Fatalf("cordon of a missing node: %d", code)
	}

	code, body = call(t, c, "POST", env.Endpoint+"/v1/nodes/node-1/drain?timeout=90s", nil)
	if code != http.StatusOK {
		t.Fatalf("drain: %d %s", code, body)
	}
	resp := &persysv1.DrainResponse{}
	if err := protojson.Unmarshal(body, resp); err != nil {
		t.Fatal(err)
	}
	if !resp.GetComplete() || len(resp.GetWorkloads()) != 1 || resp.GetWorkloads()[0].GetToNode() != "node-2" || !resp.GetNode().GetCordoned() {
		t.Fatalf("drain answer %v", resp)
	}
	req, left := env.Control.LastDrain()
	if req.GetTimeoutSeconds() != 90 {
		t.Errorf("timeout_seconds %d, want 90", req.GetTimeoutSeconds())
	}
	// The call's deadline is the drain timeout plus 10 s, not the 1 s
	// call timeout of this gateway.
	if left <= 90*time.Second || left > 100*time.Second {
		t.Errorf("drain call had %s left on arrival, want within (90s, 100s]", left)
	}

	// An incomplete drain is still 200; the body says what did not move.
	code, body = call(t, c, "POST", env.Endpoint+"/v1/nodes/node-2/drain", nil)
	if code != http.StatusOK || bytes.Contains(body, []byte(`"complete":true`)) || !bytes.Contains(body, []byte("FAILURE_REASON_NO_FEASIBLE_NODE")) {
		t.Fatalf("incomplete drain: %d %s", code, body)
	}

	checkDrainTimeouts(t, env, c)

	code, body = call(t, c, "GET", env.Endpoint+"/v1/leader", nil)
	if code != http.StatusOK || !bytes.Contains(body, []byte(`"isLeader":true`)) || !bytes.Contains(body, []byte(env.Control.Addr())) {
		t.Fatalf("leader: %d %s", code, body)
	}
}

func TestNodeRouteRoles(t *testing.T) {
	env := gatewaytest.Start(t)
	env.Control.AddNode(&persysv1.Node{Id: "node-1", State: persysv1.NodeState_NODE_STATE_READY})
	viewer := httpClient(t, env.IssueUser(t, "vera", pki.RoleViewer))
	operator := httpClient(t, env.IssueUser(t, "otto", pki.RoleOperator))
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
			code, body := call(t, tt.c, tt.method, env.Endpoint+tt.path, nil)
			if code != tt.want {
				t.Fatalf("code %d, want %d; body %s", code, tt.want, body)
			}
		})
	}
	for _, m := range []string{"CordonNode", "UncordonNode", "DrainNode"} {
		if n := env.Control.Calls(m); n != 1 {
			t.Errorf("%s calls = %d, want 1 (the viewer's must not reach the scheduler)", m, n)
		}
	}
}

// checkDrainTimeouts checks that the drain timeout query reaches the
// scheduler as seconds with the call's deadline 10 s later, and that bad
// ones are refused before they reach it.
func checkDrainTimeouts(t *testing.T, env *gatewaytest.Env, c *http.Client) {
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
			code, body := call(t, c, "POST", env.Endpoint+"/v1/nodes/node-1/drain"+tt.query, nil)
			if code != http.StatusOK {
				t.Fatalf("drain: %d %s", code, body)
			}
			req, left := env.Control.LastDrain()
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
	calls := env.Control.Calls("DrainNode")
	for _, tt := range bad {
		t.Run("bad timeout "+tt.name, func(t *testing.T) {
			code, body := call(t, c, "POST", env.Endpoint+"/v1/nodes/node-1/drain"+tt.query, nil)
			if code != http.StatusBadRequest || !hasField(decodeErr(t, body), "timeout") {
				t.Fatalf("drain%s: %d %s", tt.query, code, body)
			}
		})
	}
	if n := env.Control.Calls("DrainNode"); n != calls {
		t.Errorf("invalid drains reached the scheduler")
	}

}
