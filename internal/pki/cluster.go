package pki

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// ClusterIDFile holds the cluster id inside a CA directory. It is created
// with the CA and outlives CA rotations (RotateCA replaces only the CA's
// certificate, key and bundle), so the id names the cluster, not one CA.
const ClusterIDFile = "cluster-id"

// clusterIDBytes is the id's randomness: 128 bits, 32 hex digits.
const clusterIDBytes = 16

// NewClusterID returns a fresh random cluster id (32 lowercase hex digits).
func NewClusterID() (string, error) {
	b := make([]byte, clusterIDBytes)
	if _, err := rand.Read(b); err != nil {
		return "", fmt.Errorf("cluster id: %w", err)
	}
	return hex.EncodeToString(b), nil
}

// ValidateClusterID checks the shape of a cluster id: 8 to 64 characters of
// lowercase letters, digits and '-', so that it fits a label value, a
// file name and a container name. field names the argument in the error.
func ValidateClusterID(field, id string) error {
	if len(id) < 8 || len(id) > 64 {
		return fmt.Errorf("%s %q: %w: want 8 to 64 characters", field, id, ErrInvalid)
	}
	for _, r := range id {
		if (r < 'a' || r > 'z') && (r < '0' || r > '9') && r != '-' {
			return fmt.Errorf("%s %q: %w: only lowercase letters, digits and '-' are allowed", field, id, ErrInvalid)
		}
	}
	return nil
}

// ReadClusterID reads dir/cluster-id; ErrNotExist (wrapped) when absent.
func ReadClusterID(dir string) (string, error) {
	path := filepath.Join(dir, ClusterIDFile)
	b, err := readFile(path)
	if err != nil {
		return "", fmt.Errorf("read cluster id: %w", err)
	}
	id := strings.TrimSpace(string(b))
	if err := ValidateClusterID(path, id); err != nil {
		return "", fmt.Errorf("read cluster id: %w", err)
	}
	return id, nil
}

// EnsureClusterID returns the cluster id of the CA in dir, creating
// dir/cluster-id (0644) when missing: InitCA calls it, and a CA made before
// cluster ids existed gets one the first time it is asked.
func EnsureClusterID(dir string) (string, error) {
	id, err := ReadClusterID(dir)
	if err == nil || !errors.Is(err, os.ErrNotExist) {
		return id, err
	}
	id, err = NewClusterID()
	if err != nil {
		return "", err
	}
	if err := writeNew(filepath.Join(dir, ClusterIDFile), []byte(id+"\n"), 0o644); err != nil {
		if errors.Is(err, ErrExists) {
			// Another process created it meanwhile: its id wins.
			return ReadClusterID(dir)
		}
		return "", fmt.Errorf("write cluster id: %w", err)
	}
	return id, nil
}
