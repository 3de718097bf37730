package agent

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// machineIDFiles hold the machine's stable id (systemd, then D-Bus).
var machineIDFiles = []string{"/etc/machine-id", "/var/lib/dbus/machine-id"}

// DefaultNodeID is the node id an agent uses when none is given: the host
// name and 8 hex digits of a hash of the machine id and the absolute data
// dir, e.g. "web-1-3fa2c9d0". The host name alone was the default before,
// and two agents on one host (or two hosts of one name, or clones) then
// shared a node id; the hash keeps them apart and stays the same across
// restarts. Without a machine id the host name and the data dir decide.
func DefaultNodeID(dataDir string) (string, error) {
	host, err := os.Hostname()
	if err != nil {
		return "", fmt.Errorf("default node id: %w", err)
	}
	host = strings.ToLower(strings.TrimSpace(host))
	if host == "" || strings.ContainsAny(host, "/ \t\n\x00") {
		host = "node"
	}
	// A DNS label at most, so that the id stays a valid name with its hash.
	host = host[:min(len(host), 63)]
	dir, err := filepath.Abs(dataDir)
	if err != nil {
		return "", fmt.Errorf("default node id: data dir %q: %w", dataDir, err)
	}
	machine := host
	for _, f := range machineIDFiles {
		if b, err := os.ReadFile(f); err == nil && len(strings.TrimSpace(string(b))) > 0 {
			machine = strings.TrimSpace(string(b))
			break
		}
	}
	sum := sha256.Sum256([]byte(machine + "\x00" + filepath.Clean(dir)))
	return host + "-" + hex.EncodeToString(sum[:4]), nil
}
