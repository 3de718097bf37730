package gateway_test

import (
	"bytes"
	"fmt"
	"net/http"
	"strings"
	"testing"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protojson"

	"github.com/persys-dev/compute/api/persys/contract"
	persysv1 "github.com/persys-dev/compute/api/persys/v1"
	"github.com/persys-dev/compute/internal/gateway/gatewaytest"
	"github.com/persys-dev/compute/internal/manifest"
)

// manifestStream is one container workload document per name, joined with
// --- lines.
func manifestStream(names ...string) string {
	docs := make([]string, len(names))
	for i, n := range names {
		docs[i] = strings.Replace(webManifest, "name: web", "name: "+n, 1)
	}
	return strings.Join(docs, "---\n")
}

func decodeResults(t *testing.T, body []byte) []*persysv1.ApplyResult {
	t.Helper()
	resp := &persysv1.ApplyWorkloadsResponse{}
	if err := contract.UnmarshalJSON(protojson.UnmarshalOptions{}, body, resp); err != nil {
		t.Fatalf("decode %s: %v", body, err)
	}
	return resp.GetResults()
}

func TestApplyManifests(t *testing.T) {
	env := gatewaytest.Start(t)
	c := httpClient(t, env.Bundle.Admin)
	url := env.Endpoint + "/v1/manifests"

	code, body := call(t, c, "POST", url, []byte(manifestStream("web", "db", "cache")))
	if code != http.StatusOK {
		t.Fatalf("code %d, body %s", code, body)
	}
	results := decodeResults(t, body)
	if len(results) != 3 {
		t.Fatalf("%d results, want 3: %s", len(results), body)
	}
	for i, want := range []string{"web", "db", "cache"} {
		r := results[i]
		if r.GetName() != want || r.GetResult() != "created" || r.GetErrorCode() != 0 || r.GetWorkload().GetWorkload().GetName() != want {
			t.Errorf("results[%d] = %v, want %s created", i, r, want)
		}
	}
	if n := env.Control.Calls("ApplyWorkloads"); n != 1 {
		t.Errorf("ApplyWorkloads calls = %d, want 1", n)
	}
	if n := env.Control.Calls("ApplyWorkload"); n != 0 {
		t.Errorf("ApplyWorkload calls = %d, want 0: a stream is one call", n)
	}
	audits := env.Control.Audits()
	if ev := audits[len(audits)-1]; ev.GetAction() != "POST /v1/manifests" || ev.GetResult() != "200 allowed" ||
		ev.GetWorkload() != "" || !strings.Contains(ev.GetMessage(), "3 workloads") {
		t.Errorf("audit event %v", ev)
	}

	// Again with db changed and cache failing on its own: still 200, the
	// failure is in its result, lowerCamel.
	env.Control.SetApplyError("cache", status.Error(codes.Aborted, "revision conflict"))
	changed := manifestStream("web") + "---\n" + strings.Replace(manifestStream("db"), "example/web:1", "example/db:2", 1) +
		"---\n" + manifestStream("cache")
	code, body = call(t, c, "POST", url, []byte(changed))
	if code != http.StatusOK {
		t.Fatalf("second apply: code %d, body %s", code, body)
	}
	results = decodeResults(t, body)
	got := make([]string, len(results))
	for i, r := range results {
		got[i] = fmt.Sprintf("%s %s %d %s", r.GetName(), r.GetResult(), r.GetErrorCode(), r.GetErrorMessage())
	}
	want := []string{"web unchanged 0 ", "db updated 0 ", "cache  10 revision conflict"}
	if strings.Join(got, "|") != strings.Join(want, "|") {
		t.Errorf("results %q, want %q", got, want)
	}
	if !bytes.Contains(body, []byte(`"errorCode":10`)) || !bytes.Contains(body, []byte(`"errorMessage":"revision conflict"`)) {
		t.Errorf("body lacks errorCode and errorMessage: %s", body)
	}
}

