package gateway_test

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/persys-dev/compute/internal/gateway"
	"github.com/persys-dev/compute/internal/gateway/gatewaytest"
	"github.com/persys-dev/compute/internal/pki"
)

// counterValue reads one counter of the gateway's registry.
func counterValue(t *testing.T, env *gatewaytest.Env, name string) float64 {
	t.Helper()
	mfs, err := env.Registry.Gather()
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

func TestPermissionsAndAudit(t *testing.T) {
	env := gatewaytest.Start(t)
	viewer := httpClient(t, env.IssueUser(t, "vera", pki.RoleViewer))
	operator := httpClient(t, env.IssueUser(t, "otto", pki.RoleOperator))
	agent := httpClient(t, env.IssueUser(t, "node-9", pki.RoleAgent))

	tests := []struct {
		name       string
		c          *http.Client
		method     string
		path       string
		body       []byte
		want       int
		wantMsg    string
		wantResult string // the audit event's result; "" = not audited
		wantActor  string
	}{
		{"viewer may not apply", viewer, "POST", "/v1/workloads", []byte(webManifest), http.StatusForbidden,
			"permission denied: role viewer lacks workloads.write", "403 denied", "vera"},
		{"operator applies", operator, "POST", "/v1/workloads", []byte(webManifest), http.StatusCreated, "", "201 allowed", "otto"},
		{"viewer may not delete", viewer, "DELETE", "/v1/workloads/web", nil, http.StatusForbidden,
			"permission denied: role viewer lacks workloads.write", "403 denied", "vera"},
		{"viewer may not cordon", viewer, "POST", "/v1/nodes/n1/cordon", nil, http.StatusForbidden,
			"permission denied: role viewer lacks nodes.write", "403 denied", "vera"},
		{"operator may not create tokens", operator, "POST", "/v1/tokens", []byte(`{"user":"ci","role":"admin"}`), http.StatusForbidden,
			"permission denied: role operator lacks tokens.write", "403 denied", "otto"},
		{"operator may not list tokens", operator, "GET", "/v1/tokens", nil, http.StatusForbidden,
			"permission denied: role operator lacks tokens.read", "", ""},
		{"agent may not apply", agent, "POST", "/v1/workloads", []byte(webManifest), http.StatusForbidden,
			"permission denied: role agent lacks workloads.write", "403 denied", "node-9"},
		{"viewer reads, not audited", viewer, "GET", "/v1/workloads/web", nil, http.StatusOK, "", "", ""},
		{"no such route", operator, "POST", "/v1/nothing", nil, http.StatusNotFound, "no route", "404 unrouted", "otto"},
		{"method not allowed", operator, "PUT", "/v1/workloads", nil, http.StatusMethodNotAllowed, "not allowed", "405 unrouted", "otto"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := len(env.Control.Audits())
			code, body := call(t, tt.c, tt.method, env.Endpoint+tt.path, tt.body)
			if code != tt.want {
				t.Fatalf("code %d, want %d; body %s", code, tt.want, body)
			}
			if tt.wantMsg != "" {
				if msg := errorMessage(t, body); !strings.Contains(msg, tt.wantMsg) {
					t.Fatalf("message %q, want %q", msg, tt.wantMsg)
				}
			}
			audits := env.Control.Audits()
			if tt.wantResult == "" {
				if len(audits) != before {
					t.Fatalf("a %s was audited: %v", tt.method, audits[before:])
				}
				return
			}
			if len(audits) != before+1 {
				t.Fatalf("%d audit events, want one more than %d", len(audits), before)
			}
			ev := audits[before]
			if ev.GetType() != "Audit" || ev.GetActor() != tt.wantActor || ev.GetResult() != tt.wantResult ||
				ev.GetAction() != tt.method+" "+tt.path || !strings.Contains(ev.GetMessage(), "via client certificate") {
				t.Fatalf("audit event %v", ev)
			}
			if tt.want == http.StatusCreated && ev.GetWorkload() != "web" {
				t.Fatalf("audit event of an apply names workload %q, want web", ev.GetWorkload())
			}
			if strings.Contains(ev.String(), "example/web:1") {
				t.Fatalf("the audit event holds the request body: %v", ev)
			}
		})
	}

	// The audit log lists through the events API with its type.
	admin := httpClient(t, env.Bundle.Admin)
	code, body := call(t, admin, "GET", env.Endpoint+"/v1/events?type=audit", nil)
	if code != http.StatusOK || !strings.Contains(string(body), `"actor":"vera"`) {
		t.Fatalf("events of type audit: %d %s", code, body)
	}

	// A failure to record is answered as usual, logged and counted.
	env.Control.SetError("RecordAudit", status.Error(codes.Unavailable, "etcd is down"))
	code, body = call(t, operator, "DELETE", env.Endpoint+"/v1/workloads/web", nil)
	if code != http.StatusAccepted {
		t.Fatalf("delete with the audit failing: %d %s", code, body)
	}
	if got := counterValue(t, env, "persys_gateway_audit_failures_total"); got != 1 {
		t.Fatalf("audit failures counted %v, want 1", got)
	}
	if !strings.Contains(env.Logs(), "audit event not recorded") {
		t.Fatalf("the audit failure was not logged:\n%s", env.Logs())
	}
	if got := counterValue(t, env, "persys_gateway_audit_events_total"); got < 5 {
		t.Fatalf("audit events counted %v, want at least 5", got)
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
