// Package manifest owns the user-facing workload manifest: parsing YAML or
// JSON at the boundary (size limit, duplicate and unknown keys refused),
// one manifest (Parse) or a stream of --- separated documents (ParseAll),
// validating every field with a path-named error, and converting to and
// from the protobuf ApplyRequest and Workload. ValidateSpec applies the same
// rules to a protobuf WorkloadSpec, for the scheduler's gRPC boundary.
//
// Callers must treat a manifest as untrusted: call Parse or ParseAll (which
// validate) or Validate before ToApplyRequest. Every validation failure is an *Error
// (errors.Is(err, ErrInvalid) holds); carry it over gRPC with BadRequest and
// FromBadRequest.
package manifest

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"reflect"
	"regexp"
	"strconv"
	"strings"

	"sigs.k8s.io/yaml"
	goyaml "sigs.k8s.io/yaml/goyaml.v2"
)

// MaxSize is the largest manifest accepted, in bytes.
const MaxSize = 1 << 20

// APIVersion and Kind are the only header values accepted.
const (
	APIVersion = "persys/v1"
	Kind       = "Workload"
)

// Manifest is a workload as a user writes it.
type Manifest struct {
	APIVersion string   `json:"apiVersion,omitempty"`
	Kind       string   `json:"kind"`
	Metadata   Metadata `json:"metadata"`
	Spec       Spec     `json:"spec"`
}

// Metadata names and labels the workload.
type Metadata struct {
	Name   string            `json:"name"`
	Labels map[string]string `json:"labels,omitempty"`
}

// Spec is what to run and where.
type Spec struct {
	// Type is container, compose or vm.
	Type string `json:"type"`
	// DesiredState is running (the default) or stopped.
	DesiredState string            `json:"desiredState,omitempty"`
	Container    *Container        `json:"container,omitempty"`
	Compose      *Compose          `json:"compose,omitempty"`
	VM           *VM               `json:"vm,omitempty"`
	Resources    *Resources        `json:"resources,omitempty"`
	NodeSelector map[string]string `json:"nodeSelector,omitempty"`
	// NodeLossPolicy is what happens when the workload's node is lost:
	// reschedule (place it on another node after the grace period, the
	// behaviour when absent) or wait (keep it on its node until the node
	// returns).
	NodeLossPolicy string `json:"nodeLossPolicy,omitempty"`
	// SecretEnv and SecretFiles inject secret values (container and
	// compose workloads); ImagePullSecrets name registry credentials.
	SecretEnv        []SecretEnv  `json:"secretEnv,omitempty"`
	SecretFiles      []SecretFile `json:"secretFiles,omitempty"`
	ImagePullSecrets []string     `json:"imagePullSecrets,omitempty"`
	// Health checks the agent runs, as Kubernetes probes (container and
	// VM workloads): a startup probe gates the other two, a failing
	// liveness probe stops the instance (a failed attempt, reason
	// HEALTH_CHECK_FAILED), a readiness probe decides whether it is ready.
	StartupProbe   *Probe `json:"startupProbe,omitempty"`
	LivenessProbe  *Probe `json:"livenessProbe,omitempty"`
	ReadinessProbe *Probe `json:"readinessProbe,omitempty"`
}

// Container describes a container workload.
type Container struct {
	Image         string            `json:"image"`
	Command       []string          `json:"command,omitempty"`
	Args          []string          `json:"args,omitempty"`
	Env           map[string]string `json:"env,omitempty"`
	Ports         []Port            `json:"ports,omitempty"`
	Volumes       []Volume          `json:"volumes,omitempty"`
	RestartPolicy string            `json:"restartPolicy,omitempty"`
	Privileged    bool              `json:"privileged,omitempty"`
	Labels        map[string]string `json:"labels,omitempty"`
}

// Port publishes a container port on the host.
type Port struct {
	ContainerPort int    `json:"containerPort"`
	HostPort      int    `json:"hostPort,omitempty"`
	Protocol      string `json:"protocol,omitempty"`
	HostIP        string `json:"hostIP,omitempty"`
	// Dynamic asks for a host port from the node's dynamic range, chosen
	// by the scheduler at placement (HostPort must be 0).
	Dynamic bool `json:"dynamic,omitempty"`
}

// Volume mounts a host path (bind) or a named volume into the container.
type Volume struct {
	Type     string `json:"type"`
	Source   string `json:"source"`
	Target   string `json:"target"`
	ReadOnly bool   `json:"readOnly,omitempty"`
}

// Resources are the amounts the workload reserves.
type Resources struct {
	CPU    Quantity `json:"cpu,omitempty"`
	Memory Quantity `json:"memory,omitempty"`
	Disk   Quantity `json:"disk,omitempty"`
}

// Parse decodes a YAML or JSON manifest and validates it. Every problem is
// reported in an *Error whose field paths name the offending fields.
func Parse(data []byte) (*Manifest, error) {
	return parse(data, 0)
}

// parse is Parse for a document whose first line is line 1+offset of a
// stream (ParseAll), so that YAML errors name lines of the stream.
func parse(data []byte, offset int) (*Manifest, error) {
	m := &Manifest{}
	if err := decodeStrict(data, offset, manifestType, m); err != nil {
		return nil, err
	}
	if err := m.Validate(); err != nil {
		return nil, err
	}
	return m, nil
}

