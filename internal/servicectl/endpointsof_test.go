package servicectl_test

import (
	"testing"

	"google.golang.org/protobuf/proto"

	persysv1 "github.com/persys-dev/compute/api/persys/v1"
	"github.com/persys-dev/compute/internal/servicectl"
	"github.com/persys-dev/compute/internal/store"
)

// TestEndpointsOfTemplates: what an endpoint carries for each kind of
// template. A container publishes its fixed and chosen host ports and the
// first address its runtime reports (its one network's IPv4); a compose
// project the host ports its file publishes (as the scheduler derived
// them, without the file's target ports); a VM
// publishes its port forwards, and a guest address only when it has a
// bridge network (user networking's guest address reaches nothing).
func TestEndpointsOfTemplates(t *testing.T) {
	container := &persysv1.WorkloadSpec{Type: persysv1.WorkloadType_WORKLOAD_TYPE_CONTAINER,
		Container: &persysv1.ContainerSpec{Image: "web:1", Ports: []*persysv1.PortMapping{
			{ContainerPort: 8080, Dynamic: true}, {ContainerPort: 9090, HostPort: 9090, Protocol: "udp"}, {ContainerPort: 7070}}}}
	userVM := &persysv1.WorkloadSpec{Type: persysv1.WorkloadType_WORKLOAD_TYPE_VM, Vm: &persysv1.VMSpec{
		Networks: []*persysv1.VMNetwork{{Mode: "user", PortForwards: []*persysv1.VMPortForward{{HostPort: 2222, GuestPort: 22}}}}}}
	compose := &persysv1.WorkloadSpec{Type: persysv1.WorkloadType_WORKLOAD_TYPE_COMPOSE,
		Compose:    &persysv1.ComposeSpec{Inline: "services: {web: {image: web:1, ports: [\"8080:80\"]}}"},
		HostAccess: &persysv1.HostAccess{Ports: []*persysv1.HostPort{{Port: 8080, Field: "services.web.ports[0]"}}}}
	bridgeVM := proto.CloneOf(userVM)
	bridgeVM.Vm.Networks = append(bridgeVM.Vm.Networks, &persysv1.VMNetwork{Mode: "bridge", Bridge: "br0"})

	tests := []struct {
		name      string
		spec      *persysv1.WorkloadSpec
		addresses []string
		dynamic   []uint32
		ports     []*persysv1.ServiceEndpointPort
		ip        string
	}{
		{"container", container, []string{"172.17.0.3", "fd00::3"}, []uint32{20001},
			[]*persysv1.ServiceEndpointPort{{ContainerPort: 8080, HostPort: 20001, Protocol: "tcp"}, {ContainerPort: 9090, HostPort: 9090, Protocol: "udp"}},
			"172.17.0.3"},
		{"container without an address", container, nil, []uint32{20001},
			[]*persysv1.ServiceEndpointPort{{ContainerPort: 8080, HostPort: 20001, Protocol: "tcp"}, {ContainerPort: 9090, HostPort: 9090, Protocol: "udp"}},
			""},
		{"compose", compose, nil, nil, []*persysv1.ServiceEndpointPort{{HostPort: 8080, Protocol: "tcp"}}, ""},
		{"vm on user networking", userVM, []string{"10.0.2.15"}, nil,
			[]*persysv1.ServiceEndpointPort{{ContainerPort: 22, HostPort: 2222, Protocol: "tcp"}}, ""},
		{"vm on a bridge", bridgeVM, []string{"192.168.10.7"}, nil,
			[]*persysv1.ServiceEndpointPort{{ContainerPort: 22, HostPort: 2222, Protocol: "tcp"}}, "192.168.10.7"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := &store.ServiceReplicas{
				Service: &persysv1.Service{Name: "web", Uid: "s1"},
				Workloads: map[string]*persysv1.Workload{"web-a-0": {Name: "web-a-0", Revision: 1, Spec: tt.spec,
					Owner: &persysv1.ServiceOwner{Service: "web", ServiceUid: "s1", Revision: 3}}},
				Statuses: map[string]*persysv1.WorkloadStatus{"web-a-0": {Name: "web-a-0", NodeId: "n1", Revision: 1,
					State: persysv1.ActualState_ACTUAL_STATE_RUNNING, Ready: true, Addresses: tt.addresses}},
				Assignments: map[string]*persysv1.Assignment{"web-a-0": {Name: "web-a-0", NodeId: "n1", DynamicHostPorts: tt.dynamic}},
			}
			eps := servicectl.EndpointsOf(r, func(string) string { return "10.0.0.5" })
			want := &persysv1.ServiceEndpoint{Replica: "web-a-0", NodeId: "n1", NodeAddress: "10.0.0.5", Ports: tt.ports, ContainerIp: tt.ip, Revision: 3}
			if len(eps) != 1 || !proto.Equal(eps[0], want) {
				t.Fatalf("endpoints %v, want [%v]", eps, want)
			}
		})
	}
}
