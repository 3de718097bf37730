package manifest

// The Service kind: a replicated set of identical workloads with a rolling
// update policy. Its template is a workload spec, validated by the
// workload rules under spec.template.

import (
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"time"

	persysv1 "github.com/persys-dev/compute/api/persys/v1"
)

// KindService is the kind of a service manifest.
const KindService = "Service"

// Limits of a service.
const (
	// MaxServiceNameLen leaves room in a replica's name for "-", an
	// 8-character revision hash, "-" and a 4-digit index (63 in all).
	MaxServiceNameLen = 48
	MaxReplicas       = 1000
	// MaxMinReadySeconds and MaxProgressDeadline bound the update timings.
	MaxMinReadySeconds  = 3600
	MaxProgressDeadline = 24 * time.Hour
	// DefaultMaxSurge applies when update names neither maxSurge nor
	// maxUnavailable: one extra replica at a time, never one fewer.
	DefaultMaxSurge = 1
	// DefaultProgressDeadline applies when update.progressDeadline is absent.
	DefaultProgressDeadline = 10 * time.Minute
	// DefaultDrainDelay applies when update.drainDelay is absent: long
	// enough for a client following the endpoints watch to let go of a
	// replica before it stops.
	DefaultDrainDelay = 2 * time.Second
	// MaxDrainDelay bounds update.drainDelay.
	MaxDrainDelay = 10 * time.Minute
)

var serviceManifestType = reflect.TypeFor[ServiceManifest]()

// ServiceManifest is a service as a user writes it.
type ServiceManifest struct {
	APIVersion string      `json:"apiVersion,omitempty"`
	Kind       string      `json:"kind"`
	Metadata   Metadata    `json:"metadata"`
	Spec       ServiceSpec `json:"spec"`
}

// ServiceSpec is how many replicas of which template, where and how they
// are updated.
type ServiceSpec struct {
	// Replicas defaults to 1 when absent.
	Replicas *int `json:"replicas,omitempty"`
	// Selector labels are put on every replica.
	Selector map[string]string `json:"selector,omitempty"`
	Spread   *Spread           `json:"spread,omitempty"`
	Update   *UpdatePolicy     `json:"update,omitempty"`
	Template *Spec             `json:"template"`
}

// Spread limits how replicas share nodes.
type Spread struct {
	MaxPerNode int    `json:"maxPerNode,omitempty"`
	NodeLabel  string `json:"nodeLabel,omitempty"`
}

// UpdatePolicy is how a template change rolls out.
type UpdatePolicy struct {
	MaxUnavailable  *int `json:"maxUnavailable,omitempty"`
	MaxSurge        *int `json:"maxSurge,omitempty"`
	MinReadySeconds int  `json:"minReadySeconds,omitempty"`
	// ProgressDeadline is a Go duration such as "10m".
	ProgressDeadline string `json:"progressDeadline,omitempty"`
	AutoRollback     bool   `json:"autoRollback,omitempty"`
	Canary           int    `json:"canary,omitempty"`
	Paused           bool   `json:"paused,omitempty"`
	// DrainDelay is a Go duration such as "2s": how long a replica stays
	// out of the endpoints before it is stopped ("0s": at once).
	DrainDelay string `json:"drainDelay,omitempty"`
}

// KindOf returns the kind a YAML or JSON document declares ("" when it
// declares none or does not parse; Parse reports why).
func KindOf(data []byte) string {
	js, err := toJSON(data, 0)
	if err != nil {
		return ""
	}
	var head struct {
		Kind any `json:"kind"`
	}
	if json.Unmarshal(js, &head) != nil {
		return ""
	}
	k, _ := head.Kind.(string)
	return k
}

// ParseService decodes a YAML or JSON service manifest and validates it;
// every problem is in an *Error naming its field.
func ParseService(data []byte) (*ServiceManifest, error) {
	m := &ServiceManifest{}
	if err := decodeStrict(data, 0, serviceManifestType, m); err != nil {
		return nil, err
	}
	if err := m.Validate(); err != nil {
		return nil, err
	}
	return m, nil
}

// Validate checks every field of the service and its template.
func (m *ServiceManifest) Validate() error {
	var c collector
	if m == nil {
		c.add("", "manifest is empty")
		return c.err()
	}
	if m.APIVersion != "" && m.APIVersion != APIVersion {
		c.add("apiVersion", "must be %q", APIVersion)
	}
	if m.Kind != KindService {
		c.add("kind", "must be %q", KindService)
	}
	validateName(&c, "metadata.name", m.Metadata.Name)
	if len(m.Metadata.Name) > MaxServiceNameLen {
		c.add("metadata.name", "a service name is at most %d characters (its replicas' names add a revision and an index)", MaxServiceNameLen)
	}
	validateLabels(&c, "metadata.labels", m.Metadata.Labels, false)
	validateServiceSpec(&c, &m.Spec)
	return c.err()
}

