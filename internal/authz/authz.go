// Package authz is the one table of what each user role may do: the
// gateway checks a route's permission with it, and the scheduler checks
// it again from the caller's verified identity for what a route cannot
// see (a host path inside a manifest, a secret a workload references).
package authz

import (
	"slices"

	"github.com/persys-dev/compute/internal/pki"
)

// Permission names one thing a role may do.
type Permission string

// Permissions.
const (
	WorkloadsRead  Permission = "workloads.read"
	WorkloadsWrite Permission = "workloads.write"
	// WorkloadsHost admits what reaches the host itself: host bind mounts,
	// privileged mode (devices, capabilities, host namespaces) and host
	// ports below 1024. Nodes must allow the first two as well.
	WorkloadsHost Permission = "workloads.host"
	WorkloadsLogs Permission = "workloads.logs"
	// ServicesRead and ServicesWrite are workloads.read and
	// workloads.write for services (rollouts, scale); what a service's
	// template asks of its hosts needs workloads.host as a workload does.
	ServicesRead  Permission = "services.read"
	ServicesWrite Permission = "services.write"
	NodesRead     Permission = "nodes.read"
	NodesWrite    Permission = "nodes.write"
	ClusterRead   Permission = "cluster.read"
	EventsRead    Permission = "events.read"
	// SecretsRead admits reading secrets' metadata and referencing any
	// secret from a workload; without it a workload may reference only
	// secrets whose allow list names the caller's role or name.
	SecretsRead  Permission = "secrets.read"
	SecretsWrite Permission = "secrets.write"
	TokensRead   Permission = "tokens.read"
	TokensWrite  Permission = "tokens.write"
	UsersWrite   Permission = "users.write"
	IdentityRead Permission = "identity.read"
)

var (
	viewer   = []Permission{WorkloadsRead, WorkloadsLogs, ServicesRead, NodesRead, ClusterRead, EventsRead, IdentityRead}
	operator = append(slices.Clone(viewer), WorkloadsWrite, ServicesWrite, NodesWrite)
	admin    = append(slices.Clone(operator), WorkloadsHost, SecretsRead, SecretsWrite,
		TokensRead, TokensWrite, UsersWrite)
)

// byRole is what each user role may do. Daemon roles hold no user
// permission; the scheduler's own identity is handled by its callers.
var byRole = map[pki.Role][]Permission{
	pki.RoleViewer:   viewer,
	pki.RoleOperator: operator,
	pki.RoleAdmin:    admin,
}

// RoleHas reports whether role holds permission p.
func RoleHas(role pki.Role, p Permission) bool { return slices.Contains(byRole[role], p) }

// UserRoles are the roles a user (not a daemon) may hold, least first.
func UserRoles() []pki.Role { return []pki.Role{pki.RoleViewer, pki.RoleOperator, pki.RoleAdmin} }
