package docker

import (
	"errors"
	"fmt"
	"maps"
	"net/netip"
	"path"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/api/types/mount"
	"github.com/moby/moby/api/types/network"

	"github.com/persys-dev/compute/api/persys/contract"
	persysv1 "github.com/persys-dev/compute/api/persys/v1"
	"github.com/persys-dev/compute/internal/runtime"
)

// Labels this runtime adds next to the shared ones in package runtime.
const (
	// LabelRuntime tells containers of this runtime apart from containers
	// that other runtimes (compose) label as managed.
	LabelRuntime = "persys.runtime"
	// LabelDesired records the desired state the container was created
	// for, so that a container created stopped reads back as STOPPED.
	LabelDesired = "persys.desired"

	runtimeName   = "docker"
	desiredRun    = "running"
	desiredStop   = "stopped"
	reservedLabel = "persys."
	// minMemory is the engine's lowest accepted memory limit (6 MiB).
	minMemory = 6 << 20
)

// nameRE is what the engine accepts in container names; workload names
// and uids become part of one.
var nameRE = regexp.MustCompile(`^[a-zA-Z0-9][a-zA-Z0-9_.-]*$`)

// createSpec is everything ContainerCreate needs for one instance.
type createSpec struct {
	name     string
	workload string
	uid      string
	desired  string
	config   *container.Config
	host     *container.HostConfig
	// secretFiles are written under the runtime's secrets folder and
	// bind-mounted read-only; the runtime adds their mounts.
	secretFiles []secretFile
	// pullAuth is the Engine API auth for pulling the image ("" for
	// anonymous). It holds a password: never log it.
	pullAuth string
}

// containerName is persys-<name>-<first 8 chars of uid>-r<revision>.
func containerName(name, uid string, revision uint64) string {
	short := uid
	if len(short) > 8 {
		short = short[:8]
	}
	return fmt.Sprintf("persys-%s-%s-r%d", name, short, revision)
}

func invalid(format string, args ...any) *runtime.Failure {
	return runtime.Fail(persysv1.FailureReason_FAILURE_REASON_INVALID_SPEC, nil, format, args...)
}

// desiredOf returns desiredStop for DESIRED_STATE_STOPPED and desiredRun
// otherwise.
func desiredOf(spec *persysv1.WorkloadSpec) string {
	if spec.GetDesiredState() == persysv1.DesiredState_DESIRED_STATE_STOPPED {
		return desiredStop
	}
	return desiredRun
}

// buildCreateSpec validates the instance and translates it into engine
// configuration. Every problem is an INVALID_SPEC *runtime.Failure whose
// message names the field.
func buildCreateSpec(inst runtime.Instance, stopTimeoutSeconds int) (*createSpec, error) {
	if err := validateIdentity(inst); err != nil {
		return nil, err
	}
	spec := inst.Spec
	if spec == nil {
		return nil, invalid("spec: missing")
	}
	if spec.GetType() != persysv1.WorkloadType_WORKLOAD_TYPE_CONTAINER {
		return nil, invalid("spec.type: %s is not %s", contract.Name(spec.GetType()), contract.Name(persysv1.WorkloadType_WORKLOAD_TYPE_CONTAINER))
	}
	switch spec.GetDesiredState() {
	case persysv1.DesiredState_DESIRED_STATE_UNSPECIFIED, persysv1.DesiredState_DESIRED_STATE_RUNNING,
		persysv1.DesiredState_DESIRED_STATE_STOPPED:
	default:
		return nil, invalid("spec.desired_state: unknown value %d", spec.GetDesiredState())
	}
	c := spec.GetContainer()
	if c == nil {
		return nil, invalid("spec.container: missing")
	}
	if strings.TrimSpace(c.GetImage()) == "" {
		return nil, invalid("spec.container.image: empty")
	}
	res := spec.GetResources()
	if res.GetCpuMillis() < 0 {
		return nil, invalid("spec.resources.cpu_millis: %d is negative", res.GetCpuMillis())
	}
	if m := res.GetMemoryBytes(); m < 0 || (m > 0 && m < minMemory) {
		return nil, invalid("spec.resources.memory_bytes: %d is below the engine minimum of %d (0 means unlimited)", m, minMemory)
	}
	restart, err := restartPolicy(c.GetRestartPolicy())
	if err != nil {
		return nil, err
	}
	env, err := envList(c.GetEnv())
	if err != nil {
		return nil, err
	}
	exposed, bindings, err := portConfig(c.GetPorts())
	if err != nil {
		return nil, err
	}
	mounts, err := mountConfig(c.GetVolumes())
	if err != nil {
		return nil, err
	}
	senv, err := secretEnv(inst, c.GetEnv())
	if err != nil {
		return nil, err
	}
	env = append(env, senv...)
	sfiles, err := secretFiles(inst, mounts)
	if err != nil {
		return nil, err
	}
	auth, err := pullAuth(inst, c.GetImage())
	if err != nil {
		return nil, err
	}
	desired := desiredOf(spec)
	labels := make(map[string]string, len(c.GetLabels())+6)
	for k, v := range c.GetLabels() {
		if k == "" {
			return nil, invalid("spec.container.labels: empty key")
		}
		if strings.HasPrefix(k, reservedLabel) {
			return nil, invalid("spec.container.labels[%q]: the %q prefix is reserved for persys", k, reservedLabel)
		}
		labels[k] = v
	}
	labels[runtime.LabelManaged] = "true"
	labels[runtime.LabelWorkload] = inst.Name
	labels[runtime.LabelUID] = inst.UID
	labels[runtime.LabelRevision] = strconv.FormatUint(inst.Revision, 10)
	labels[LabelRuntime] = runtimeName
	labels[LabelDesired] = desired

	init := true
	stop := stopTimeoutSeconds
	cfg := &container.Config{
		Image:        c.GetImage(),
		Env:          env,
		ExposedPorts: exposed,
		Labels:       labels,
		StopTimeout:  &stop,
	}
	if len(c.GetCommand()) > 0 {
		cfg.Entrypoint = slices.Clone(c.GetCommand())
	}
	if len(c.GetArgs()) > 0 {
		cfg.Cmd = slices.Clone(c.GetArgs())
	}
	host := &container.HostConfig{
		PortBindings:  bindings,
		Mounts:        mounts,
		RestartPolicy: restart,
		Privileged:    c.GetPrivileged(),
		Init:          &init,
		Resources: container.Resources{
			NanoCPUs: res.GetCpuMillis() * 1_000_000,
			Memory:   res.GetMemoryBytes(),
		},
	}
	return &createSpec{
		name:     containerName(inst.Name, inst.UID, inst.Revision),
		workload: inst.Name,
		uid:      inst.UID,
		desired:  desired,
		config:   cfg,
		host:     host,

		secretFiles: sfiles,
		pullAuth:    auth,
	}, nil
}