func validateServiceSpec(c *collector, s *ServiceSpec) {
	if s.Replicas != nil && (*s.Replicas < 0 || *s.Replicas > MaxReplicas) {
		c.add("spec.replicas", "must be between 0 and %d, got %d", MaxReplicas, *s.Replicas)
	}
	validateLabels(c, "spec.selector", s.Selector, true)
	if sp := s.Spread; sp != nil {
		if sp.MaxPerNode < 0 || sp.MaxPerNode > MaxReplicas {
			c.add("spec.spread.maxPerNode", "must be between 0 (no limit) and %d, got %d", MaxReplicas, sp.MaxPerNode)
		}
		if sp.NodeLabel != "" && (len(sp.NodeLabel) > MaxLabelKey || !labelKeyRE.MatchString(sp.NodeLabel)) {
			c.add("spec.spread.nodeLabel", "must be a label key: letters, digits, '.', '_', '/' and '-', at most %d characters", MaxLabelKey)
		}
	}
	validateUpdatePolicy(c, s.Update, replicasOf(s))
	if s.Template == nil {
		c.add("spec.template", "required: the workload spec of every replica (type and container, compose or vm)")
		return
	}
	// The name is the service's concern (checked above): only the spec's
	// problems are reported, under spec.template.
	tmpl := &Manifest{Kind: Kind, Metadata: Metadata{Name: "template"}, Spec: *s.Template}
	var e *Error
	if err := tmpl.Validate(); errors.As(err, &e) {
		for _, f := range e.Fields {
			if rest, ok := strings.CutPrefix(f.Field, "spec"); ok {
				// A reason that points at another field of the spec
				// (a probe's port at spec.container.ports) points
				// under spec.template too.
				c.add("spec.template"+rest, "%s", strings.ReplaceAll(f.Reason, " spec.", " spec.template."))
			}
		}
	}
}

func replicasOf(s *ServiceSpec) int {
	if s.Replicas == nil {
		return 1
	}
	return *s.Replicas
}

func validateUpdatePolicy(c *collector, u *UpdatePolicy, replicas int) {
	if u == nil {
		return
	}
	for _, f := range []struct {
		field string
		v     *int
	}{{"spec.update.maxUnavailable", u.MaxUnavailable}, {"spec.update.maxSurge", u.MaxSurge}} {
		if f.v != nil && (*f.v < 0 || *f.v > MaxReplicas) {
			c.add(f.field, "must be between 0 and %d, got %d", MaxReplicas, *f.v)
		}
	}
	if u.MaxUnavailable != nil && u.MaxSurge != nil && *u.MaxUnavailable == 0 && *u.MaxSurge == 0 {
		c.add("spec.update.maxSurge", "maxSurge and maxUnavailable are both 0: no replica could ever be replaced; set one of them above 0")
	}
	if u.MinReadySeconds < 0 || u.MinReadySeconds > MaxMinReadySeconds {
		c.add("spec.update.minReadySeconds", "must be between 0 and %d, got %d", MaxMinReadySeconds, u.MinReadySeconds)
	}
	if u.ProgressDeadline != "" {
		d, err := time.ParseDuration(u.ProgressDeadline)
		switch {
		case err != nil:
			c.add("spec.update.progressDeadline", "must be a duration such as \"10m\" or \"90s\", got %q", u.ProgressDeadline)
		case d < time.Second || d > MaxProgressDeadline:
			c.add("spec.update.progressDeadline", "must be between 1s and %s, got %s", MaxProgressDeadline, u.ProgressDeadline)
		case d%time.Second != 0:
			c.add("spec.update.progressDeadline", "must be whole seconds, got %s", u.ProgressDeadline)
		}
	}
	if u.DrainDelay != "" {
		d, err := time.ParseDuration(u.DrainDelay)
		switch {
		case err != nil:
			c.add("spec.update.drainDelay", "must be a duration such as \"2s\" or \"500ms\", got %q", u.DrainDelay)
		case d < 0 || d > MaxDrainDelay:
			c.add("spec.update.drainDelay", "must be between 0s and %s, got %s", MaxDrainDelay, u.DrainDelay)
		case d%time.Millisecond != 0:
			c.add("spec.update.drainDelay", "must be whole milliseconds, got %s", u.DrainDelay)
		}
	}
	if u.Canary < 0 || (replicas > 0 && u.Canary > replicas) {
		c.add("spec.update.canary", "must be between 0 and spec.replicas (%d), got %d", replicas, u.Canary)
	}
}

