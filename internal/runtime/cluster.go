package runtime

import "sync"

// Cluster is the cluster whose objects a runtime creates and sees. The
// agent learns the id from its data dir or at its first registration and
// sets it before it lists anything; runtimes read it at every call. A
// runtime given no Cluster (nil) is not scoped by cluster: it sees every
// object of its node, as before cluster ids.
type Cluster struct {
	mu    sync.RWMutex
	id    string
	adopt bool
}

// NewCluster returns a Cluster whose id is not known yet.
func NewCluster() *Cluster { return &Cluster{} }

// Set records the cluster id, and whether objects without a cluster label
// (made by agents before cluster ids) are adopted as this cluster's: the
// agent decides that once per data dir (see the agent's docs).
func (c *Cluster) Set(id string, adoptUnlabelled bool) {
	c.mu.Lock()
	c.id, c.adopt = id, adoptUnlabelled
	c.mu.Unlock()
}

// ID returns the cluster id; "" while unknown or for a nil Cluster.
func (c *Cluster) ID() string {
	if c == nil {
		return ""
	}
	c.mu.RLock()
	defer c.mu.RUnlock()
	return c.id
}

// Owns reports whether an object whose cluster label is label belongs to
// this cluster: its own id, or no label at all when unlabelled objects are
// adopted. Before the id is known, only adopted unlabelled objects do, so
// nothing of another cluster is ever listed, reported or collected. A nil
// Cluster owns everything.
func (c *Cluster) Owns(label string) bool {
	if c == nil {
		return true
	}
	c.mu.RLock()
	defer c.mu.RUnlock()
	if label == "" {
		return c.adopt
	}
	return c.id != "" && label == c.id
}

// Short is the cluster id cut to 12 characters, for names that must differ
// between clusters (container and project names) but stay readable; ""
// while unknown.
func (c *Cluster) Short() string {
	id := c.ID()
	if len(id) > 12 {
		return id[:12]
	}
	return id
}
