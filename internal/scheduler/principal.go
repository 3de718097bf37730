package scheduler

import (
	"context"
	"fmt"
	"slices"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	persysv1 "github.com/persys-dev/compute/api/persys/v1"
	"github.com/persys-dev/compute/internal/authz"
	"github.com/persys-dev/compute/internal/pki"
)

// principal is who a call acts for: the user the gateway authenticated,
// with the role it verified, or the caller's own certificate. Every
// permission the scheduler checks itself (host access, secret use) is
// checked against it, and it fails closed: a call without a verified
// identity, or forwarded by the gateway without a user role, has none.
type principal struct {
	Name string
	Role pki.Role
}

// principalOf returns the principal of a call that passed UnaryAuth.
func principalOf(ctx context.Context) (principal, error) {
	id, ok := ctx.Value(callerKey{}).(pki.Identity)
	if !ok || id.Role == "" {
		return principal{}, status.Error(codes.PermissionDenied, "no verified caller identity")
	}
	switch id.Role {
	case pki.RoleGateway:
		md, _ := metadata.FromIncomingContext(ctx)
		user, role := onlyValue(md, authz.MetadataUser), pki.Role(onlyValue(md, authz.MetadataRole))
		if user == "" || !slices.Contains(authz.UserRoles(), role) {
			return principal{}, status.Errorf(codes.PermissionDenied,
				"gateway %q forwarded the call without a user and a user role (%s=%q, %s=%q)",
				id.CommonName, authz.MetadataUser, user, authz.MetadataRole, role)
		}
		return principal{Name: user, Role: role}, nil
	case pki.RoleAdmin, pki.RoleOperator, pki.RoleViewer, pki.RoleScheduler:
		return principal{Name: id.CommonName, Role: id.Role}, nil
	}
	return principal{}, status.Errorf(codes.PermissionDenied, "caller %q with role %s acts for no user", id.CommonName, id.Role)
}

// onlyValue is the single value of a metadata key, "" when absent or
// given more than once.
func onlyValue(md metadata.MD, key string) string {
	if v := md.Get(key); len(v) == 1 {
		return v[0]
	}
	return ""
}

// principalOfWorkload is whoever applied the workload's current revision.
func principalOfWorkload(w *persysv1.Workload) principal {
	return principal{Name: w.GetAppliedBy(), Role: pki.Role(w.GetAppliedRole())}
}

// may reports whether the principal holds permission p. The scheduler's
// own identity (it holds the CA) may do everything.
func (p principal) may(perm authz.Permission) bool {
	return p.Role == pki.RoleScheduler || authz.RoleHas(p.Role, perm)
}

// require refuses with PermissionDenied naming the field and the missing
// permission.
func (p principal) require(perm authz.Permission, field, what string) error {
	if p.may(perm) {
		return nil
	}
	return status.Errorf(codes.PermissionDenied, "%s: %s needs permission %s, which %s lacks", field, what, perm, p)
}

func (p principal) String() string {
	if p.Role == "" {
		return fmt.Sprintf("user %q (no role recorded)", p.Name)
	}
	return fmt.Sprintf("user %q with role %s", p.Name, p.Role)
}
