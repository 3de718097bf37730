package specaccess

import (
	"strings"
	"testing"

	persysv1 "github.com/persys-dev/compute/api/persys/v1"
)

func dynSpec() *persysv1.WorkloadSpec {
	return &persysv1.WorkloadSpec{Type: persysv1.WorkloadType_WORKLOAD_TYPE_CONTAINER, Container: &persysv1.ContainerSpec{
		Ports: []*persysv1.PortMapping{
			{ContainerPort: 80, Dynamic: true, Protocol: "tcp"},
			{ContainerPort: 81, HostPort: 8081},
			{ContainerPort: 82, Dynamic: true, Protocol: "UDP", HostIp: "127.0.0.1"},
		}}}
}

func TestDynamicPorts(t *testing.T) {
	got := DynamicPorts(dynSpec())
	if len(got) != 2 || got[0].Field != "spec.container.ports[0].hostPort" || got[1].Field != "spec.container.ports[2].hostPort" ||
		got[1].Proto() != "udp" || got[1].HostIP != "127.0.0.1" || got[0].Port != 0 {
		t.Fatalf("DynamicPorts = %+v", got)
	}
	if HasDynamicPorts(&persysv1.WorkloadSpec{}) || !HasDynamicPorts(dynSpec()) {
		t.Fatal("HasDynamicPorts is wrong")
	}
}

func TestBindDynamic(t *testing.T) {
	spec := dynSpec()
	bound, err := BindDynamic(spec, []uint32{20000, 20001})
	if err != nil {
		t.Fatal(err)
	}
	ps := bound.GetContainer().GetPorts()
	if ps[0].GetHostPort() != 20000 || ps[1].GetHostPort() != 8081 || ps[2].GetHostPort() != 20001 {
		t.Fatalf("bound ports %v", ps)
	}
	if spec.GetContainer().GetPorts()[0].GetHostPort() != 0 {
		t.Fatal("BindDynamic changed its input")
	}
	// Bound, the ports are host needs like static ones.
	if n := Of(bound); len(n.Ports) != 3 {
		t.Fatalf("needs of the bound spec: %+v", n.Ports)
	}
	static := &persysv1.WorkloadSpec{Container: &persysv1.ContainerSpec{}}
	if got, err := BindDynamic(static, nil); err != nil || got != static {
		t.Fatalf("spec without dynamic ports: %v, %v; want it back as is", got, err)
	}
	for _, tt := range []struct {
		spec   *persysv1.WorkloadSpec
		chosen []uint32
		field  string
	}{
		{dynSpec(), []uint32{20000}, "spec.container.ports[2].hostPort"},
		{dynSpec(), []uint32{0, 20000}, "spec.container.ports[0].hostPort"},
		{dynSpec(), []uint32{1, 2, 3}, "dynamic_host_ports"},
		{static, []uint32{1}, "dynamic_host_ports"},
	} {
		if _, err := BindDynamic(tt.spec, tt.chosen); err == nil || !strings.HasPrefix(err.Error(), tt.field) {
			t.Errorf("BindDynamic(%v) error %v, want one naming %s", tt.chosen, err, tt.field)
		}
	}
}
