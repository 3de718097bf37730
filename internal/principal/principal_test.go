package principal

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/persys-dev/compute/api/persys/contract"
	"github.com/persys-dev/compute/internal/authz"
	"github.com/persys-dev/compute/internal/pki"
)

// Every way a call can arrive without a verified user and role has no
// principal: the checks built on it fail closed.
func TestPrincipalFailsClosed(t *testing.T) {
	gw := pki.Identity{CommonName: "gateway", Role: pki.RoleGateway}
	with := func(id *pki.Identity, kv ...string) context.Context {
		ctx := context.Background()
		if id != nil {
			ctx = WithIdentity(ctx, *id)
		}
		return metadata.NewIncomingContext(ctx, metadata.Pairs(kv...))
	}
	agent := pki.Identity{CommonName: "node-1", Role: pki.RoleAgent}
	tests := []struct {
		name string
		ctx  context.Context
		want Principal // zero: refused
	}{
		{"no identity", with(nil), Principal{}},
		{"gateway without metadata", with(&gw), Principal{}},
		{"gateway without role", with(&gw, contract.MetadataUser, "olga"), Principal{}},
		{"gateway without user", with(&gw, contract.MetadataRole, "admin"), Principal{}},
		{"gateway with a daemon role", with(&gw, contract.MetadataUser, "olga", contract.MetadataRole, "scheduler"), Principal{}},
		{"gateway with two roles", with(&gw, contract.MetadataUser, "olga", contract.MetadataRole, "viewer", contract.MetadataRole, "admin"), Principal{}},
		{"agent", with(&agent), Principal{}},
		{"gateway for an operator", with(&gw, contract.MetadataUser, "olga", contract.MetadataRole, "operator"), Principal{"olga", pki.RoleOperator}},
		{"admin certificate", with(&pki.Identity{CommonName: "root", Role: pki.RoleAdmin}), Principal{"root", pki.RoleAdmin}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, err := Of(tt.ctx)
			if tt.want == (Principal{}) {
				if status.Code(err) != codes.PermissionDenied {
					t.Fatalf("principalOf = %v, %v; want PermissionDenied", p, err)
				}
				return
			}
			if err != nil || p != tt.want {
				t.Fatalf("principalOf = %v, %v; want %v", p, err, tt.want)
			}
		})
	}
	if (Principal{Role: pki.RoleOperator}).May(authz.WorkloadsHost) || !(Principal{Role: pki.RoleAdmin}).May(authz.WorkloadsHost) {
		t.Fatal("workloads.host must be the admin's alone")
	}
	if (Principal{}).May(authz.WorkloadsRead) {
		t.Fatal("a principal without a role may do nothing")
	}
}

// TestRequire: a principal without the permission is refused with the
// field named, as PermissionDenied (also when wrapped); one with it, and
// the scheduler, are not.
func TestRequire(t *testing.T) {
	op := Principal{Name: "olga", Role: pki.RoleOperator}
	err := op.Require(authz.WorkloadsHost, "spec.container.privileged", "privileged mode")
	var denied *FieldDenied
	if !errors.As(err, &denied) || denied.Field != "spec.container.privileged" {
		t.Fatalf("Require = %v, want a FieldDenied on spec.container.privileged", err)
	}
	want := `spec.container.privileged: privileged mode needs permission workloads.host, which user "olga" with role operator lacks`
	if s := status.Convert(err); s.Code() != codes.PermissionDenied || s.Message() != want {
		t.Errorf("status = %v %q, want PermissionDenied %q", s.Code(), s.Message(), want)
	}
	if code := status.Code(fmt.Errorf("to_revision: %w", err)); code != codes.PermissionDenied {
		t.Errorf("wrapped: code %v, want PermissionDenied", code)
	}
	for _, p := range []Principal{{Name: "ada", Role: pki.RoleAdmin}, Scheduler} {
		if err := p.Require(authz.WorkloadsHost, "spec.container.privileged", "privileged mode"); err != nil {
			t.Errorf("%s: %v, want allowed", p, err)
		}
	}
}
