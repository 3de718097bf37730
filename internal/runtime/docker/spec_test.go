package docker

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/api/types/mount"
	"github.com/moby/moby/api/types/network"

	persysv1 "github.com/persys-dev/compute/api/persys/v1"
	"github.com/persys-dev/compute/internal/runtime"
)

func validInstance() runtime.Instance {
	return runtime.Instance{
		Name:     "web",
		UID:      "0123456789abcdef",
		Revision: 7,
		Spec: &persysv1.WorkloadSpec{
			Type:         persysv1.WorkloadType_WORKLOAD_TYPE_CONTAINER,
			DesiredState: persysv1.DesiredState_DESIRED_STATE_RUNNING,
			Resources:    &persysv1.Resources{CpuMillis: 250, MemoryBytes: 64 << 20},
			Container: &persysv1.ContainerSpec{
				Image:         "persys-hello:test",
				Command:       []string{"/hello"},
				Args:          []string{"serve"},
				Env:           map[string]string{"B": "2", "A": "1"},
				Ports:         []*persysv1.PortMapping{{ContainerPort: 8080, HostPort: 18080, Protocol: "tcp", HostIp: "127.0.0.1"}, {ContainerPort: 53, Protocol: "udp"}},
				Volumes:       []*persysv1.Volume{{Type: "bind", Source: "/srv/cfg", Target: "/cfg", ReadOnly: true}, {Type: "volume", Source: "data", Target: "/data"}},
				RestartPolicy: "on-failure",
				Labels:        map[string]string{"team": "a"},
			},
		},
	}
}

func TestBuildCreateSpec(t *testing.T) {
	cs, err := buildCreateSpec(validInstance(), 5)
	if err != nil {
		t.Fatalf("buildCreateSpec: %v", err)
	}
	if cs.name != "persys-web-01234567-r7" {
		t.Errorf("name = %q", cs.name)
	}
	if got := strings.Join(cs.config.Env, ","); got != "A=1,B=2" {
		t.Errorf("env = %q, want sorted A=1,B=2", got)
	}
	if cs.host.NanoCPUs != 250_000_000 || cs.host.Memory != 64<<20 {
		t.Errorf("resources = %d nano cpus, %d bytes", cs.host.NanoCPUs, cs.host.Memory)
	}
	if cs.host.RestartPolicy.Name != container.RestartPolicyOnFailure {
		t.Errorf("restart policy = %q", cs.host.RestartPolicy.Name)
	}
	if cs.host.Init == nil || !*cs.host.Init || cs.host.Privileged {
		t.Errorf("init = %v, privileged = %v", cs.host.Init, cs.host.Privileged)
	}
	if b := cs.host.PortBindings[network.MustParsePort("8080/tcp")]; len(b) != 1 || b[0].HostIP.String() != "127.0.0.1" || b[0].HostPort != "18080" {
		t.Errorf("8080/tcp bindings = %v", b)
	}
	if b := cs.host.PortBindings[network.MustParsePort("53/udp")]; len(b) != 1 || b[0].HostPort != "" {
		t.Errorf("53/udp bindings = %v", b)
	}
	if _, ok := cs.config.ExposedPorts[network.MustParsePort("53/udp")]; !ok {
		t.Errorf("53/udp not exposed: %v", cs.config.ExposedPorts)
	}
	wantMounts := []mount.Mount{
		{Type: mount.TypeBind, Source: "/srv/cfg", Target: "/cfg", ReadOnly: true},
		{Type: mount.TypeVolume, Source: "data", Target: "/data"},
	}
	if fmt.Sprint(cs.host.Mounts) != fmt.Sprint(wantMounts) {
		t.Errorf("mounts = %v, want %v", cs.host.Mounts, wantMounts)
	}
	wantLabels := map[string]string{
		"team": "a", runtime.LabelManaged: "true", runtime.LabelWorkload: "web",
		runtime.LabelUID: "0123456789abcdef", runtime.LabelRevision: "7",
		LabelRuntime: "docker", LabelDesired: "running",
	}
	if fmt.Sprint(cs.config.Labels) != fmt.Sprint(wantLabels) {
		t.Errorf("labels = %v, want %v", cs.config.Labels, wantLabels)
	}
	if fmt.Sprint(cs.config.Entrypoint) != "[/hello]" || fmt.Sprint(cs.config.Cmd) != "[serve]" {
		t.Errorf("entrypoint %v cmd %v", cs.config.Entrypoint, cs.config.Cmd)
	}
	if cs.config.StopTimeout == nil || *cs.config.StopTimeout != 5 {
		t.Errorf("stop timeout = %v", cs.config.StopTimeout)
	}
}

