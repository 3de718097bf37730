package gateway

// Authorization: every route needs one permission, named in routePermissions;
// each user role holds a set of permissions (rolePermissions). Viewers read,
// operators also change workloads and nodes, admins also manage tokens,
// users and secrets. Refusals are 403 naming the missing permission.

import (
	"fmt"
	"net/http"
	"slices"
	"strings"

	"github.com/persys-dev/compute/internal/authz"
	"github.com/persys-dev/compute/internal/gateway/authn"
	"github.com/persys-dev/compute/internal/gateway/httperr"
	"github.com/persys-dev/compute/internal/pki"
)

// Permission names one thing a role may do (the table is package authz's).
type Permission = authz.Permission

// Permissions.
const (
	PermWorkloadsRead  = authz.WorkloadsRead
	PermWorkloadsWrite = authz.WorkloadsWrite
	PermWorkloadsHost  = authz.WorkloadsHost
	PermWorkloadsLogs  = authz.WorkloadsLogs
	PermServicesRead   = authz.ServicesRead
	PermServicesWrite  = authz.ServicesWrite
	PermNodesRead      = authz.NodesRead
	PermNodesWrite     = authz.NodesWrite
	PermClusterRead    = authz.ClusterRead
	PermEventsRead     = authz.EventsRead
	PermSecretsRead    = authz.SecretsRead
	PermSecretsWrite   = authz.SecretsWrite
	PermTokensRead     = authz.TokensRead
	PermTokensWrite    = authz.TokensWrite
	PermUsersWrite     = authz.UsersWrite
	PermIdentityRead   = authz.IdentityRead
)

// publicRoutes need no identity at all.
var publicRoutes = map[string]bool{
	"GET /healthz":      true,
	"GET /openapi.json": true,
	// The console's login page and its script and stylesheet.
	"GET /ui/login":   true,
	"GET /ui/static/": true,
}

// routePermissions is the one table of what each route needs, keyed by
// "METHOD pattern" as the routes are registered.
var routePermissions = map[string]Permission{
	"POST /v1/workloads":                PermWorkloadsWrite,
	"POST /v1/manifests":                PermWorkloadsWrite,
	"GET /v1/workloads":                 PermWorkloadsRead,
	"GET /v1/workloads/{name}":          PermWorkloadsRead,
	"DELETE /v1/workloads/{name}":       PermWorkloadsWrite,
	"GET /v1/workloads/{name}/wait":     PermWorkloadsRead,
	"POST /v1/workloads/{name}/retry":   PermWorkloadsWrite,
	"GET /v1/workloads/{name}/logs":     PermWorkloadsLogs,
	"POST /v1/services":                 PermServicesWrite,
	"GET /v1/services":                  PermServicesRead,
	"GET /v1/services/{name}":           PermServicesRead,
	"DELETE /v1/services/{name}":        PermServicesWrite,
	"POST /v1/services/{name}/scale":    PermServicesWrite,
	"GET /v1/services/{name}/history":   PermServicesRead,
	"GET /v1/services/{name}/endpoints": PermServicesRead,
	"POST /v1/services/{name}/undo":     PermServicesWrite,
	"POST /v1/services/{name}/pause":    PermServicesWrite,
	"POST /v1/services/{name}/resume":   PermServicesWrite,
	"POST /v1/services/{name}/promote":  PermServicesWrite,
	"GET /v1/nodes":                     PermNodesRead,
	"GET /v1/nodes/{id}":                PermNodesRead,
	"POST /v1/nodes/{id}/cordon":        PermNodesWrite,
	"POST /v1/nodes/{id}/uncordon":      PermNodesWrite,
	"POST /v1/nodes/{id}/drain":         PermNodesWrite,
	"GET /v1/leader":                    PermClusterRead,
	"GET /v1/cluster/summary":           PermClusterRead,
	"GET /v1/events":                    PermEventsRead,
	"GET /v1/secrets":                   PermSecretsRead,
	"GET /v1/secrets/{name}":            PermSecretsRead,
	"POST /v1/secrets":                  PermSecretsWrite,
	"PUT /v1/secrets/{name}":            PermSecretsWrite,
	"DELETE /v1/secrets/{name}":         PermSecretsWrite,
	"GET /v1/tokens":                    PermTokensRead,
	"POST /v1/tokens":                   PermTokensWrite,
	"DELETE /v1/tokens/{id}":            PermTokensWrite,
	"POST /v1/users/{name}/certificate": PermUsersWrite,
	"GET /v1/whoami":                    PermIdentityRead,
	// The web console: a page needs the read permission of what it shows;
	// its actions are REST calls with their own permissions above.
	"GET /ui/{$}":              PermClusterRead,
	"GET /ui/nodes":            PermNodesRead,
	"GET /ui/workloads":        PermWorkloadsRead,
	"GET /ui/workloads/{name}": PermWorkloadsRead,
	"GET /ui/events":           PermEventsRead,
	"GET /ui/services":         PermServicesRead,
	"GET /ui/services/{name}":  PermServicesRead,
	"POST /ui/login":           PermIdentityRead,
	"POST /ui/logout":          PermIdentityRead,
}

// RoleHas reports whether role holds permission p.
func RoleHas(role pki.Role, p Permission) bool { return authz.RoleHas(role, p) }

// RoutePermission returns the permission a route (by "METHOD pattern")
// needs, "" for public routes. A route missing from the table needs
// "<first path segment after /v1/>.<read|write>", held by the roles the
// route was registered with.
func RoutePermission(key string) Permission {
	if publicRoutes[key] {
		return ""
	}
	if p, ok := routePermissions[key]; ok {
		return p
	}
	method, path, _ := strings.Cut(key, " ")
	res := strings.TrimPrefix(path, "/v1/")
	res, _, _ = strings.Cut(res, "/")
	if res == "" {
		res = "api"
	}
	verb := "write"
	if method == http.MethodGet || method == http.MethodHead {
		verb = "read"
	}
	return Permission(res + "." + verb)
}

// authorize admits a request when its caller holds the route's permission.
func (g *gateway) authorize(rt route, h func(http.ResponseWriter, *http.Request) (int, error)) func(http.ResponseWriter, *http.Request) (int, error) {
	key := rt.method + " " + rt.path
	if publicRoutes[key] {
		return h
	}
	perm := RoutePermission(key)
	_, listed := routePermissions[key]
	return func(w http.ResponseWriter, r *http.Request) (int, error) {
		a := authn.FromRequest(r)
		if a.Err != nil {
			return 0, a.Err
		}
		if a.ID == nil {
			return 0, authn.ErrNoCredentials
		}
		allowed := RoleHas(a.ID.Role, perm)
		if !listed {
			// Not in the table: the roles the route was registered with.
			allowed = rt.roles == nil && a.ID.Role.Valid() || slices.Contains(rt.roles, a.ID.Role)
		}
		if !allowed {
			return 0, httperr.New(http.StatusForbidden, fmt.Sprintf("permission denied: role %s lacks %s", roleName(a.ID.Role), perm))
		}
		return h(w, r)
	}
}

func roleName(r pki.Role) string {
	if r == "" {
		return "(none)"
	}
	return string(r)
}