// decodeStrict decodes a YAML or JSON document into out, whose type is t:
// size limit, duplicate keys, unknown fields and wrong types are refused
// with field-named errors. It does not validate values.
func decodeStrict(data []byte, offset int, t reflect.Type, out any) error {
	if len(data) > MaxSize {
		return &Error{Fields: []FieldError{{Reason: fmt.Sprintf("manifest is %d bytes, larger than the limit of %d bytes", len(data), MaxSize)}}}
	}
	js, err := toJSON(data, offset)
	if err != nil {
		return err
	}
	var generic any
	dec := json.NewDecoder(bytes.NewReader(js))
	dec.UseNumber()
	if err := dec.Decode(&generic); err != nil {
		return &Error{Fields: []FieldError{{Reason: "invalid document: " + err.Error()}}}
	}
	switch generic.(type) {
	case nil:
		return &Error{Fields: []FieldError{{Reason: "manifest is empty"}}}
	case map[string]any:
	default:
		return &Error{Fields: []FieldError{{Reason: "manifest must be a YAML mapping or a JSON object"}}}
	}
	var c collector
	checkShape(&c, "", generic, t)
	if err := c.err(); err != nil {
		return err
	}
	dec = json.NewDecoder(bytes.NewReader(js))
	dec.DisallowUnknownFields()
	if err := dec.Decode(out); err != nil {
		// checkShape is stricter than encoding/json, so this is a backstop.
		return &Error{Fields: []FieldError{decodeFieldError(err)}}
	}
	return nil
}

// toJSON converts YAML (or JSON, which is YAML) to JSON, refusing duplicate
// keys and more than one document.
func toJSON(data []byte, offset int) ([]byte, error) {
	js, err := yaml.YAMLToJSONStrict(data)
	if err != nil {
		if fe, ok := duplicateKey(data, err, offset); ok {
			return nil, &Error{Fields: []FieldError{fe}}
		}
		return nil, &Error{Fields: []FieldError{{Reason: "invalid YAML: " + shiftLines(cleanYAMLError(err), offset)}}}
	}
	if n := countDocuments(data); n > 1 {
		return nil, &Error{Fields: []FieldError{{Reason: fmt.Sprintf("manifest holds %d YAML documents; give one workload per manifest", n)}}}
	}
	return js, nil
}

func cleanYAMLError(err error) string {
	s := err.Error()
	s = strings.TrimPrefix(s, "error converting YAML to JSON: ")
	s = strings.TrimPrefix(s, "yaml: ")
	return strings.Join(strings.Fields(s), " ")
}

// countDocuments counts the non-empty YAML documents in data. Errors are
// left to the converter, which has already accepted the first document.
func countDocuments(data []byte) int {
	d := goyaml.NewDecoder(bytes.NewReader(data))
	n := 0
	for n < 2 {
		var v any
		err := d.Decode(&v)
		if err == io.EOF {
			break
		}
		if err != nil {
			// A broken later document still means more than one.
			n++
			break
		}
		if v != nil {
			n++
		}
	}
	return n
}

var yamlLineRE = regexp.MustCompile(`\bline (\d+):`)

// shiftLines adds offset to every "line N:" of a YAML error message.
func shiftLines(s string, offset int) string {
	if offset == 0 {
		return s
	}
	return yamlLineRE.ReplaceAllStringFunc(s, func(m string) string {
		n, err := strconv.Atoi(m[len("line ") : len(m)-1])
		if err != nil {
			return m
		}
		return fmt.Sprintf("line %d:", n+offset)
	})
}

var dupKeyRE = regexp.MustCompile(`line (\d+): key (".*") already set in map`)

// duplicateKey turns a duplicate-key error into a field error whose path
// names the duplicated key.
func duplicateKey(data []byte, err error, offset int) (FieldError, bool) {
	m := dupKeyRE.FindStringSubmatch(err.Error())
	if m == nil {
		return FieldError{}, false
	}
	reason := "duplicate key (line " + m[1] + ")"
	if n, err := strconv.Atoi(m[1]); err == nil && offset != 0 {
		reason = fmt.Sprintf("duplicate key (line %d)", n+offset)
	}
	var doc goyaml.MapSlice
	if goyaml.Unmarshal(data, &doc) == nil {
		if path, ok := findDuplicate("", doc); ok {
			return FieldError{Field: path, Reason: reason}, true
		}
	}
	var key string
	if json.Unmarshal([]byte(m[2]), &key) != nil {
		key = m[2]
	}
	return FieldError{Field: keyPath("", key), Reason: reason}, true
}

// findDuplicate walks a YAML document decoded with every mapping kept as a
// MapSlice (which keeps duplicate keys) and returns the path of the first
// repeated key.
func findDuplicate(path string, v any) (string, bool) {
	switch t := v.(type) {
	case goyaml.MapSlice:
		seen := map[string]bool{}
		for _, item := range t {
			k := fmt.Sprint(item.Key)
			if seen[k] {
				return keyPath(path, k), true
			}
			seen[k] = true
		}
		for _, item := range t {
			if p, ok := findDuplicate(keyPath(path, fmt.Sprint(item.Key)), item.Value); ok {
				return p, true
			}
		}
	case []any:
		for i, e := range t {
			if p, ok := findDuplicate(index(path, i), e); ok {
				return p, true
			}
		}
	}
	return "", false
}

var unknownFieldRE = regexp.MustCompile(`^json: unknown field "(.*)"$`)

// decodeFieldError maps an encoding/json error to the best field path it
// carries.
func decodeFieldError(err error) FieldError {
	var te *json.UnmarshalTypeError
	if errors.As(err, &te) {
		return FieldError{Field: te.Field, Reason: fmt.Sprintf("must be %s, got %s", te.Type, te.Value)}
	}
	if m := unknownFieldRE.FindStringSubmatch(err.Error()); m != nil {
		return FieldError{Field: m[1], Reason: "unknown field"}
	}
	return FieldError{Reason: "invalid document: " + err.Error()}
}