func TestBuildCreateSpecDefaults(t *testing.T) {
	inst := runtime.Instance{Name: "a", UID: "u", Revision: 1, Spec: &persysv1.WorkloadSpec{
		Type:         persysv1.WorkloadType_WORKLOAD_TYPE_CONTAINER,
		DesiredState: persysv1.DesiredState_DESIRED_STATE_STOPPED,
		Container:    &persysv1.ContainerSpec{Image: "x", Ports: []*persysv1.PortMapping{{ContainerPort: 80}}},
	}}
	cs, err := buildCreateSpec(inst, 5)
	if err != nil {
		t.Fatal(err)
	}
	if cs.name != "persys-a-u-r1" || cs.desired != desiredStop || cs.config.Labels[LabelDesired] != desiredStop {
		t.Errorf("name %q desired %q", cs.name, cs.desired)
	}
	if cs.host.RestartPolicy.Name != container.RestartPolicyDisabled {
		t.Errorf("restart policy = %q, want no", cs.host.RestartPolicy.Name)
	}
	if cs.host.NanoCPUs != 0 || cs.host.Memory != 0 {
		t.Errorf("limits %d %d, want unlimited", cs.host.NanoCPUs, cs.host.Memory)
	}
	if cs.config.Entrypoint != nil || cs.config.Cmd != nil {
		t.Errorf("entrypoint %v cmd %v, want image defaults", cs.config.Entrypoint, cs.config.Cmd)
	}
	if _, ok := cs.host.PortBindings[network.MustParsePort("80/tcp")]; !ok {
		t.Errorf("empty protocol should mean tcp: %v", cs.host.PortBindings)
	}
}

func TestBuildCreateSpecInvalid(t *testing.T) {
	tests := []struct {
		name   string
		mutate func(*runtime.Instance)
		field  string
	}{
		{"empty name", func(i *runtime.Instance) { i.Name = "" }, "name"},
		{"bad name", func(i *runtime.Instance) { i.Name = "a/b" }, "name"},
		{"empty uid", func(i *runtime.Instance) { i.UID = "" }, "uid"},
		{"nil spec", func(i *runtime.Instance) { i.Spec = nil }, "spec"},
		{"wrong type", func(i *runtime.Instance) { i.Spec.Type = persysv1.WorkloadType_WORKLOAD_TYPE_VM }, "spec.type"},
		{"bad desired state", func(i *runtime.Instance) { i.Spec.DesiredState = 42 }, "spec.desired_state"},
		{"nil container", func(i *runtime.Instance) { i.Spec.Container = nil }, "spec.container"},
		{"empty image", func(i *runtime.Instance) { i.Spec.Container.Image = " " }, "spec.container.image"},
		{"negative cpu", func(i *runtime.Instance) { i.Spec.Resources.CpuMillis = -1 }, "spec.resources.cpu_millis"},
		{"tiny memory", func(i *runtime.Instance) { i.Spec.Resources.MemoryBytes = 1024 }, "spec.resources.memory_bytes"},
		{"port zero", func(i *runtime.Instance) { i.Spec.Container.Ports[0].ContainerPort = 0 }, "spec.container.ports[0].container_port"},
		{"port too big", func(i *runtime.Instance) { i.Spec.Container.Ports[1].ContainerPort = 70000 }, "spec.container.ports[1].container_port"},
		{"host port too big", func(i *runtime.Instance) { i.Spec.Container.Ports[0].HostPort = 65536 }, "spec.container.ports[0].host_port"},
		{"protocol", func(i *runtime.Instance) { i.Spec.Container.Ports[0].Protocol = "sctp" }, "spec.container.ports[0].protocol"},
		{"dynamic port not chosen", func(i *runtime.Instance) { i.Spec.Container.Ports[1].Dynamic = true }, "spec.container.ports[1].host_port"},
		{"host ip", func(i *runtime.Instance) { i.Spec.Container.Ports[0].HostIp = "localhost" }, "spec.container.ports[0].host_ip"},
		{"duplicate host port", func(i *runtime.Instance) {
			i.Spec.Container.Ports = append(i.Spec.Container.Ports, &persysv1.PortMapping{ContainerPort: 9090, HostPort: 18080, HostIp: "127.0.0.1"})
		}, "spec.container.ports[2].host_port"},
		{"relative target", func(i *runtime.Instance) { i.Spec.Container.Volumes[1].Target = "data" }, "spec.container.volumes[1].target"},
		{"root target", func(i *runtime.Instance) { i.Spec.Container.Volumes[1].Target = "/" }, "spec.container.volumes[1].target"},
		{"duplicate target", func(i *runtime.Instance) { i.Spec.Container.Volumes[1].Target = "/cfg/" }, "spec.container.volumes[1].target"},
		{"relative bind source", func(i *runtime.Instance) { i.Spec.Container.Volumes[0].Source = "srv" }, "spec.container.volumes[0].source"},
		{"bad volume name", func(i *runtime.Instance) { i.Spec.Container.Volumes[1].Source = "../x" }, "spec.container.volumes[1].source"},
		{"volume type", func(i *runtime.Instance) { i.Spec.Container.Volumes[1].Type = "tmpfs" }, "spec.container.volumes[1].type"},
		{"restart policy", func(i *runtime.Instance) { i.Spec.Container.RestartPolicy = "sometimes" }, "spec.container.restart_policy"},
		{"env name", func(i *runtime.Instance) { i.Spec.Container.Env["A=B"] = "x" }, "spec.container.env"},
		{"reserved label", func(i *runtime.Instance) { i.Spec.Container.Labels[runtime.LabelWorkload] = "other" }, "spec.container.labels"},
		{"reserved prefix", func(i *runtime.Instance) { i.Spec.Container.Labels["persys.anything"] = "x" }, "spec.container.labels"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			inst := validInstance()
			tt.mutate(&inst)
			_, err := buildCreateSpec(inst, 5)
			var f *runtime.Failure
			if !errors.As(err, &f) {
				t.Fatalf("err = %v, want *runtime.Failure", err)
			}
			if f.Reason != persysv1.FailureReason_FAILURE_REASON_INVALID_SPEC {
				t.Errorf("reason = %s, want INVALID_SPEC", f.Reason)
			}
			if !strings.HasPrefix(f.Message, tt.field) {
				t.Errorf("message %q does not start with field %q", f.Message, tt.field)
			}
		})
	}
}

