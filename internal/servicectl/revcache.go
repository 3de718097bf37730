package servicectl

import (
	"sync"

	persysv1 "github.com/persys-dev/compute/api/persys/v1"
)

// revisionCache remembers, per service, the revision of its current
// template, so that a step does not read every kept revision from etcd
// (a rolling update steps each service many times). Revisions are
// immutable and only this controller writes or prunes them, so an entry
// stays right until the controller stores a revision of that service
// (pruning may drop older ones), the service is re-created (another
// uid), or the controller stops leading (Run resets it).
type revisionCache struct {
	mu sync.Mutex
	m  map[string]cachedRevision
}

type cachedRevision struct {
	uid string
	rev *persysv1.ServiceRevision
}

// get returns the cached revision of service name (uid) with hash.
func (rc *revisionCache) get(name, uid, hash string) *persysv1.ServiceRevision {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	e, ok := rc.m[name]
	if !ok || e.uid != uid || e.rev.GetTemplateHash() != hash {
		return nil
	}
	return e.rev
}

func (rc *revisionCache) put(name, uid string, r *persysv1.ServiceRevision) {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	rc.m[name] = cachedRevision{uid: uid, rev: r}
}

func (rc *revisionCache) forget(name string) {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	delete(rc.m, name)
}

func (rc *revisionCache) reset() {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	clear(rc.m)
}
