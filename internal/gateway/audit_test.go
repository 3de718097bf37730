package gateway_test

import (
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	persysv1 "github.com/persys-dev/compute/api/persys/v1"
	"github.com/persys-dev/compute/internal/gateway"
	"github.com/persys-dev/compute/internal/pki"
	"github.com/persys-dev/compute/internal/testutil/eventually"
	"github.com/persys-dev/compute/internal/testutil/realsched"
)

// counterValue reads one counter of a gateway's registry.
func counterValue(t *testing.T, reg *prometheus.Registry, name string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var sum float64
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			sum += m.GetCounter().GetValue()
		}
	}
	return sum
}

func errorMessage(t *testing.T, body []byte) string {
	t.Helper()
	var eb gateway.ErrorBody
	if err := json.Unmarshal(body, &eb); err != nil {
		t.Fatalf("error body %s: %v", body, err)
	}
	return eb.Error.Message
}

// audits returns the audit events the shared scheduler was asked to
// record so far.
func audits() []*persysv1.Event {
	var out []*persysv1.Event
	for _, c := range calls.Calls("RecordAudit") {
		out = append(out, c.Request.(*persysv1.RecordAuditRequest).GetEvent())
	}
	return out
}

// auditCase is one request of TestPermissionsAndAudit.
type auditCase struct {
	name       string
	c          *http.Client
	method     string
	path       string
	body       []byte
	want       int
	wantMsg    string
	wantResult string // the audit event's result; "" = not audited
	wantActor  string
}

// check makes the request and checks its answer and audit event.
func (tt auditCase) check(t *testing.T) {
	before := len(audits())
	code, body := call(t, tt.c, tt.method, sharedGW.Endpoint+tt.path, tt.body)
	if code != tt.want {
		t.Fatalf("code %d, want %d; body %s", code, tt.want, body)
	}
	if tt.wantMsg != "" {
		if msg := errorMessage(t, body); !strings.Contains(msg, tt.wantMsg) {
			t.Fatalf("message %q, want %q", msg, tt.wantMsg)
		}
	}
	if tt.wantResult == "" {
		if evs := audits(); len(evs) != before {
			t.Fatalf("a %s was audited: %v", tt.method, evs[before:])
		}
		return
	}
	// The event is recorded after the answer is written.
	eventually.Eventually(t, "the audit event", 10*time.Second, func() (bool, string) {
		n := len(audits())
		return n > before, fmt.Sprintf("%d audit events", n)
	})
	evs := audits()
	if len(evs) != before+1 {
		t.Fatalf("%d audit events, want one more than %d", len(evs), before)
	}
	ev := evs[before]
	if ev.GetType() != "Audit" || ev.GetActor() != tt.wantActor || ev.GetResult() != tt.wantResult ||
		ev.GetAction() != tt.method+" "+tt.path || !strings.Contains(ev.GetMessage(), "via client certificate") {
		t.Fatalf("audit event %v", ev)
	}
	if tt.want == http.StatusCreated && ev.GetWorkload() != "audited" {
		t.Fatalf("audit event of an apply names workload %q, want audited", ev.GetWorkload())
	}
	if strings.Contains(ev.String(), "example/web:1") {
		t.Fatalf("the audit event holds the request body: %v", ev)
	}
}