func TestClassify(t *testing.T) {
	tests := []struct {
		name string
		err  error
		want persysv1.FailureReason
	}{
		{"port allocated", errors.New("driver failed programming external connectivity on endpoint x: Bind for 0.0.0.0:80 failed: port is already allocated"), persysv1.FailureReason_FAILURE_REASON_PORT_CONFLICT},
		{"address in use", errors.New("listen tcp 0.0.0.0:80: bind: address already in use"), persysv1.FailureReason_FAILURE_REASON_PORT_CONFLICT},
		{"other connectivity", errors.New("driver failed programming external connectivity on endpoint x: iptables failed"), persysv1.FailureReason_FAILURE_REASON_NETWORK},
		{"bind source", errors.New(`invalid mount config for type "bind": bind source path does not exist: /nope`), persysv1.FailureReason_FAILURE_REASON_STORAGE},
		{"volume", errors.New("error while mounting volume '/var/lib/docker/volumes/x'"), persysv1.FailureReason_FAILURE_REASON_STORAGE},
		{"other", errors.New("OCI runtime create failed"), persysv1.FailureReason_FAILURE_REASON_RUNTIME_ERROR},
		{"failure keeps reason", runtime.Fail(persysv1.FailureReason_FAILURE_REASON_IMAGE_NOT_FOUND, nil, "x"), persysv1.FailureReason_FAILURE_REASON_IMAGE_NOT_FOUND},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := classify(tt.err); got != tt.want {
				t.Errorf("classify = %s, want %s", got, tt.want)
			}
		})
	}
}

func TestContainerName(t *testing.T) {
	tests := []struct {
		name, wl, uid string
		rev           uint64
		want          string
	}{
		{"long uid", "web", "0123456789abcdef", 3, "persys-web-01234567-r3"},
		{"short uid", "db", "abc", 12, "persys-db-abc-r12"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := containerName(tt.wl, tt.uid, tt.rev); got != tt.want {
				t.Errorf("containerName = %q, want %q", got, tt.want)
			}
		})
	}
}