func validateIdentity(inst runtime.Instance) error {
	if inst.Name == "" {
		return invalid("name: empty")
	}
	if len(inst.Name) > 200 || !nameRE.MatchString(inst.Name) {
		return invalid("name: %q must be at most 200 characters of [a-zA-Z0-9_.-] starting with a letter or digit", inst.Name)
	}
	if inst.UID == "" {
		return invalid("uid: empty")
	}
	if len(inst.UID) > 64 || !nameRE.MatchString(inst.UID) {
		return invalid("uid: %q must be at most 64 characters of [a-zA-Z0-9_.-] starting with a letter or digit", inst.UID)
	}
	return nil
}

func restartPolicy(s string) (container.RestartPolicy, error) {
	switch mode := container.RestartPolicyMode(s); mode {
	case "", container.RestartPolicyDisabled:
		return container.RestartPolicy{Name: container.RestartPolicyDisabled}, nil
	case container.RestartPolicyAlways, container.RestartPolicyOnFailure, container.RestartPolicyUnlessStopped:
		return container.RestartPolicy{Name: mode}, nil
	default:
		return container.RestartPolicy{}, invalid("spec.container.restart_policy: %q is not one of no, always, on-failure, unless-stopped", s)
	}
}

// envList renders the map as KEY=VALUE in key order.
func envList(env map[string]string) ([]string, error) {
	out := make([]string, 0, len(env))
	for _, k := range slices.Sorted(maps.Keys(env)) {
		if k == "" || strings.ContainsAny(k, "=\x00") {
			return nil, invalid("spec.container.env[%q]: a name must be non-empty and contain no '=' or NUL", k)
		}
		if strings.ContainsRune(env[k], 0) {
			return nil, invalid("spec.container.env[%q]: value contains NUL", k)
		}
		out = append(out, k+"="+env[k])
	}
	return out, nil
}

