// Package identity is the cluster's identity service: the CA's signing
// calls (agents joining with a join token, certificate renewals, user
// certificates), join tokens, revocations and the revocation set the TLS
// layer checks, API tokens, and the audit log the gateway writes to. It
// keeps its state in etcd through internal/store and owns nothing of the
// scheduler's loop: what it needs from it (which nodes are alive, and
// their leases) it asks through Nodes.
//
// Callers: build it with New, configure the CA with SetCA, run Run for the
// life of the process, and call its methods from an adapter that has
// already authorized the caller (a leader check, the admin role where the
// method says so). Errors are gRPC statuses or wrapped store sentinels;
// the adapter maps the latter to codes once, at the boundary.
package identity

import (
	"log/slog"
	"sync"
	"time"

	persysv1 "github.com/persys-dev/compute/api/persys/v1"
	"github.com/persys-dev/compute/internal/model"
	"github.com/persys-dev/compute/internal/pki"
	"github.com/persys-dev/compute/internal/store"
)

// Nodes is what the service needs from the scheduler's node cache.
type Nodes interface {
	// NodeAlive reports whether node id is registered and alive.
	NodeAlive(id string) bool
	// AliveNodeLeases maps every alive node to its lease id.
	AliveNodeLeases() map[string]int64
}

// Events records cluster events (asynchronously, best effort) with the
// type given.
type Events interface {
	Add(t model.EventType, ev *persysv1.Event)
}

// Config holds the service's collaborators.
type Config struct {
	Store  *store.Store
	Audit  *store.AuditLog
	Nodes  Nodes
	Events Events
	Logger *slog.Logger
	// Now is the clock (default time.Now).
	Now func() time.Time
}

// Service is the identity service; see the package comment.
type Service struct {
	store   *store.Store
	audit   *store.AuditLog
	nodes   Nodes
	events  Events
	log     *slog.Logger
	now     func() time.Time
	revoked *pki.RevocationSet

	mu sync.Mutex
	ca CAConfig
	// serials maps node id to the serial of the certificate it last
	// registered or heartbeated with.
	serials map[string]string
	// handled remembers revocations already acted upon (key → time).
	handled map[string]time.Time
}

// New builds the service; Store, Audit, Nodes and Events are required.
func New(cfg Config) *Service {
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	return &Service{
		store: cfg.Store, audit: cfg.Audit, nodes: cfg.Nodes, events: cfg.Events,
		log: cfg.Logger, now: cfg.Now, revoked: pki.NewRevocationSet(),
		serials: map[string]string{}, handled: map[string]time.Time{},
	}
}
