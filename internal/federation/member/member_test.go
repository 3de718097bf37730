package member_test

import (
	"errors"
	"testing"
	"time"

	"github.com/persys-dev/compute/internal/federation/fedapi"
	"github.com/persys-dev/compute/internal/federation/member"
	"github.com/persys-dev/compute/internal/gateway/httperr"
	"github.com/persys-dev/compute/internal/pki"
)

// TestParse checks each join field without the network; a valid request
// parses to the identity the member issued.
func TestParse(t *testing.T) {
	dir := t.TempDir()
	ca, err := pki.InitCA(dir, "member CA", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	issue := func(role pki.Role) (string, string) {
		c, k, err := ca.Issue(pki.IssueRequest{CommonName: "federation", Role: role})
		if err != nil {
			t.Fatal(err)
		}
		return string(c), string(k)
	}
	cert, key := issue(pki.RoleOperator)
	daemonCert, daemonKey := issue(pki.RoleGateway)
	_, otherKey := issue(pki.RoleViewer)
	good := fedapi.JoinRequest{Name: "east-1", Gateway: "https://127.0.0.1:8443", CA: string(ca.CertPEM), Cert: cert, Key: key}
	with := func(edit func(*fedapi.JoinRequest)) fedapi.JoinRequest { r := good; edit(&r); return r }
	tests := []struct {
		name  string
		req   fedapi.JoinRequest
		now   time.Time
		field string
	}{
		{"valid", good, time.Now(), ""},
		{"gateway with a trailing slash", with(func(r *fedapi.JoinRequest) { r.Gateway += "/" }), time.Now(), ""},
		{"empty name", with(func(r *fedapi.JoinRequest) { r.Name = "" }), time.Now(), "name"},
		{"upper case name", with(func(r *fedapi.JoinRequest) { r.Name = "East" }), time.Now(), "name"},
		{"name starting with a digit", with(func(r *fedapi.JoinRequest) { r.Name = "1east" }), time.Now(), "name"},
		{"name ending with a dash", with(func(r *fedapi.JoinRequest) { r.Name = "east-" }), time.Now(), "name"},
		{"no gateway", with(func(r *fedapi.JoinRequest) { r.Gateway = "" }), time.Now(), "gateway"},
		{"gateway with a user", with(func(r *fedapi.JoinRequest) { r.Gateway = "https://u@127.0.0.1:8443" }), time.Now(), "gateway"},
		{"gateway with a query", with(func(r *fedapi.JoinRequest) { r.Gateway = "https://127.0.0.1:8443?x=1" }), time.Now(), "gateway"},
		{"no CA", with(func(r *fedapi.JoinRequest) { r.CA = "" }), time.Now(), "ca"},
		{"no cert", with(func(r *fedapi.JoinRequest) { r.Cert = "" }), time.Now(), "cert"},
		{"no key", with(func(r *fedapi.JoinRequest) { r.Key = "" }), time.Now(), "key"},
		{"cert not PEM", with(func(r *fedapi.JoinRequest) { r.Cert = "nope" }), time.Now(), "cert"},
		{"expired", good, time.Now().Add(48 * time.Hour), "cert"},
		{"not yet valid", good, time.Now().Add(-48 * time.Hour), "cert"},
		{"key of another cert", with(func(r *fedapi.JoinRequest) { r.Key = otherKey }), time.Now(), "key"},
		{"daemon identity", with(func(r *fedapi.JoinRequest) { r.Cert, r.Key = daemonCert, daemonKey }), time.Now(), "cert"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			id, err := member.Parse(tc.req, tc.now)
			if tc.field == "" {
				if err != nil {
					t.Fatal(err)
				}
				if id.Identity.CommonName != "federation" || id.Identity.Role != pki.RoleOperator || id.Gateway != "https://127.0.0.1:8443" {
					t.Fatalf("parsed %+v", id)
				}
				return
			}
			var he *httperr.Error
			if !errors.As(err, &he) || len(he.Fields) != 1 || he.Fields[0].Field != tc.field {
				t.Fatalf("err %v, want a field error naming %s", err, tc.field)
			}
		})
	}
}
