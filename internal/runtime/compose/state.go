package compose

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
)

// Label on containers: the service's desired replica count, so status can
// count without the compose file.
const (
	labelReplicas = "persys.compose.replicas"
)

// state is what Apply records in the workload's folder: what was applied
// and what Delete and Status need without the spec.
type state struct {
	Name         string         `json:"name"`
	UID          string         `json:"uid"`
	Revision     uint64         `json:"revision"`
	Desired      string         `json:"desired"`
	Project      string         `json:"project"`
	RetainVolume bool           `json:"retain_volumes"`
	Replicas     map[string]int `json:"replicas"`
	Commit       string         `json:"commit,omitempty"`
	Complete     bool           `json:"complete"`
}

func (r *Runtime) readState(name string) (*state, error) {
	data, err := os.ReadFile(filepath.Join(r.workDir(name), "state.json"))
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var st state
	if err := json.Unmarshal(data, &st); err != nil {
		return nil, fmt.Errorf("state of %s: %w", name, err)
	}
	return &st, nil
}

func (r *Runtime) writeState(st *state) error {
	dir := r.workDir(st.Name)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	data, err := json.Marshal(st)
	if err != nil {
		return err
	}
	tmp := filepath.Join(dir, "state.json.tmp")
	if err := os.WriteFile(tmp, data, 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, filepath.Join(dir, "state.json"))
}
