package gateway

import (
	"crypto/tls"
	"encoding/json"
	"net"
	"net/http"
	"reflect"
	"sort"
	"strings"
	"testing"

	persysv1 "github.com/persys-dev/compute/api/persys/v1"
)

func TestOpenAPIDescribesEveryRoute(t *testing.T) {
	var doc struct {
		Paths map[string]map[string]json.RawMessage `json:"paths"`
	}
	if err := json.Unmarshal(openAPIDocument(), &doc); err != nil {
		t.Fatal(err)
	}
	var documented []string
	for p, ops := range doc.Paths {
		for m := range ops {
			documented = append(documented, strings.ToUpper(m)+" "+p)
		}
	}
	var served []string
	for _, r := range (&gateway{}).routes() {
		if strings.HasPrefix(r.path, "/ui/") {
			continue // the web console: HTML pages for browsers, not the API
		}
		served = append(served, r.method+" "+r.path)
	}
	sort.Strings(documented)
	sort.Strings(served)
	if !reflect.DeepEqual(documented, served) {
		t.Errorf("OpenAPI paths differ from the routes:\ndocumented %v\nserved     %v", documented, served)
	}
	// Every $ref resolves.
	var all map[string]any
	if err := json.Unmarshal(openAPIDocument(), &all); err != nil {
		t.Fatal(err)
	}
	schemas := all["components"].(map[string]any)["schemas"].(map[string]any)
	var walk func(v any)
	walk = func(v any) {
		switch v := v.(type) {
		case map[string]any:
			if r, ok := v["$ref"].(string); ok {
				name := strings.TrimPrefix(r, "#/components/schemas/")
				if _, ok := schemas[name]; !ok {
					t.Errorf("dangling $ref %s", r)
				}
			}
			for _, x := range v {
				walk(x)
			}
		case []any:
			for _, x := range v {
				walk(x)
			}
		}
	}
	walk(all)
}

func TestWaitDone(t *testing.T) {
	view := func(wlRev, stRev uint64, st persysv1.ActualState) *persysv1.WorkloadView {
		return &persysv1.WorkloadView{
			Workload: &persysv1.Workload{Revision: wlRev},
			Status:   &persysv1.WorkloadStatus{Revision: stRev, State: st},
		}
	}
	const (
		running = persysv1.ActualState_ACTUAL_STATE_RUNNING
		failed  = persysv1.ActualState_ACTUAL_STATE_FAILED
		pending = persysv1.ActualState_ACTUAL_STATE_PENDING
		stopped = persysv1.ActualState_ACTUAL_STATE_STOPPED
	)
	tests := []struct {
		name string
		view *persysv1.WorkloadView
		for_ string
		want bool
	}{
		{"running current revision", view(2, 2, running), WaitRunning, true},
		{"running old revision", view(2, 1, running), WaitRunning, false},
		{"running without revision", view(2, 0, running), WaitRunning, true},
		{"pending", view(1, 0, pending), WaitRunning, false},
		{"failed ends running", view(1, 1, failed), WaitRunning, true},
		{"failed old revision waits", view(2, 1, failed), WaitRunning, false},
		{"failed ends stopped", view(1, 1, failed), WaitStopped, true},
		{"stopped", view(1, 1, stopped), WaitStopped, true},
		{"running is not stopped", view(1, 1, running), WaitStopped, false},
		{"deleted waits for the end", view(1, 1, failed), WaitDeleted, false},
		{"no status", &persysv1.WorkloadView{Workload: &persysv1.Workload{Revision: 1}}, WaitRunning, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := WaitDone(tt.view, tt.for_); got != tt.want {
				t.Errorf("WaitDone = %v, want %v", got, tt.want)
			}
		})
	}
}

func TestParseSelector(t *testing.T) {
	tests := []struct {
		name    string
		in      string
		want    map[string]string
		wantErr bool
	}{
		{"empty", "", nil, false},
		{"one", "app=web", map[string]string{"app": "web"}, false},
		{"two with spaces", "app=web, tier = front", map[string]string{"app": "web", "tier": "front"}, false},
		{"empty value", "app=", map[string]string{"app": ""}, false},
		{"no equals", "app", nil, true},
		{"no key", "=web", nil, true},
		{"conflict", "app=a,app=b", nil, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parseSelector(tt.in)
			if (err != nil) != tt.wantErr {
				t.Fatalf("err = %v, wantErr %v", err, tt.wantErr)
			}
			if !tt.wantErr && !reflect.DeepEqual(got, tt.want) {
				t.Errorf("got %v, want %v", got, tt.want)
			}
		})
	}
}

func TestServeRefusesTLSWithoutClientAuth(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	if err := Serve(t.Context(), ln, http.NotFoundHandler(), &tls.Config{}); err == nil {
		t.Fatal("Serve accepted a TLS config that does not require client certificates")
	}
	if err := Serve(t.Context(), ln, http.NotFoundHandler(), nil); err == nil {
		t.Fatal("Serve accepted a nil TLS config")
	}
}
