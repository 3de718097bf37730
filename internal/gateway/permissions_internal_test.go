package gateway

import (
	"slices"
	"testing"

	"github.com/persys-dev/compute/internal/pki"
)

// The permission table and the roles each route is registered with agree,
// so that the fallback for routes missing from the table and the table
// give the same answers.
func TestPermissionTableMatchesRouteRoles(t *testing.T) {
	for _, rt := range (&gateway{}).routes() {
		key := rt.method + " " + rt.path
		perm, listed := routePermissions[key]
		if publicRoutes[key] {
			if rt.roles != nil {
				t.Errorf("%s is public but registered for roles %v", key, rt.roles)
			}
			continue
		}
		if !listed {
			continue
		}
		for _, role := range []pki.Role{pki.RoleViewer, pki.RoleOperator, pki.RoleAdmin} {
			if has, registered := RoleHas(role, perm), slices.Contains(rt.roles, role); has != registered {
				t.Errorf("%s: role %s holds %s: %v, but the route is registered for %v", key, role, perm, has, rt.roles)
			}
		}
	}
}
