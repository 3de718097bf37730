package fedstore

import "github.com/persys-dev/compute/internal/store"

// ElectionStore returns the project's store over the federation's etcd
// client and prefix, for the election alone: replicas campaign on
// PREFIX/election with the scheduler's recipe (internal/scheduler/election)
// rather than a copy of it. Nothing else may use it; the federation's keys
// are this package's.
func (s *Store) ElectionStore() *store.Store {
	return store.New(s.cli, store.Options{Prefix: s.prefix})
}
