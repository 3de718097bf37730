// Package principal says who a call to the scheduler acts for. It owns the
// context key under which the authentication interceptor stores the
// caller's verified certificate identity (WithIdentity), and derives from
// it the principal: the user the gateway authenticated with the role it
// verified, or the caller's own certificate. It fails closed: a call
// without a verified identity, or forwarded by the gateway without a user
// role, has no principal, and Of answers PermissionDenied.
//
// Callers: the gRPC adapter stores the identity once per call; the loop and
// the services (identity, secrets) read it with Of, CN and RequireAdmin and
// check permissions with May and Require.
package principal

import (
	"context"
	"fmt"
	"slices"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/persys-dev/compute/api/persys/contract"
	persysv1 "github.com/persys-dev/compute/api/persys/v1"
	"github.com/persys-dev/compute/internal/authz"
	"github.com/persys-dev/compute/internal/pki"
)

// Principal is who a call acts for. Every permission the scheduler checks
// itself (host access, secret use) is checked against it.
type Principal struct {
	Name string
	Role pki.Role
}

// Scheduler is the scheduler acting for itself (it holds the CA).
var Scheduler = Principal{Name: "scheduler", Role: pki.RoleScheduler}

type identityKey struct{}

// WithIdentity returns ctx carrying the caller's verified identity; only
// the authentication interceptor calls it.
func WithIdentity(ctx context.Context, id pki.Identity) context.Context {
	return context.WithValue(ctx, identityKey{}, id)
}

// Identity is the verified certificate identity of the call (zero when the
// call passed no authentication, such as a join).
func Identity(ctx context.Context) pki.Identity {
	id, _ := ctx.Value(identityKey{}).(pki.Identity)
	return id
}

// Of returns the principal of a call that passed authentication.
func Of(ctx context.Context) (Principal, error) {
	id, ok := ctx.Value(identityKey{}).(pki.Identity)
	if !ok || id.Role == "" {
		return Principal{}, status.Error(codes.PermissionDenied, "no verified caller identity")
	}
	switch id.Role {
	case pki.RoleGateway:
		md, _ := metadata.FromIncomingContext(ctx)
		user, role := onlyValue(md, contract.MetadataUser), pki.Role(onlyValue(md, contract.MetadataRole))
		if user == "" || !slices.Contains(authz.UserRoles(), role) {
			return Principal{}, status.Errorf(codes.PermissionDenied,
				"gateway %q forwarded the call without a user and a user role (%s=%q, %s=%q)",
				id.CommonName, contract.MetadataUser, user, contract.MetadataRole, role)
		}
		return Principal{Name: user, Role: role}, nil
	case pki.RoleAdmin, pki.RoleOperator, pki.RoleViewer, pki.RoleScheduler:
		return Principal{Name: id.CommonName, Role: id.Role}, nil
	}
	return Principal{}, status.Errorf(codes.PermissionDenied, "caller %q with role %s acts for no user", id.CommonName, id.Role)
}

// onlyValue is the single value of a metadata key, "" when absent or
// given more than once.
func onlyValue(md metadata.MD, key string) string {
	if v := md.Get(key); len(v) == 1 {
		return v[0]
	}
	return ""
}

// OfWorkload is whoever applied the workload's current revision.
func OfWorkload(w *persysv1.Workload) Principal {
	return Principal{Name: w.GetAppliedBy(), Role: pki.Role(w.GetAppliedRole())}
}

// May reports whether the principal holds permission p. The scheduler's
// own identity (it holds the CA) may do everything.
func (p Principal) May(perm authz.Permission) bool {
	return p.Role == pki.RoleScheduler || authz.RoleHas(p.Role, perm)
}

// Require refuses with a *FieldDenied naming the field and the missing
// permission.
func (p Principal) Require(perm authz.Permission, field, what string) error {
	if p.May(perm) {
		return nil
	}
	return &FieldDenied{Field: field, Reason: fmt.Sprintf("%s needs permission %s, which %s lacks", what, perm, p)}
}

// FieldDenied refuses one field of a request for want of a permission.
// It is PermissionDenied at the gRPC boundary; a caller that embeds the
// checked object in a larger one (a service's template) renames Field.
type FieldDenied struct {
	Field  string
	Reason string
}

func (e *FieldDenied) Error() string { return e.Field + ": " + e.Reason }

// GRPCStatus makes the refusal PermissionDenied over gRPC.
func (e *FieldDenied) GRPCStatus() *status.Status {
	return status.New(codes.PermissionDenied, e.Error())
}

func (p Principal) String() string {
	if p.Role == "" {
		return fmt.Sprintf("user %q (no role recorded)", p.Name)
	}
	return fmt.Sprintf("user %q with role %s", p.Name, p.Role)
}

// CN names who asked, for logs and events: the certificate's common name,
// or, for calls the gateway forwards, the user the gateway authenticated.
func CN(ctx context.Context) string {
	id := Identity(ctx)
	if id.Role == pki.RoleGateway {
		if u := onlyValue(metadataOf(ctx), contract.MetadataUser); u != "" {
			return u
		}
	}
	return id.CommonName
}

func metadataOf(ctx context.Context) metadata.MD {
	md, _ := metadata.FromIncomingContext(ctx)
	return md
}

// RequireAdmin admits an admin's own certificate, or the gateway acting for
// a user whose forwarded role is admin.
func RequireAdmin(ctx context.Context, method string) error {
	id := Identity(ctx)
	switch id.Role {
	case pki.RoleAdmin:
		return nil
	case pki.RoleGateway:
		role := onlyValue(metadataOf(ctx), contract.MetadataRole)
		if role == string(pki.RoleAdmin) {
			return nil
		}
		return status.Errorf(codes.PermissionDenied, "%s requires role admin, user %q has role %q", method, CN(ctx), role)
	}
	return status.Errorf(codes.PermissionDenied, "%s requires role admin, caller %q has role %s", method, id.CommonName, id.Role)
}
