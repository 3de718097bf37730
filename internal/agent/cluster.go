package agent

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/persys-dev/compute/internal/pki"
	"github.com/persys-dev/compute/internal/runtime"
)

// Files of the agent's identity inside Config.DataDir.
const (
	// clusterFile records the cluster the data dir belongs to, written at
	// the first registration: every later start scopes its runtimes to it
	// before listing anything.
	clusterFile = "cluster.json"
	// instanceFile holds the agent instance id: the data dir's identity
	// at registration, so that a restart is the same agent and a second
	// agent started under the same node id is another.
	instanceFile = "instance-id"
)

// clusterRecord is clusterFile's content.
type clusterRecord struct {
	ClusterID string `json:"cluster_id"`
	// AdoptUnlabelled: objects of this node without a cluster label (made
	// by an agent before cluster ids) are this cluster's. Decided once,
	// when the record is first written: true only for a data dir that an
	// older agent used (it holds an allocation record but no cluster.json),
	// since that agent made them; a fresh data dir never adopts them.
	AdoptUnlabelled bool `json:"adopt_unlabelled"`
}

// errClusterMismatch: the scheduler told a cluster id other than the one
// the data dir belongs to.
var errClusterMismatch = errors.New("the data dir belongs to another cluster")

// openCluster reads the data dir's cluster record into c. Without one, c
// keeps an unknown id and adopts unlabelled objects only when the data
// dir predates cluster ids; adopt reports that choice for the record the
// first registration writes.
func openCluster(dir string, c *runtime.Cluster) (adopt bool, err error) {
	if dir == "" {
		return false, nil
	}
	b, err := os.ReadFile(filepath.Join(dir, clusterFile))
	switch {
	case errors.Is(err, os.ErrNotExist):
		_, lerr := os.Stat(filepath.Join(dir, ledgerFile))
		adopt = lerr == nil
		c.Set("", adopt)
		return adopt, nil
	case err != nil:
		return false, fmt.Errorf("read cluster record: %w", err)
	}
	var rec clusterRecord
	if err := json.Unmarshal(b, &rec); err != nil {
		return false, fmt.Errorf("read cluster record %s: %w", filepath.Join(dir, clusterFile), err)
	}
	if err := pki.ValidateClusterID(filepath.Join(dir, clusterFile)+": cluster_id", rec.ClusterID); err != nil {
		return false, err
	}
	c.Set(rec.ClusterID, rec.AdoptUnlabelled)
	return rec.AdoptUnlabelled, nil
}

// saveCluster writes the data dir's cluster record atomically.
func saveCluster(dir string, rec clusterRecord) error {
	if dir == "" {
		return nil
	}
	b, err := json.Marshal(rec)
	if err != nil {
		return err
	}
	path := filepath.Join(dir, clusterFile)
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, b, 0o600); err != nil {
		return fmt.Errorf("write cluster record: %w", err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("write cluster record: %w", err)
	}
	return nil
}

// loadInstanceID returns the data dir's agent instance id, creating it on
// first use; without a data dir a new one per process.
func loadInstanceID(dir string) (string, error) {
	fresh := func() (string, error) {
		b := make([]byte, 12)
		if _, err := rand.Read(b); err != nil {
			return "", fmt.Errorf("instance id: %w", err)
		}
		return hex.EncodeToString(b), nil
	}
	if dir == "" {
		return fresh()
	}
	path := filepath.Join(dir, instanceFile)
	b, err := os.ReadFile(path)
	if err == nil {
		id := strings.TrimSpace(string(b))
		if id == "" {
			return "", fmt.Errorf("instance id %s: empty", path)
		}
		return id, nil
	}
	if !errors.Is(err, os.ErrNotExist) {
		return "", fmt.Errorf("read instance id: %w", err)
	}
	id, err := fresh()
	if err != nil {
		return "", err
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return "", fmt.Errorf("write instance id: %w", err)
	}
	_, werr := f.WriteString(id + "\n")
	if cerr := f.Close(); werr == nil {
		werr = cerr
	}
	if werr != nil {
		os.Remove(path)
		return "", fmt.Errorf("write instance id: %w", werr)
	}
	return id, nil
}

// learnCluster takes the cluster id the scheduler told at registration.
// The first one is recorded in the data dir and scopes the runtimes from
// then on; a different one later is refused, so that nothing of the
// recorded cluster is reported to (and collected by) another.
func (a *Agent) learnCluster(told string) error {
	known := a.cluster.ID()
	switch {
	case told == "":
		// Runtimes scoped by cluster refuse applies until one is told:
		// schedulers are upgraded before agents.
		a.log.Warn("the scheduler told no cluster id (it predates cluster ids); workloads cannot be created until it does")
		return nil
	case known == told:
		return nil
	case known != "":
		return fmt.Errorf("cluster id %q told by the scheduler: %w %q (recorded in %s); start the agent with a fresh data dir to join this cluster",
			told, errClusterMismatch, known, filepath.Join(a.cfg.DataDir, clusterFile))
	}
	if err := pki.ValidateClusterID("cluster id told by the scheduler", told); err != nil {
		return err
	}
	if err := saveCluster(a.cfg.DataDir, clusterRecord{ClusterID: told, AdoptUnlabelled: a.adoptUnlabelled}); err != nil {
		return err
	}
	a.cluster.Set(told, a.adoptUnlabelled)
	a.log.Info("joined cluster", "cluster", told, "adopt_unlabelled", a.adoptUnlabelled)
	// The registration's list was made before the runtimes saw this
	// cluster's objects: the full one goes at once, not an interval later.
	a.Kick()
	return nil
}
