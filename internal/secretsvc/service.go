// Package secretsvc is the secrets service: the API (Put, Get, List,
// Delete) seals values with the keyring before they reach etcd and never
// returns them; the allow lists say which principals may reference a
// secret (CheckUse at apply, again at delivery); ValuesFor opens only the
// secrets a workload references, just before it is applied, for that
// workload's agent alone. Nothing here logs or records a value: events and
// log lines name secrets and keys only.
//
// Key rotation: the keyring is read at start (and on SIGHUP, where the
// command wires it); a secret is re-sealed with the current primary key on
// its next write.
//
// Callers: build it with New; the API methods check the caller's principal
// themselves (fail closed), but not whether this scheduler serves: the
// adapter checks that first. Errors are gRPC statuses or wrapped sentinels
// of internal/secrets and internal/store for the adapter to map.
package secretsvc

import (
	"log/slog"
	"time"

	persysv1 "github.com/persys-dev/compute/api/persys/v1"
	"github.com/persys-dev/compute/internal/model"
	"github.com/persys-dev/compute/internal/secrets"
	"github.com/persys-dev/compute/internal/store"
)

// Events records cluster events (asynchronously, best effort) with the
// type given.
type Events interface {
	Add(t model.EventType, ev *persysv1.Event)
}

// Config holds the service's collaborators.
type Config struct {
	Store *store.Store
	Audit *store.AuditLog
	// Keyring seals and opens values; nil disables the API (its calls
	// answer FailedPrecondition) and fails deliveries.
	Keyring *secrets.Keyring
	Events  Events
	Logger  *slog.Logger
	// Now is the clock (default time.Now).
	Now func() time.Time
	// Changed, when set, is called after a secret was created or updated,
	// so that workloads that waited for it are retried at once.
	Changed func(name string)
}

// Service is the secrets service; see the package comment.
type Service struct {
	store   *store.Store
	audit   *store.AuditLog
	keys    *secrets.Keyring
	events  Events
	log     *slog.Logger
	now     func() time.Time
	changed func(name string)
}

// New builds the service; Store, Audit and Events are required.
func New(cfg Config) *Service {
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	return &Service{store: cfg.Store, audit: cfg.Audit, keys: cfg.Keyring, events: cfg.Events,
		log: cfg.Logger, now: cfg.Now, changed: cfg.Changed}
}