func TestPermissionsAndAudit(t *testing.T) {
	shared.Forget(t, "audited")
	viewer := httpClient(t, shared.IssueUser(t, "vera", pki.RoleViewer))
	operator := httpClient(t, shared.IssueUser(t, "otto", pki.RoleOperator))
	agent := httpClient(t, shared.IssueUser(t, "node-9", pki.RoleAgent))
	m := []byte(workload("audited"))
	recorded := counterValue(t, gwMetrics, "persys_gateway_audit_events_total")

	tests := []auditCase{
		{"viewer may not apply", viewer, "POST", "/v1/workloads", m, http.StatusForbidden,
			"permission denied: role viewer lacks workloads.write", "403 denied", "vera"},
		{"operator applies", operator, "POST", "/v1/workloads", m, http.StatusCreated, "", "201 allowed", "otto"},
		{"viewer may not delete", viewer, "DELETE", "/v1/workloads/audited", nil, http.StatusForbidden,
			"permission denied: role viewer lacks workloads.write", "403 denied", "vera"},
		{"viewer may not cordon", viewer, "POST", "/v1/nodes/n1/cordon", nil, http.StatusForbidden,
			"permission denied: role viewer lacks nodes.write", "403 denied", "vera"},
		{"operator may not create tokens", operator, "POST", "/v1/tokens", []byte(`{"user":"ci","role":"admin"}`), http.StatusForbidden,
			"permission denied: role operator lacks tokens.write", "403 denied", "otto"},
		{"operator may not list tokens", operator, "GET", "/v1/tokens", nil, http.StatusForbidden,
			"permission denied: role operator lacks tokens.read", "", ""},
		{"agent may not apply", agent, "POST", "/v1/workloads", m, http.StatusForbidden,
			"permission denied: role agent lacks workloads.write", "403 denied", "node-9"},
		{"viewer reads, not audited", viewer, "GET", "/v1/workloads/audited", nil, http.StatusOK, "", "", ""},
		{"no such route", operator, "POST", "/v1/nothing", nil, http.StatusNotFound, "no route", "404 unrouted", "otto"},
		{"method not allowed", operator, "PUT", "/v1/workloads", nil, http.StatusMethodNotAllowed, "not allowed", "405 unrouted", "otto"},
	}
	for _, tt := range tests {
		t.Run(tt.name, tt.check)
	}

	// The audit log lists through the events API with its type.
	admin := httpClient(t, shared.Bundle.Admin)
	code, body := call(t, admin, "GET", sharedGW.Endpoint+"/v1/events?type=audit", nil)
	if code != http.StatusOK || !strings.Contains(string(body), `"actor":"vera"`) {
		t.Fatalf("events of type audit: %d %s", code, body)
	}

	if got := counterValue(t, gwMetrics, "persys_gateway_audit_events_total") - recorded; got < 5 {
		t.Fatalf("audit events counted %v, want at least 5", got)
	}
}

// TestAuditFailure: when the scheduler cannot record an audit event (here
// it is gone), the request is answered as usual and the failure is
// logged and counted.
func TestAuditFailure(t *testing.T) {
	rc := realsched.Start(t, realsched.Options{NoSecrets: true})
	reg := prometheus.NewRegistry()
	var logs realsched.Buffer
	gw := rc.StartGateway(t, func(c *gateway.Config) {
		c.Registry, c.Logger = reg, slog.New(slog.NewJSONHandler(&logs, nil))
	})
	viewer := httpClient(t, rc.IssueUser(t, "vera", pki.RoleViewer))
	rc.Stop(0)
	// Refused by the gateway alone, so answered without the scheduler.
	code, body := call(t, viewer, "DELETE", gw.Endpoint+"/v1/workloads/web", nil)
	if code != http.StatusForbidden {
		t.Fatalf("delete as a viewer: %d %s", code, body)
	}
	eventually.Eventually(t, "the audit failure counted", 60*time.Second, func() (bool, string) {
		got := counterValue(t, reg, "persys_gateway_audit_failures_total")
		return got == 1, fmt.Sprintf("%v failures", got)
	})
	if !strings.Contains(logs.String(), "audit event not recorded") {
		t.Fatalf("the audit failure was not logged:\n%s", logs.String())
	}
}

func TestRoutePermissionTable(t *testing.T) {
	tests := []struct {
		route string
		want  gateway.Permission
	}{
		{"GET /healthz", ""},
		{"GET /openapi.json", ""},
		{"POST /v1/workloads", gateway.PermWorkloadsWrite},
		{"GET /v1/events", gateway.PermEventsRead},
		{"POST /v1/tokens", gateway.PermTokensWrite},
		{"PUT /v1/secrets/{name}", gateway.PermSecretsWrite},
		// Not in the table: derived from the path.
		{"POST /v1/widgets/{id}/spin", "widgets.write"},
		{"GET /v1/widgets", "widgets.read"},
	}
	for _, tt := range tests {
		t.Run(tt.route, func(t *testing.T) {
			if got := gateway.RoutePermission(tt.route); got != tt.want {
				t.Fatalf("got %q, want %q", got, tt.want)
			}
		})
	}
	roles := []struct {
		role pki.Role
		perm gateway.Permission
		want bool
	}{
		{pki.RoleViewer, gateway.PermWorkloadsRead, true},
		{pki.RoleViewer, gateway.PermWorkloadsWrite, false},
		{pki.RoleOperator, gateway.PermNodesWrite, true},
		{pki.RoleOperator, gateway.PermSecretsRead, false},
		{pki.RoleOperator, gateway.PermTokensWrite, false},
		{pki.RoleAdmin, gateway.PermTokensWrite, true},
		{pki.RoleAdmin, gateway.PermUsersWrite, true},
		{pki.RoleAgent, gateway.PermWorkloadsRead, false},
		{pki.RoleGateway, gateway.PermEventsRead, false},
	}
	for _, tt := range roles {
		if got := gateway.RoleHas(tt.role, tt.perm); got != tt.want {
			t.Errorf("RoleHas(%s, %s) = %v, want %v", tt.role, tt.perm, got, tt.want)
		}
	}
}
