package scheduler

import (
	"context"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

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
			ctx = context.WithValue(ctx, callerKey{}, *id)
		}
		return metadata.NewIncomingContext(ctx, metadata.Pairs(kv...))
	}
	agent := pki.Identity{CommonName: "node-1", Role: pki.RoleAgent}
	tests := []struct {
		name string
		ctx  context.Context
		want principal // zero: refused
	}{
		{"no identity", with(nil), principal{}},
		{"gateway without metadata", with(&gw), principal{}},
		{"gateway without role", with(&gw, authz.MetadataUser, "olga"), principal{}},
		{"gateway without user", with(&gw, authz.MetadataRole, "admin"), principal{}},
		{"gateway with a daemon role", with(&gw, authz.MetadataUser, "olga", authz.MetadataRole, "scheduler"), principal{}},
		{"gateway with two roles", with(&gw, authz.MetadataUser, "olga", authz.MetadataRole, "viewer", authz.MetadataRole, "admin"), principal{}},
		{"agent", with(&agent), principal{}},
		{"gateway for an operator", with(&gw, authz.MetadataUser, "olga", authz.MetadataRole, "operator"), principal{"olga", pki.RoleOperator}},
		{"admin certificate", with(&pki.Identity{CommonName: "root", Role: pki.RoleAdmin}), principal{"root", pki.RoleAdmin}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, err := principalOf(tt.ctx)
			if tt.want == (principal{}) {
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
	if (principal{Role: pki.RoleOperator}).may(authz.WorkloadsHost) || !(principal{Role: pki.RoleAdmin}).may(authz.WorkloadsHost) {
		t.Fatal("workloads.host must be the admin's alone")
	}
	if (principal{}).may(authz.WorkloadsRead) {
		t.Fatal("a principal without a role may do nothing")
	}
}

func TestValidateAllowLists(t *testing.T) {
	for _, ok := range [][2][]string{{{"operator"}, {"olga"}}, {{"viewer", "operator"}, nil}, {nil, nil}} {
		if err := validateAllowLists(ok[0], ok[1]); err != nil {
			t.Errorf("%v: %v", ok, err)
		}
	}
	for _, bad := range [][2][]string{{{"admin"}, nil}, {{"scheduler"}, nil}, {{""}, nil}, {nil, {"a/b"}}, {nil, {""}}} {
		if err := validateAllowLists(bad[0], bad[1]); status.Code(err) != codes.InvalidArgument {
			t.Errorf("%v: %v, want InvalidArgument", bad, err)
		}
	}
}