// ToApplyServiceRequest converts a validated manifest to the request the
// scheduler takes, with defaults filled in (replicas 1, maxSurge 1 when no
// budget is given, progress deadline 10m, the template's defaults).
func (m *ServiceManifest) ToApplyServiceRequest() *persysv1.ApplyServiceRequest {
	s := m.Spec
	spec := &persysv1.ServiceSpec{
		Replicas: int32(replicasOf(&s)),
		Selector: copyMap(s.Selector),
		Update: &persysv1.ServiceUpdatePolicy{MaxSurge: DefaultMaxSurge, ProgressDeadlineSeconds: int64(DefaultProgressDeadline / time.Second),
			DrainDelayMs: DefaultDrainDelay.Milliseconds()},
	}
	if sp := s.Spread; sp != nil && (sp.MaxPerNode != 0 || sp.NodeLabel != "") {
		spec.Spread = &persysv1.ServiceSpread{MaxPerNode: int32(sp.MaxPerNode), NodeLabel: sp.NodeLabel}
	}
	if u := s.Update; u != nil {
		p := spec.Update
		if u.MaxUnavailable != nil || u.MaxSurge != nil {
			p.MaxSurge, p.MaxUnavailable = 0, 0
			if u.MaxSurge != nil {
				p.MaxSurge = int32(*u.MaxSurge)
			}
			if u.MaxUnavailable != nil {
				p.MaxUnavailable = int32(*u.MaxUnavailable)
			}
		}
		p.MinReadySeconds = int64(u.MinReadySeconds)
		if d, err := time.ParseDuration(u.ProgressDeadline); err == nil && u.ProgressDeadline != "" {
			p.ProgressDeadlineSeconds = int64(d / time.Second)
		}
		p.AutoRollback, p.Canary, p.Paused = u.AutoRollback, int32(u.Canary), u.Paused
		if d, err := time.ParseDuration(u.DrainDelay); err == nil && u.DrainDelay != "" {
			p.DrainDelayMs = d.Milliseconds()
		}
	}
	if s.Template != nil {
		spec.Template = (&Manifest{Kind: Kind, Metadata: Metadata{Name: m.Metadata.Name}, Spec: *s.Template}).ToApplyRequest().GetSpec()
	}
	return &persysv1.ApplyServiceRequest{Name: m.Metadata.Name, Labels: copyMap(m.Metadata.Labels), Spec: spec}
}

// FromService is the manifest of a stored service (what get -o yaml shows).
func FromService(name string, labels map[string]string, spec *persysv1.ServiceSpec) *ServiceManifest {
	m := &ServiceManifest{APIVersion: APIVersion, Kind: KindService, Metadata: Metadata{Name: name, Labels: copyMap(labels)}}
	if spec == nil {
		return m
	}
	replicas := int(spec.GetReplicas())
	m.Spec.Replicas = &replicas
	m.Spec.Selector = copyMap(spec.GetSelector())
	if sp := spec.GetSpread(); sp != nil {
		m.Spec.Spread = &Spread{MaxPerNode: int(sp.GetMaxPerNode()), NodeLabel: sp.GetNodeLabel()}
	}
	if u := spec.GetUpdate(); u != nil {
		mu, ms := int(u.GetMaxUnavailable()), int(u.GetMaxSurge())
		m.Spec.Update = &UpdatePolicy{MaxUnavailable: &mu, MaxSurge: &ms, MinReadySeconds: int(u.GetMinReadySeconds()),
			AutoRollback: u.GetAutoRollback(), Canary: int(u.GetCanary()), Paused: u.GetPaused(),
			DrainDelay: (time.Duration(u.GetDrainDelayMs()) * time.Millisecond).String()}
		if sec := u.GetProgressDeadlineSeconds(); sec != 0 {
			m.Spec.Update.ProgressDeadline = formatSeconds(sec)
		}
	}
	if t := spec.GetTemplate(); t != nil {
		ts := FromWorkload(&persysv1.Workload{Name: name, Spec: t}).Spec
		m.Spec.Template = &ts
	}
	return m
}

// formatSeconds writes sec as a duration ParseDuration reads back; values
// out of range stay out of range so validation names them.
func formatSeconds(sec int64) string {
	if sec < 0 || sec > int64(MaxProgressDeadline/time.Second) {
		return fmt.Sprintf("%ds", sec)
	}
	return (time.Duration(sec) * time.Second).String()
}

// ValidateApplyServiceRequest applies the manifest rules to the protobuf
// form, for the scheduler's gRPC boundary; field paths are the manifest's.
func ValidateApplyServiceRequest(req *persysv1.ApplyServiceRequest) error {
	if req == nil {
		return &Error{Fields: []FieldError{{Reason: "request is empty"}}}
	}
	var c collector
	if req.GetSpec() == nil {
		validateName(&c, "metadata.name", req.GetName())
		c.add("spec", "required")
		return c.err()
	}
	if u := req.GetSpec().GetUpdate(); u == nil {
		c.add("spec.update", "required (ToApplyServiceRequest fills in its defaults)")
	} else if u.GetProgressDeadlineSeconds() == 0 {
		c.add("spec.update.progressDeadline", "required (ToApplyServiceRequest fills in its default)")
	}
	m := FromService(req.GetName(), req.GetLabels(), req.GetSpec())
	var e *Error
	if err := m.Validate(); errors.As(err, &e) {
		c.fields = append(c.fields, e.Fields...)
	}
	return c.err()
}
