package manifest

import (
	"errors"
	"fmt"
	"net/netip"
	"path"
	"regexp"
	"strings"

	"github.com/distribution/reference"

	persysv1 "github.com/persys-dev/compute/api/persys/v1"
)

// Limits on the size of a manifest's parts.
const (
	MaxEnv        = 256
	MaxPorts      = 64
	MaxVolumes    = 64
	MaxLabels     = 64
	MaxImageLen   = 512
	MaxNameLen    = 63
	MaxLabelKey   = 253
	MaxLabelValue = 63
	// ReservedLabelPrefix is kept for the labels the runtimes set.
	ReservedLabelPrefix = "persys."
)

var (
	nameRE       = regexp.MustCompile(`^[a-z0-9]([a-z0-9-]*[a-z0-9])?$`)
	labelKeyRE   = regexp.MustCompile(`^[A-Za-z0-9._/-]+$`)
	envNameRE    = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)
	volumeNameRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.-]+$`)
)

// Validate checks every field and returns an *Error listing all problems,
// or nil.
func (m *Manifest) Validate() error {
	var c collector
	if m == nil {
		c.add("", "manifest is empty")
		return c.err()
	}
	if m.APIVersion != "" && m.APIVersion != APIVersion {
		c.add("apiVersion", "must be %q", APIVersion)
	}
	switch m.Kind {
	case "":
		c.add("kind", "required, must be %q", Kind)
	case Kind:
	default:
		c.add("kind", "must be %q", Kind)
	}
	validateName(&c, "metadata.name", m.Metadata.Name)
	validateLabels(&c, "metadata.labels", m.Metadata.Labels, false)
	validateSpec(&c, &m.Spec)
	return c.err()
}

// ValidateSpec applies the manifest rules to the protobuf form of a
// workload, for callers that receive it over gRPC. Field paths and reasons
// are the manifest's (for example "spec.resources.memory").
func ValidateSpec(name string, spec *persysv1.WorkloadSpec) error {
	return validateProto(name, nil, spec)
}

// ValidateApplyRequest is ValidateSpec plus the request's labels.
func ValidateApplyRequest(req *persysv1.ApplyRequest) error {
	if req == nil {
		return &Error{Fields: []FieldError{{Reason: "request is empty"}}}
	}
	if req.GetOwner() != nil {
		// Only the service controller, in process, applies owned replicas.
		return &Error{Fields: []FieldError{{Field: "owner", Reason: "set only by the service controller; apply the service instead"}}}
	}
	return validateProto(req.GetName(), req.GetLabels(), req.GetSpec())
}

func validateProto(name string, labels map[string]string, spec *persysv1.WorkloadSpec) error {
	if spec == nil {
		var c collector
		validateName(&c, "metadata.name", name)
		validateLabels(&c, "metadata.labels", labels, false)
		c.add("spec", "required")
		return c.err()
	}
	return FromWorkload(&persysv1.Workload{Name: name, Labels: labels, Spec: spec}).Validate()
}

func validateName(c *collector, field, name string) {
	switch {
	case name == "":
		c.add(field, "required")
	case len(name) > MaxNameLen || !nameRE.MatchString(name):
		c.add(field, "must be a DNS-1123 label: 1 to %d lowercase letters, digits or '-', starting and ending with a letter or digit", MaxNameLen)
	}
}

// validateLabels checks label keys and values; reserved refuses keys with
// the persys. prefix, which the runtimes own.
func validateLabels(c *collector, field string, labels map[string]string, reserved bool) {
	if len(labels) > MaxLabels {
		c.add(field, "at most %d entries, got %d", MaxLabels, len(labels))
	}
	for _, k := range sortedKeys(labels) {
		p := keyPath(field, k)
		switch {
		case k == "":
			c.add(p, "key must not be empty")
		case len(k) > MaxLabelKey:
			c.add(p, "key must be at most %d characters", MaxLabelKey)
		case !labelKeyRE.MatchString(k):
			c.add(p, "key may hold only letters, digits, '.', '_', '/' and '-'")
		case reserved && strings.HasPrefix(k, ReservedLabelPrefix):
			c.add(p, "the %q prefix is reserved for Persys", ReservedLabelPrefix)
		}
		if v := labels[k]; len(v) > MaxLabelValue {
			c.add(p, "value must be at most %d characters", MaxLabelValue)
		}
	}
}

func validateSpec(c *collector, s *Spec) {
	switch s.Type {
	case "":
		c.add("spec.type", "required, one of container, compose, vm")
	case "container":
		if s.Container == nil {
			c.add("spec.container", "required when spec.type is container")
		}
	case "compose":
		if s.Compose == nil {
			c.add("spec.compose", "required when spec.type is compose")
		}
	case "vm":
		if s.VM == nil {
			c.add("spec.vm", "required when spec.type is vm")
		}
	default:
		c.add("spec.type", "must be one of container, compose, vm")
	}
	switch s.DesiredState {
	case "", "running", "stopped":
	default:
		c.add("spec.desiredState", "must be running or stopped")
	}
	switch s.NodeLossPolicy {
	case "", NodeLossReschedule, NodeLossWait:
	default:
		c.add("spec.nodeLossPolicy", "must be %s or %s, got %q", NodeLossReschedule, NodeLossWait, s.NodeLossPolicy)
	}
	for _, other := range []struct {
		typ string
		set bool
	}{{"container", s.Container != nil}, {"compose", s.Compose != nil}, {"vm", s.VM != nil}} {
		if other.set && (s.Type == "container" || s.Type == "compose" || s.Type == "vm") && other.typ != s.Type {
			c.add("spec."+other.typ, "only with spec.type %s (spec.type is %s)", other.typ, s.Type)
		}
	}
	if s.Container != nil {
		validateContainer(c, "spec.container", s.Container)
	}
	if s.Compose != nil {
		validateCompose(c, "spec.compose", s.Compose)
	}
	if s.VM != nil {
		validateVM(c, "spec.vm", s.VM)
	}
	validateSecretRefs(c, s)
	validateEnvBytes(c, s)
	validateProbes(c, s)
	if r := s.Resources; r != nil {
		validateQuantity(c, "spec.resources.cpu", r.CPU, ParseCPU)
		if m, err := ParseCPU(string(r.CPU)); err == nil && r.CPU != "" && m > 0 && m < MinCPUMillis {
			// The kernel's smallest CFS quota is 1 ms per 100 ms period.
			c.add("spec.resources.cpu", "must be 0 or at least %s, got %s", FormatCPU(MinCPUMillis), r.CPU)
		}
		validateQuantity(c, "spec.resources.memory", r.Memory, ParseBytes)
		validateQuantity(c, "spec.resources.disk", r.Disk, ParseBytes)
	}
	validateLabels(c, "spec.nodeSelector", s.NodeSelector, false)
}

// MinCPUMillis is the smallest CPU limit a container can have: the kernel
// refuses a CFS quota under 1 ms per 100 ms period.
const MinCPUMillis = 10

func validateQuantity(c *collector, field string, q Quantity, parse func(string) (int64, error)) {
	if q == "" {
		return
	}
	if _, err := parse(string(q)); err != nil {
		c.add(field, "%v", err)
	}
}

func validateContainer(c *collector, field string, ct *Container) {
	imageField := field + ".image"
	switch {
	case ct.Image == "":
		c.add(imageField, "required")
	case len(ct.Image) > MaxImageLen:
		c.add(imageField, "must be at most %d characters", MaxImageLen)
	default:
		if _, err := reference.ParseAnyReference(ct.Image); err != nil {
			c.add(imageField, "not a valid image reference: %v", err)
		}
	}
	for i, s := range ct.Command {
		noNUL(c, index(field+".command", i), s)
	}
	for i, s := range ct.Args {
		noNUL(c, index(field+".args", i), s)
	}
	validateEnv(c, field+".env", ct.Env)
	if n := argvBytes(ct.Command) + argvBytes(ct.Args); n > MaxArgBytes {
		f := field + ".args"
		if len(ct.Args) == 0 {
			f = field + ".command"
		}
		c.add(f, "command and args take %d bytes in all, more than the limit of %d", n, MaxArgBytes)
	}
	validatePorts(c, field+".ports", ct.Ports)
	validateVolumes(c, field+".volumes", ct.Volumes)
	switch ct.RestartPolicy {
	case "", "no", "always", "on-failure", "unless-stopped":
	default:
		c.add(field+".restartPolicy", "must be one of no, always, on-failure, unless-stopped")
	}
	validateLabels(c, field+".labels", ct.Labels, true)
}

// Limits on what a workload's process starts with. Linux refuses to start
// a process whose arguments and environment pass a quarter of the stack
// limit (2 MiB by default) or that has one string longer than 128 KiB
// ("argument list too long"); these stay well inside both, so that such a
// spec is refused at apply, naming the field, not when it starts.
const (
	// MaxEnvBytes bounds a workload's environment in all: each variable
	// as NAME=value, secretEnv names counted (their values are checked
	// when the secret is written).
	MaxEnvBytes = 128 << 10
	// MaxEnvValueBytes bounds one variable's value.
	MaxEnvValueBytes = 32 << 10
	// MaxArgBytes bounds a container's command and args together.
	MaxArgBytes = 128 << 10
)

// validateEnv checks one env map: the count, the names, NUL bytes and the
// size of each value.
func validateEnv(c *collector, field string, env map[string]string) {
	if len(env) > MaxEnv {
		c.add(field, "at most %d variables, got %d", MaxEnv, len(env))
	}
	for _, k := range sortedKeys(env) {
		p := keyPath(field, k)
		if !envNameRE.MatchString(k) {
			c.add(p, "name must match [A-Za-z_][A-Za-z0-9_]*")
		}
		v := env[k]
		noNUL(c, p, v)
		if len(v) > MaxEnvValueBytes {
			c.add(p, "value is %d bytes, more than the limit of %d", len(v), MaxEnvValueBytes)
		}
	}
}

// validateEnvBytes checks the size of the environment a workload's
// process starts with: its env and the names its secretEnv sets.
func validateEnvBytes(c *collector, s *Spec) {
	field, env := "spec.container.env", map[string]string(nil)
	switch {
	case s.Container != nil:
		env = s.Container.Env
	case s.Compose != nil:
		field, env = "spec.compose.env", s.Compose.Env
	}
	n := 0
	for k, v := range env {
		n += len(k) + 1 + len(v)
	}
	for _, e := range s.SecretEnv {
		n += len(e.Name) + 1
	}
	if n > MaxEnvBytes {
		c.add(field, "takes %d bytes in all (NAME=value, secretEnv names included), more than the limit of %d", n, MaxEnvBytes)
	}
}

// argvBytes is what args take on a process's argument list.
func argvBytes(args []string) int {
	n := 0
	for _, a := range args {
		n += len(a) + 1
	}
	return n
}

func noNUL(c *collector, field, s string) {
	if strings.IndexByte(s, 0) >= 0 {
		c.add(field, "must not contain NUL bytes")
	}
}

func validatePorts(c *collector, field string, ports []Port) {
	if len(ports) > MaxPorts {
		c.add(field, "at most %d ports, got %d", MaxPorts, len(ports))
	}
	bound := map[string]int{}
	for i, p := range ports {
		pf := index(field, i)
		if p.ContainerPort < 1 || p.ContainerPort > 65535 {
			c.add(pf+".containerPort", "must be between 1 and 65535")
		}
		if p.HostPort < 0 || p.HostPort > 65535 {
			c.add(pf+".hostPort", "must be between 0 and 65535")
		}
		if p.Dynamic && p.HostPort != 0 {
			c.add(pf+".dynamic", "a dynamic port takes its host port from the node's range: leave hostPort unset (got %d)", p.HostPort)
		}
		proto := p.Protocol
		switch proto {
		case "":
			proto = "tcp"
		case "tcp", "udp":
		default:
			c.add(pf+".protocol", "must be tcp or udp")
		}
		if p.HostIP != "" {
			if a, err := netip.ParseAddr(p.HostIP); err != nil || a.Zone() != "" {
				c.add(pf+".hostIP", "must be an IPv4 or IPv6 address without zone")
			}
		}
		if p.HostPort > 0 {
			key := fmt.Sprintf("%s|%d|%s", p.HostIP, p.HostPort, proto)
			if j, dup := bound[key]; dup {
				c.add(pf+".hostPort", "already published by %s", index(field, j))
			} else {
				bound[key] = i
			}
		}
	}
}

func validateVolumes(c *collector, field string, vols []Volume) {
	if len(vols) > MaxVolumes {
		c.add(field, "at most %d volumes, got %d", MaxVolumes, len(vols))
	}
	targets := map[string]int{}
	for i, v := range vols {
		vf := index(field, i)
		switch v.Type {
		case "":
			c.add(vf+".type", "required, bind or volume")
		case "bind":
			if err := absPath(v.Source); err != nil {
				c.add(vf+".source", "%v", err)
			}
		case "volume":
			switch {
			case v.Source == "":
				c.add(vf+".source", "required, a volume name")
			case len(v.Source) > 255 || !volumeNameRE.MatchString(v.Source):
				c.add(vf+".source", "must be a volume name: at least 2 of letters, digits, '_', '.' or '-', starting with a letter or digit")
			}
		default:
			c.add(vf+".type", "must be bind or volume")
		}
		if err := absPath(v.Target); err != nil {
			c.add(vf+".target", "%v", err)
		} else if path.Clean(v.Target) == "/" {
			c.add(vf+".target", "must not be /")
		} else if j, dup := targets[path.Clean(v.Target)]; dup {
			c.add(vf+".target", "already mounted by %s", index(field, j))
		} else {
			targets[path.Clean(v.Target)] = i
		}
	}
}

func absPath(p string) error {
	switch {
	case p == "":
		return errors.New("required, an absolute path")
	case !path.IsAbs(p):
		return errors.New("must be an absolute path")
	case strings.IndexByte(p, 0) >= 0:
		return errors.New("must not contain NUL bytes")
	case len(p) > 4096:
		return errors.New("must be at most 4096 characters")
	}
	return nil
}
