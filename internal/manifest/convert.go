package manifest

import (
	"fmt"
	"maps"

	persysv1 "github.com/persys-dev/compute/api/persys/v1"
)

// Defaults filled in by ToApplyRequest and ApplyDefaults.
const (
	DefaultProtocol      = "tcp"
	DefaultRestartPolicy = "no"
)

var (
	typeNames = map[persysv1.WorkloadType]string{
		persysv1.WorkloadType_WORKLOAD_TYPE_UNSPECIFIED: "",
		persysv1.WorkloadType_WORKLOAD_TYPE_CONTAINER:   "container",
		persysv1.WorkloadType_WORKLOAD_TYPE_COMPOSE:     "compose",
		persysv1.WorkloadType_WORKLOAD_TYPE_VM:          "vm",
	}
	stateNames = map[persysv1.DesiredState]string{
		persysv1.DesiredState_DESIRED_STATE_UNSPECIFIED: "",
		persysv1.DesiredState_DESIRED_STATE_RUNNING:     "running",
		persysv1.DesiredState_DESIRED_STATE_STOPPED:     "stopped",
	}
	// An absent policy stays UNSPECIFIED (which the scheduler treats as
	// reschedule), so specs stored before the field existed keep comparing
	// equal and do not get a new revision.
	nodeLossNames = map[persysv1.NodeLossPolicy]string{
		persysv1.NodeLossPolicy_NODE_LOSS_POLICY_UNSPECIFIED: "",
		persysv1.NodeLossPolicy_NODE_LOSS_POLICY_RESCHEDULE:  NodeLossReschedule,
		persysv1.NodeLossPolicy_NODE_LOSS_POLICY_WAIT:        NodeLossWait,
	}
)

// Words of spec.nodeLossPolicy.
const (
	NodeLossReschedule = "reschedule"
	NodeLossWait       = "wait"
)

// ToApplyRequest converts a manifest to the request the scheduler takes,
// with defaults filled in (desired state running, protocol tcp, restart
// policy no). The manifest must have passed Validate; values that did not
// parse become zero.
func (m *Manifest) ToApplyRequest() *persysv1.ApplyRequest {
	s := m.Spec
	spec := &persysv1.WorkloadSpec{
		NodeSelector: copyMap(s.NodeSelector),
		Resources:    &persysv1.Resources{},
	}
	for t, name := range typeNames {
		if name != "" && name == s.Type {
			spec.Type = t
		}
	}
	for st, name := range stateNames {
		if name != "" && name == s.DesiredState {
			spec.DesiredState = st
		}
	}
	for p, name := range nodeLossNames {
		if name != "" && name == s.NodeLossPolicy {
			spec.NodeLossPolicy = p
		}
	}
	if r := s.Resources; r != nil {
		spec.Resources.CpuMillis = parseOrZero(ParseCPU, r.CPU)
		spec.Resources.MemoryBytes = parseOrZero(ParseBytes, r.Memory)
		spec.Resources.DiskBytes = parseOrZero(ParseBytes, r.Disk)
	}
	if ct := s.Container; ct != nil {
		pc := &persysv1.ContainerSpec{
			Image:         ct.Image,
			Command:       copySlice(ct.Command),
			Args:          copySlice(ct.Args),
			Env:           copyMap(ct.Env),
			RestartPolicy: ct.RestartPolicy,
			Privileged:    ct.Privileged,
			Labels:        copyMap(ct.Labels),
		}
		for _, p := range ct.Ports {
			pc.Ports = append(pc.Ports, &persysv1.PortMapping{
				ContainerPort: clampPort(p.ContainerPort),
				HostPort:      clampPort(p.HostPort),
				Protocol:      p.Protocol,
				HostIp:        p.HostIP,
				Dynamic:       p.Dynamic,
			})
		}
		for _, v := range ct.Volumes {
			pc.Volumes = append(pc.Volumes, &persysv1.Volume{
				Type:     v.Type,
				Source:   v.Source,
				Target:   v.Target,
				ReadOnly: v.ReadOnly,
			})
		}
		spec.Container = pc
	}
	if s.Compose != nil {
		spec.Compose = composeToProto(s.Compose)
	}
	if s.VM != nil {
		spec.Vm = vmToProto(s.VM)
	}
	secretRefsToProto(&s, spec)
	spec.StartupCheck = probeToProto(s.StartupProbe)
	spec.LivenessCheck = probeToProto(s.LivenessProbe)
	spec.ReadinessCheck = probeToProto(s.ReadinessProbe)
	ApplyDefaults(spec)
	return &persysv1.ApplyRequest{
		Name:   m.Metadata.Name,
		Labels: copyMap(m.Metadata.Labels),
		Spec:   spec,
	}
}

