// Package specaccess reads what a workload spec asks of its host into
// hostaccess.Needs and back: the wire adapter of package hostaccess, kept
// apart so that the pure packages (placement) do not link protobuf.
// Containers and VMs are read from the spec; compose projects from their
// parsed file (composespec.Needs), which the scheduler stores in the spec's
// host_access when it is applied.
package specaccess

import (
	"fmt"
	"strings"

	persysv1 "github.com/persys-dev/compute/api/persys/v1"
	"github.com/persys-dev/compute/internal/hostaccess"
	"google.golang.org/protobuf/proto"
)

// Of returns the needs of a container or VM spec from its fields; for a
// compose spec it returns the stored host_access (derived at apply).
func Of(spec *persysv1.WorkloadSpec) hostaccess.Needs {
	switch {
	case spec.GetContainer() != nil:
		return container(spec.GetContainer())
	case spec.GetVm() != nil:
		return vm(spec.GetVm())
	}
	return FromProto(spec.GetHostAccess())
}

func container(c *persysv1.ContainerSpec) hostaccess.Needs {
	var n hostaccess.Needs
	if c.GetPrivileged() {
		n.Privileged, n.PrivilegedField = true, "spec.container.privileged"
	}
	for i, v := range c.GetVolumes() {
		if v.GetType() == "bind" {
			n.HostPaths = append(n.HostPaths, hostaccess.Path{Path: v.GetSource(), Field: fmt.Sprintf("spec.container.volumes[%d].source", i)})
		}
	}
	for i, p := range c.GetPorts() {
		if p.GetHostPort() > 0 {
			n.Ports = append(n.Ports, hostaccess.Port{HostIP: p.GetHostIp(), Port: p.GetHostPort(),
				Protocol: strings.ToLower(p.GetProtocol()), Field: fmt.Sprintf("spec.container.ports[%d].hostPort", i)})
		}
	}
	return n
}

func vm(v *persysv1.VMSpec) hostaccess.Needs {
	var n hostaccess.Needs
	for i, nw := range v.GetNetworks() {
		if nw.GetMode() == "bridge" && !n.Privileged {
			// A bridge puts the guest on the host's own network segment.
			n.Privileged, n.PrivilegedField = true, fmt.Sprintf("spec.vm.networks[%d].bridge", i)
		}
		for j, pf := range nw.GetPortForwards() {
			if pf.GetHostPort() > 0 {
				n.Ports = append(n.Ports, hostaccess.Port{HostIP: pf.GetHostIp(), Port: pf.GetHostPort(),
					Protocol: strings.ToLower(pf.GetProtocol()), Field: fmt.Sprintf("spec.vm.networks[%d].portForwards[%d].hostPort", i, j)})
			}
		}
	}
	return n
}

// ToProto is the wire form of n; nil when n asks for nothing.
func ToProto(n hostaccess.Needs) *persysv1.HostAccess {
	if !n.Privileged && len(n.HostPaths) == 0 && len(n.Ports) == 0 {
		return nil
	}
	h := &persysv1.HostAccess{Privileged: n.Privileged, PrivilegedField: n.PrivilegedField}
	for _, p := range n.HostPaths {
		h.HostPaths = append(h.HostPaths, &persysv1.HostPath{Path: p.Path, Field: p.Field})
	}
	for _, p := range n.Ports {
		h.Ports = append(h.Ports, &persysv1.HostPort{HostIp: p.HostIP, Port: p.Port, Protocol: p.Proto(), Field: p.Field})
	}
	return h
}

// FromProto reads the wire form back.
func FromProto(h *persysv1.HostAccess) hostaccess.Needs {
	n := hostaccess.Needs{Privileged: h.GetPrivileged(), PrivilegedField: h.GetPrivilegedField()}
	for _, p := range h.GetHostPaths() {
		n.HostPaths = append(n.HostPaths, hostaccess.Path{Path: p.GetPath(), Field: p.GetField()})
	}
	for _, p := range h.GetPorts() {
		n.Ports = append(n.Ports, PortFromProto(p))
	}
	return n
}

// PortFromProto reads one host port.
func PortFromProto(p *persysv1.HostPort) hostaccess.Port {
	return hostaccess.Port{HostIP: p.GetHostIp(), Port: p.GetPort(), Protocol: strings.ToLower(p.GetProtocol()), Field: p.GetField()}
}

// PolicyToProto is the wire form of a node policy.
func PolicyToProto(p hostaccess.Policy) *persysv1.NodePolicy {
	return &persysv1.NodePolicy{AllowPrivileged: p.AllowPrivileged, AllowHostPaths: append([]string(nil), p.AllowHostPaths...)}
}

// PolicyFromProto reads a node's policy; a node that reports none (an
// older agent) allows nothing.
func PolicyFromProto(p *persysv1.NodePolicy) hostaccess.Policy {
	return hostaccess.Policy{AllowPrivileged: p.GetAllowPrivileged(), AllowHostPaths: append([]string(nil), p.GetAllowHostPaths()...)}
}

// DynamicPorts lists the container's dynamic port mappings, in their
// order, as host ports without a number: what the scheduler must find free
// in the node's dynamic range. Only containers have dynamic ports.
func DynamicPorts(spec *persysv1.WorkloadSpec) []hostaccess.Port {
	var out []hostaccess.Port
	for i, p := range spec.GetContainer().GetPorts() {
		if p.GetDynamic() {
			out = append(out, hostaccess.Port{HostIP: p.GetHostIp(), Protocol: strings.ToLower(p.GetProtocol()),
				Field: fmt.Sprintf("spec.container.ports[%d].hostPort", i)})
		}
	}
	return out
}

// HasDynamicPorts reports whether the spec asks for a dynamic host port,
// without allocating.
func HasDynamicPorts(spec *persysv1.WorkloadSpec) bool {
	for _, p := range spec.GetContainer().GetPorts() {
		if p.GetDynamic() {
			return true
		}
	}
	return false
}

// BindDynamic returns spec with the chosen host ports written into its
// dynamic mappings, in order, so that a runtime publishes them as it
// publishes static ones; spec itself is not changed. A spec without
// dynamic mappings is returned as is. The count must match, and no chosen
// port may be 0.
func BindDynamic(spec *persysv1.WorkloadSpec, chosen []uint32) (*persysv1.WorkloadSpec, error) {
	if !HasDynamicPorts(spec) {
		if len(chosen) > 0 {
			return nil, fmt.Errorf("dynamic_host_ports: %d given, but the spec has no dynamic port", len(chosen))
		}
		return spec, nil
	}
	out := proto.Clone(spec).(*persysv1.WorkloadSpec)
	k := 0
	for i, p := range out.GetContainer().GetPorts() {
		if !p.GetDynamic() {
			continue
		}
		if k >= len(chosen) || chosen[k] == 0 {
			return nil, fmt.Errorf("spec.container.ports[%d].hostPort: dynamic, but no host port was chosen for it (dynamic_host_ports has %d)", i, len(chosen))
		}
		p.HostPort = chosen[k]
		k++
	}
	if k != len(chosen) {
		return nil, fmt.Errorf("dynamic_host_ports: %d given for %d dynamic ports", len(chosen), k)
	}
	return out, nil
}
