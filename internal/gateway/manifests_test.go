package gateway_test

import (
	"bytes"
	"fmt"
	"net/http"
	"strings"
	"testing"

	"time"

	"google.golang.org/protobuf/encoding/protojson"

	"github.com/persys-dev/compute/api/persys/contract"
	persysv1 "github.com/persys-dev/compute/api/persys/v1"
	"github.com/persys-dev/compute/internal/manifest"
	"github.com/persys-dev/compute/internal/testutil/eventually"
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

// unreachableGit is a compose workload from a Git repository that no
// server answers: the scheduler fails its apply, and only its own.
func unreachableGit(name string) string {
	return "kind: Workload\nmetadata: {name: " + name + "}\nspec:\n  type: compose\n  compose:\n    git: {url: 'http://127.0.0.1:1/none.git', ref: main}\n"
}

// batchCalls counts the ApplyWorkloads calls whose first item is named
// first.
func batchCalls(first string) int {
	n := 0
	for _, c := range calls.Calls("ApplyWorkloads") {
		if items := c.Request.(*persysv1.ApplyWorkloadsRequest).GetItems(); len(items) > 0 && items[0].GetName() == first {
			n++
		}
	}
	return n
}

func TestApplyManifests(t *testing.T) {
	shared.Forget(t, "mf-web", "mf-db", "mf-cache")
	batches := batchCalls("mf-web")
	c := httpClient(t, shared.Bundle.Admin)
	url := sharedGW.Endpoint + "/v1/manifests"
	singles := len(calls.Calls("ApplyWorkload"))
	before := len(audits())

	code, body := call(t, c, "POST", url, []byte(manifestStream("mf-web", "mf-db", "mf-cache")))
	if code != http.StatusOK {
		t.Fatalf("code %d, body %s", code, body)
	}
	results := decodeResults(t, body)
	if len(results) != 3 {
		t.Fatalf("%d results, want 3: %s", len(results), body)
	}
	for i, want := range []string{"mf-web", "mf-db", "mf-cache"} {
		r := results[i]
		if r.GetName() != want || r.GetResult() != "created" || r.GetErrorCode() != 0 || r.GetWorkload().GetWorkload().GetName() != want {
			t.Errorf("results[%d] = %v, want %s created", i, r, want)
		}
	}
	if n := batchCalls("mf-web") - batches; n != 1 {
		t.Errorf("ApplyWorkloads calls = %d, want 1", n)
	}
	if n := len(calls.Calls("ApplyWorkload")) - singles; n != 0 {
		t.Errorf("ApplyWorkload calls = %d, want 0: a stream is one call", n)
	}
	eventually.Eventually(t, "the audit event", 10*time.Second, eventually.True(func() bool { return len(audits()) > before }))
	evs := audits()
	if ev := evs[len(evs)-1]; ev.GetAction() != "POST /v1/manifests" || ev.GetResult() != "200 allowed" ||
		ev.GetWorkload() != "" || !strings.Contains(ev.GetMessage(), "3 workloads") {
		t.Errorf("audit event %v", ev)
	}

	// Again with mf-db changed and mf-cache failing on its own (its Git
	// repository does not answer): still 200, the failure is in its
	// result, lowerCamel.
	changed := manifestStream("mf-web") + "---\n" + strings.Replace(manifestStream("mf-db"), "example/web:1", "example/db:2", 1) +
		"---\n" + unreachableGit("mf-cache")
	code, body = call(t, c, "POST", url, []byte(changed))
	if code != http.StatusOK {
		t.Fatalf("second apply: code %d, body %s", code, body)
	}
	results = decodeResults(t, body)
	got := make([]string, len(results))
	for i, r := range results {
		got[i] = fmt.Sprintf("%s %s %d", r.GetName(), r.GetResult(), r.GetErrorCode())
	}
	want := []string{"mf-web unchanged 0", "mf-db updated 0", "mf-cache  9"}
	if strings.Join(got, "|") != strings.Join(want, "|") {
		t.Errorf("results %q, want %q", got, want)
	}
	if len(results) == 3 && !strings.HasPrefix(results[2].GetErrorMessage(), "spec.compose.git") {
		t.Errorf("mf-cache's error %q does not name spec.compose.git", results[2].GetErrorMessage())
	}
	if !bytes.Contains(body, []byte(`"errorCode":9`)) || !bytes.Contains(body, []byte(`"errorMessage":"spec.compose.git`)) {
		t.Errorf("body lacks errorCode and errorMessage: %s", body)
	}
}

func TestApplyManifestsRefused(t *testing.T) {
	c := httpClient(t, shared.Bundle.Admin)
	batches := len(calls.Calls("ApplyWorkloads"))

	tooMany := strings.Repeat("---\n"+workload("refused"), manifest.MaxDocuments+1)
	tests := []struct {
		name      string
		body      string
		wantCode  int
		wantField string
		wantMsg   string // substring of the message, or of the first field's reason
	}{
		{"invalid second document", manifestStream("refused") + "---\n" + strings.Replace(manifestStream("refused-db"), "memory: 64Mi", "memory: -1Mi", 1),
			http.StatusBadRequest, "documents[1].spec.resources.memory", "must not be negative"},
		{"broken YAML document", manifestStream("refused") + "---\nkind: [Workload\n",
			http.StatusBadRequest, "documents[1]", "document starting at line"},
		{"duplicate names", manifestStream("refused", "refused-db", "refused"),
			http.StatusBadRequest, "documents[2].metadata.name", `"refused" is also the name of documents[0]`},
		{"empty body", "", http.StatusBadRequest, "", "request body is empty"},
		{"only comments", "# nothing\n---\n", http.StatusBadRequest, "", "manifest is empty"},
		{"too many documents", tooMany, http.StatusBadRequest, "", "more than 1000 documents"},
		{"oversized body", manifestStream("refused") + "#" + strings.Repeat("x", manifest.MaxStreamSize) + "\n",
			http.StatusRequestEntityTooLarge, "", "manifest stream is larger than the limit of 2097152 bytes"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, body := call(t, c, "POST", sharedGW.Endpoint+"/v1/manifests", []byte(tt.body))
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
	if n := len(calls.Calls("ApplyWorkloads")) - batches; n != 0 {
		t.Errorf("the scheduler was called %d times for invalid streams", n)
	}
	if code, body := call(t, c, "GET", sharedGW.Endpoint+"/v1/workloads/refused", nil); code != http.StatusNotFound {
		t.Errorf("refused after refused streams: %d %s", code, body)
	}

	// What only the scheduler checks refuses the whole stream, naming the
	// item, as for a single apply.
	code, body := call(t, c, "POST", sharedGW.Endpoint+"/v1/manifests", []byte(manifestStream("refused")+"---\n"+badCompose("refused-compose")))
	if code != http.StatusBadRequest {
		t.Fatalf("code %d, want 400; body %s", code, body)
	}
	if d := decodeErr(t, body); len(d.Fields) == 0 || !strings.HasPrefix(d.Fields[0].Field, "items[1].spec.compose.inline") {
		t.Errorf("fields %+v, want one under items[1].spec.compose.inline", d.Fields)
	}
	if code, body := call(t, c, "GET", sharedGW.Endpoint+"/v1/workloads/refused", nil); code != http.StatusNotFound {
		t.Errorf("a refused stream applied its valid item: %d %s", code, body)
	}
}