func TestApplyManifestsRefused(t *testing.T) {
	env := gatewaytest.Start(t)
	c := httpClient(t, env.Bundle.Admin)

	tooMany := strings.Repeat("---\n"+webManifest, manifest.MaxDocuments+1)
	tests := []struct {
		name      string
		body      string
		wantCode  int
		wantField string
		wantMsg   string // substring of the message, or of the first field's reason
	}{
		{"invalid second document", manifestStream("web") + "---\n" + strings.Replace(manifestStream("db"), "memory: 64Mi", "memory: -1Mi", 1),
			http.StatusBadRequest, "documents[1].spec.resources.memory", "must not be negative"},
		{"broken YAML document", manifestStream("web") + "---\nkind: [Workload\n",
			http.StatusBadRequest, "documents[1]", "document starting at line"},
		{"duplicate names", manifestStream("web", "db", "web"),
			http.StatusBadRequest, "documents[2].metadata.name", `"web" is also the name of documents[0]`},
		{"empty body", "", http.StatusBadRequest, "", "request body is empty"},
		{"only comments", "# nothing\n---\n", http.StatusBadRequest, "", "manifest is empty"},
		{"too many documents", tooMany, http.StatusBadRequest, "", "more than 1000 documents"},
		{"oversized body", manifestStream("web") + "#" + strings.Repeat("x", manifest.MaxStreamSize) + "\n",
			http.StatusRequestEntityTooLarge, "", "manifest stream is larger than the limit of 2097152 bytes"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, body := call(t, c, "POST", env.Endpoint+"/v1/manifests", []byte(tt.body))
			if code != tt.wantCode {
				t.Fatalf("code %d, want %d; body %s", code, tt.wantCode, body)
			}
			d := decodeErr(t, body)
			if d.Code != tt.wantCode {
				t.Errorf("error.code %d, want %d", d.Code, tt.wantCode)
			}
			text := d.Message
			if len(d.Fields) > 0 {
				text += " " + d.Fields[0].Reason
			}
			if tt.wantField != "" && !hasField(d, tt.wantField) {
				t.Errorf("fields %+v lack %s", d.Fields, tt.wantField)
			}
			if !strings.Contains(text, tt.wantMsg) {
				t.Errorf("error %q lacks %q", text, tt.wantMsg)
			}
		})
	}
	if n := env.Control.Calls("ApplyWorkloads"); n != 0 {
		t.Errorf("the scheduler was called %d times for invalid streams", n)
	}
	if code, body := call(t, c, "GET", env.Endpoint+"/v1/workloads", nil); code != http.StatusOK || bytes.Contains(body, []byte(`"name"`)) {
		t.Errorf("workloads after refused streams: %d %s", code, body)
	}

	// The scheduler's refusals map as for a single apply.
	st, err := status.New(codes.InvalidArgument, "invalid manifest: items[1].spec.compose.inline: not a compose file").
		WithDetails(&errdetails.BadRequest{FieldViolations: []*errdetails.BadRequest_FieldViolation{
			{Field: "items[1].spec.compose.inline", Description: "not a compose file"},
		}})
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		err       error
		wantCode  int
		wantField string
	}{
		{st.Err(), http.StatusBadRequest, "items[1].spec.compose.inline"},
		{status.Error(codes.Unavailable, "no leader"), http.StatusServiceUnavailable, ""},
		{status.Error(codes.ResourceExhausted, "busy"), http.StatusTooManyRequests, ""},
	} {
		env.Control.SetError("ApplyWorkloads", tt.err)
		code, body := call(t, c, "POST", env.Endpoint+"/v1/manifests", []byte(manifestStream("web", "db")))
		if code != tt.wantCode {
			t.Errorf("%v: code %d, want %d; body %s", tt.err, code, tt.wantCode, body)
			continue
		}
		if d := decodeErr(t, body); tt.wantField != "" && !hasField(d, tt.wantField) {
			t.Errorf("fields %+v lack %s", d.Fields, tt.wantField)
		}
	}
}

// The in-memory scheduler refuses a call the way the real one does, for
// callers that skip the gateway's own checks.
func TestControlApplyWorkloadsValidates(t *testing.T) {
	ctrl := gatewaytest.NewControl()
	item := func(name string) *persysv1.ApplyRequest {
		m, err := manifest.Parse([]byte(manifestStream(name)))
		if err != nil {
			t.Fatal(err)
		}
		return m.ToApplyRequest()
	}
	many := make([]*persysv1.ApplyRequest, 1001)
	for i := range many {
		many[i] = item(fmt.Sprintf("w%d", i))
	}
	bad := item("bad")
	bad.Spec.Container.Image = ""
	tests := []struct {
		name  string
		items []*persysv1.ApplyRequest
		field string
	}{
		{"no items", nil, "items"},
		{"too many", many, "items"},
		{"duplicate name", []*persysv1.ApplyRequest{item("a"), item("b"), item("a")}, "items[2].metadata.name"},
		{"invalid item", []*persysv1.ApplyRequest{item("a"), bad}, "items[1].spec.container.image"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := ctrl.ApplyWorkloads(t.Context(), &persysv1.ApplyWorkloadsRequest{Items: tt.items})
			st := status.Convert(err)
			if st.Code() != codes.InvalidArgument {
				t.Fatalf("err %v, want InvalidArgument", err)
			}
			var fields []string
			for _, d := range st.Details() {
				if br, ok := d.(*errdetails.BadRequest); ok {
					for _, v := range br.GetFieldViolations() {
						fields = append(fields, v.GetField())
					}
				}
			}
			if len(fields) != 1 || fields[0] != tt.field {
				t.Fatalf("fields %q, want [%s]", fields, tt.field)
			}
		})
	}
	if resp, err := ctrl.ListWorkloads(t.Context(), &persysv1.ListWorkloadsRequest{}); err != nil || len(resp.GetWorkloads()) != 0 {
		t.Fatalf("refused calls applied workloads: %v %v", resp, err)
	}
}