func portConfig(ports []*persysv1.PortMapping) (network.PortSet, network.PortMap, error) {
	if len(ports) == 0 {
		return nil, nil, nil
	}
	exposed := network.PortSet{}
	bindings := network.PortMap{}
	seenHost := map[string]int{}
	for i, p := range ports {
		field := fmt.Sprintf("spec.container.ports[%d]", i)
		if p == nil {
			return nil, nil, invalid("%s: missing", field)
		}
		if p.GetContainerPort() < 1 || p.GetContainerPort() > 65535 {
			return nil, nil, invalid("%s.container_port: %d is not in 1..65535", field, p.GetContainerPort())
		}
		if p.GetHostPort() > 65535 {
			return nil, nil, invalid("%s.host_port: %d is not in 0..65535", field, p.GetHostPort())
		}
		if p.GetDynamic() && p.GetHostPort() == 0 {
			// The engine would pick an ephemeral port that no placement
			// counted: the scheduler's choice must have been bound.
			return nil, nil, invalid("%s.host_port: dynamic, but no host port was chosen for it", field)
		}
		proto := p.GetProtocol()
		switch proto {
		case "":
			proto = "tcp"
		case "tcp", "udp":
		default:
			return nil, nil, invalid("%s.protocol: %q is not tcp or udp", field, p.GetProtocol())
		}
		var hostIP netip.Addr
		if ip := p.GetHostIp(); ip != "" {
			var err error
			if hostIP, err = netip.ParseAddr(ip); err != nil {
				return nil, nil, invalid("%s.host_ip: %q is not an IP address", field, ip)
			}
		}
		if p.GetHostPort() != 0 {
			key := fmt.Sprintf("%s/%d/%s", p.GetHostIp(), p.GetHostPort(), proto)
			if j, dup := seenHost[key]; dup {
				return nil, nil, invalid("%s.host_port: %d/%s is also bound by spec.container.ports[%d]", field, p.GetHostPort(), proto, j)
			}
			seenHost[key] = i
		}
		port, _ := network.PortFrom(uint16(p.GetContainerPort()), network.IPProtocol(proto))
		exposed[port] = struct{}{}
		hostPort := ""
		if p.GetHostPort() != 0 {
			hostPort = strconv.FormatUint(uint64(p.GetHostPort()), 10)
		}
		bindings[port] = append(bindings[port], network.PortBinding{HostIP: hostIP, HostPort: hostPort})
	}
	return exposed, bindings, nil
}

func mountConfig(vols []*persysv1.Volume) ([]mount.Mount, error) {
	if len(vols) == 0 {
		return nil, nil
	}
	out := make([]mount.Mount, 0, len(vols))
	targets := map[string]int{}
	for i, v := range vols {
		field := fmt.Sprintf("spec.container.volumes[%d]", i)
		if v == nil {
			return nil, invalid("%s: missing", field)
		}
		target := v.GetTarget()
		if target == "" || !path.IsAbs(target) {
			return nil, invalid("%s.target: %q is not an absolute path", field, target)
		}
		target = path.Clean(target)
		if target == "/" {
			return nil, invalid("%s.target: cannot mount over /", field)
		}
		if j, dup := targets[target]; dup {
			return nil, invalid("%s.target: %q is also the target of spec.container.volumes[%d]", field, target, j)
		}
		targets[target] = i
		m := mount.Mount{Source: v.GetSource(), Target: target, ReadOnly: v.GetReadOnly()}
		switch v.GetType() {
		case "bind":
			if !path.IsAbs(v.GetSource()) {
				return nil, invalid("%s.source: bind source %q is not an absolute path", field, v.GetSource())
			}
			m.Type = mount.TypeBind
			m.Source = path.Clean(v.GetSource())
		case "volume":
			// An empty source is an anonymous volume, removed with the container.
			if s := v.GetSource(); s != "" && !nameRE.MatchString(s) {
				return nil, invalid("%s.source: volume name %q must be [a-zA-Z0-9][a-zA-Z0-9_.-]*", field, s)
			}
			m.Type = mount.TypeVolume
		default:
			return nil, invalid("%s.type: %q is not bind or volume", field, v.GetType())
		}
		out = append(out, m)
	}
	return out, nil
}

// Engine error texts that classify a failure. The engine reports these
// only as text; this is the one place they are read.
var (
	// portErrors: a host port is taken, by another container or by a
	// process on the host; checked before the network texts they contain.
	portErrors    = []string{"port is already allocated", "address already in use"}
	networkErrors = []string{"programming external connectivity", "network"}
	storageErrors = []string{"mount", "volume", "no space left on device"}
)

// classify maps an engine error from create or start to a failure reason.
func classify(err error) persysv1.FailureReason {
	if err == nil {
		return persysv1.FailureReason_FAILURE_REASON_UNSPECIFIED
	}
	var f *runtime.Failure
	if errors.As(err, &f) {
		return f.Reason
	}
	msg := strings.ToLower(err.Error())
	for _, s := range portErrors {
		if strings.Contains(msg, s) {
			return persysv1.FailureReason_FAILURE_REASON_PORT_CONFLICT
		}
	}
	for _, s := range networkErrors {
		if strings.Contains(msg, s) {
			return persysv1.FailureReason_FAILURE_REASON_NETWORK
		}
	}
	for _, s := range storageErrors {
		if strings.Contains(msg, s) {
			return persysv1.FailureReason_FAILURE_REASON_STORAGE
		}
	}
	return persysv1.FailureReason_FAILURE_REASON_RUNTIME_ERROR
}