// ApplyDefaults fills in, in place, the defaults a manifest may leave out:
// desired state running, empty resources, protocol tcp and restart policy no.
// The scheduler calls it on specs that arrive over gRPC so that what it
// stores (and compares across revisions) is always in one canonical form.
func ApplyDefaults(spec *persysv1.WorkloadSpec) {
	if spec == nil {
		return
	}
	if spec.DesiredState == persysv1.DesiredState_DESIRED_STATE_UNSPECIFIED {
		spec.DesiredState = persysv1.DesiredState_DESIRED_STATE_RUNNING
	}
	if spec.Resources == nil {
		spec.Resources = &persysv1.Resources{}
	}
	if r := spec.Resources; spec.Vm != nil && r.CpuMillis == 0 && r.MemoryBytes == 0 && r.DiskBytes == 0 {
		spec.Resources = vmResources(spec.Vm)
	}
	if ct := spec.Container; ct != nil {
		if ct.RestartPolicy == "" {
			ct.RestartPolicy = DefaultRestartPolicy
		}
		for _, p := range ct.Ports {
			if p != nil && p.Protocol == "" {
				p.Protocol = DefaultProtocol
			}
		}
	}
}

// FromWorkload writes a stored workload back as a manifest, for
// `persysctl get -o yaml`; ToApplyRequest of the result gives the same spec.
// Enum values the manifest has no word for come out as words that Validate
// refuses.
func FromWorkload(w *persysv1.Workload) *Manifest {
	m := &Manifest{
		APIVersion: APIVersion,
		Kind:       Kind,
		Metadata: Metadata{
			Name:   w.GetName(),
			Labels: copyMap(w.GetLabels()),
		},
	}
	s := w.GetSpec()
	if s == nil {
		return m
	}
	m.Spec.Type = enumWord(typeNames, s.GetType())
	m.Spec.DesiredState = enumWord(stateNames, s.GetDesiredState())
	m.Spec.NodeSelector = copyMap(s.GetNodeSelector())
	m.Spec.NodeLossPolicy = enumWord(nodeLossNames, s.GetNodeLossPolicy())
	if r := s.GetResources(); r.GetCpuMillis() != 0 || r.GetMemoryBytes() != 0 || r.GetDiskBytes() != 0 {
		m.Spec.Resources = &Resources{}
		if r.GetCpuMillis() != 0 {
			m.Spec.Resources.CPU = Quantity(FormatCPU(r.GetCpuMillis()))
		}
		if r.GetMemoryBytes() != 0 {
			m.Spec.Resources.Memory = Quantity(FormatBytes(r.GetMemoryBytes()))
		}
		if r.GetDiskBytes() != 0 {
			m.Spec.Resources.Disk = Quantity(FormatBytes(r.GetDiskBytes()))
		}
	}
	if pc := s.GetContainer(); pc != nil {
		ct := &Container{
			Image:         pc.GetImage(),
			Command:       copySlice(pc.GetCommand()),
			Args:          copySlice(pc.GetArgs()),
			Env:           copyMap(pc.GetEnv()),
			RestartPolicy: pc.GetRestartPolicy(),
			Privileged:    pc.GetPrivileged(),
			Labels:        copyMap(pc.GetLabels()),
		}
		for _, p := range pc.GetPorts() {
			ct.Ports = append(ct.Ports, Port{
				ContainerPort: int(p.GetContainerPort()),
				HostPort:      int(p.GetHostPort()),
				Protocol:      p.GetProtocol(),
				HostIP:        p.GetHostIp(),
				Dynamic:       p.GetDynamic(),
			})
		}
		for _, v := range pc.GetVolumes() {
			ct.Volumes = append(ct.Volumes, Volume{
				Type:     v.GetType(),
				Source:   v.GetSource(),
				Target:   v.GetTarget(),
				ReadOnly: v.GetReadOnly(),
			})
		}
		m.Spec.Container = ct
	}
	if pc := s.GetCompose(); pc != nil {
		m.Spec.Compose = composeFromProto(pc)
	}
	if pv := s.GetVm(); pv != nil {
		m.Spec.VM = vmFromProto(pv)
	}
	secretRefsFromProto(s, &m.Spec)
	m.Spec.StartupProbe = probeFromProto(s.GetStartupCheck())
	m.Spec.LivenessProbe = probeFromProto(s.GetLivenessCheck())
	m.Spec.ReadinessProbe = probeFromProto(s.GetReadinessCheck())
	return m
}

func enumWord[E ~int32](names map[E]string, v E) string {
	if w, ok := names[v]; ok {
		return w
	}
	return fmt.Sprintf("unknown(%d)", int32(v))
}

func parseOrZero(parse func(string) (int64, error), q Quantity) int64 {
	if q == "" {
		return 0
	}
	n, err := parse(string(q))
	if err != nil {
		return 0
	}
	return n
}

// clampPort keeps an unvalidated port from wrapping around into a valid one.
func clampPort(p int) uint32 {
	if p < 0 || p > 65535 {
		return 0
	}
	return uint32(p)
}

func copyMap(m map[string]string) map[string]string {
	if len(m) == 0 {
		return nil
	}
	return maps.Clone(m)
}

func copySlice(s []string) []string {
	if len(s) == 0 {
		return nil
	}
	return append([]string(nil), s...)
}
