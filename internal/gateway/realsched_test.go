package gateway_test

import (
	"net/http"
	"strings"
	"testing"

	"github.com/persys-dev/compute/internal/testutil/realsched"
)

// Names from the URL path that cannot name an object (a '/' decoded from
// %2F, a space, a control character) answer 400 naming the path field,
// and nothing a client reads shows a store key. Against the real
// scheduler, whose store refuses such names.
func TestPathNamesAndNotFoundAgainstScheduler(t *testing.T) {
	rc := realsched.Start(t, realsched.Options{})
	gw := rc.StartGateway(t, nil)
	c := httpClient(t, rc.Bundle.Admin)
	tests := []struct {
		name, method, path string
		want               int
		field, message     string
	}{
		{"delete workload with slash", "DELETE", "/v1/workloads/a%2Fb", http.StatusBadRequest, "name", ""},
		{"get workload with slash", "GET", "/v1/workloads/a%2Fb", http.StatusBadRequest, "name", ""},
		{"retry workload with slash", "POST", "/v1/workloads/a%2Fb/retry", http.StatusBadRequest, "name", ""},
		{"wait workload with space", "GET", "/v1/workloads/a%20b/wait", http.StatusBadRequest, "name", ""},
		{"get workload dot dot", "GET", "/v1/workloads/..%2F..", http.StatusBadRequest, "name", ""},
		{"get node with slash", "GET", "/v1/nodes/a%2Fb", http.StatusBadRequest, "id", ""},
		{"cordon node with slash", "POST", "/v1/nodes/a%2Fb/cordon", http.StatusBadRequest, "id", ""},
		{"drain node with newline", "POST", "/v1/nodes/a%0Ab/drain", http.StatusBadRequest, "id", ""},
		{"delete secret with slash", "DELETE", "/v1/secrets/a%2Fb", http.StatusBadRequest, "name", ""},
		{"delete missing workload", "DELETE", "/v1/workloads/nosuch", http.StatusNotFound, "", `workload "nosuch" not found`},
		{"get missing workload", "GET", "/v1/workloads/nosuch", http.StatusNotFound, "", `workload "nosuch" not found`},
		{"get missing node", "GET", "/v1/nodes/nosuch", http.StatusNotFound, "", `node "nosuch" not found`},
		{"delete missing secret", "DELETE", "/v1/secrets/nosuch", http.StatusNotFound, "", `secret "nosuch" not found`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, body := call(t, c, tt.method, gw.Endpoint+tt.path, nil)
			if code != tt.want {
				t.Fatalf("code %d, want %d; body %s", code, tt.want, body)
			}
			d := decodeErr(t, body)
			if tt.field != "" && (len(d.Fields) != 1 || d.Fields[0].Field != tt.field) {
				t.Errorf("fields %+v, want one naming %q", d.Fields, tt.field)
			}
			if tt.message != "" && d.Message != tt.message {
				t.Errorf("message %q, want %q", d.Message, tt.message)
			}
			for _, leak := range []string{"/persys", "workloads/", "nodes/", "secrets/", "store:"} {
				if strings.Contains(d.Message, leak) {
					t.Errorf("message %q shows %q", d.Message, leak)
				}
			}
		})
	}
	if strings.Contains(rc.Logs(), `"level":"ERROR"`) {
		t.Errorf("bad input logged as an error:\n%s", rc.Logs())
	}
}
