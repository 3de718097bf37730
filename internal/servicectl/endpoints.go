package servicectl

// Endpoints: the ready replicas of a service that are not being removed,
// with where to reach them, read from the store at one revision; and a
// watch that sends the whole set again each time it changes.

import (
	"context"
	"net"
	"slices"
	"time"

	"google.golang.org/protobuf/proto"

	persysv1 "github.com/persys-dev/compute/api/persys/v1"
	"github.com/persys-dev/compute/internal/store"
)

// Endpoint list types, as sent by a watch.
const (
	EndpointsSnapshot = "SNAPSHOT"
	EndpointsUpdate   = "UPDATE"
)

// Endpoints returns the service's endpoints now.
func (c *Controller) Endpoints(ctx context.Context, name string) (*persysv1.ServiceEndpointList, error) {
	r, err := c.st.ReadServiceReplicas(ctx, name)
	if err != nil {
		return nil, err
	}
	return &persysv1.ServiceEndpointList{Service: name, Revision: r.Revision, Endpoints: EndpointsOf(r, c.nodeAddress)}, nil
}

// rewatchPause keeps a watch that keeps failing (etcd without a leader)
// from spinning; a healthy watch never waits.
const rewatchPause = 500 * time.Millisecond

// WatchEndpoints calls send with the service's endpoints (type SNAPSHOT),
// then with the whole new set (UPDATE) each time it changes, until ctx
// ends, send fails or the service is gone (its NotFoundError). It holds
// one set and one etcd watch of the service's keys, whatever the rate of
// changes: changes that come faster than send takes them coalesce.
func (c *Controller) WatchEndpoints(ctx context.Context, name string, send func(*persysv1.ServiceEndpointList) error) error {
	cur, err := c.Endpoints(ctx, name)
	if err != nil {
		return err
	}
	cur.Type = EndpointsSnapshot
	if err := send(cur); err != nil {
		return err
	}
	for ctx.Err() == nil {
		for range c.st.WatchServiceReplicas(ctx, name, cur.GetRevision()) {
			if cur, err = c.sendChange(ctx, cur, send); err != nil {
				return err
			}
		}
		// The watch ended (compaction, lost leader): read again after a
		// pause and watch from there.
		t := time.NewTimer(rewatchPause)
		select {
		case <-ctx.Done():
			t.Stop()
		case <-t.C:
			next, err := c.sendChange(ctx, cur, send)
			if err != nil && !store.Unavailable(err) {
				return err // gone, or the receiver went away
			}
			cur = next
		}
	}
	return ctx.Err()
}

// sendChange reads the endpoints again and sends them when they differ
// from cur; it returns the set read.
func (c *Controller) sendChange(ctx context.Context, cur *persysv1.ServiceEndpointList, send func(*persysv1.ServiceEndpointList) error) (*persysv1.ServiceEndpointList, error) {
	next, err := c.Endpoints(ctx, cur.GetService())
	if err != nil {
		return cur, err
	}
	if slices.EqualFunc(cur.GetEndpoints(), next.GetEndpoints(), func(a, b *persysv1.ServiceEndpoint) bool { return proto.Equal(a, b) }) {
		return next, nil
	}
	next.Type = EndpointsUpdate
	return next, send(next)
}

// nodeAddress is the host part of the node's registered address.
func (c *Controller) nodeAddress(id string) string {
	nodes := c.cfg.Workloads.NodeViews(id)
	if len(nodes) == 0 {
		return ""
	}
	addr := nodes[0].GetAddress()
	if host, _, err := net.SplitHostPort(addr); err == nil {
		return host
	}
	return addr
}

// EndpointsOf lists, by replica name, the replicas of r's service that
// are ready, not deleted and not draining, with their node's address
// (from addr) and published ports.
func EndpointsOf(r *store.ServiceReplicas, addr func(nodeID string) string) []*persysv1.ServiceEndpoint {
	draining := map[string]bool{}
	for _, d := range r.Progress.GetDraining() {
		draining[d.GetReplica()] = true
	}
	var out []*persysv1.ServiceEndpoint
	for name, w := range r.Workloads {
		st := r.Statuses[name]
		v := &persysv1.WorkloadView{Workload: w, Status: st}
		if w.GetOwner().GetServiceUid() != r.Service.GetUid() || w.GetDeleting() || draining[name] || !replicaReady(v) {
			continue
		}
		ep := &persysv1.ServiceEndpoint{Replica: name, NodeId: st.GetNodeId(), NodeAddress: addr(st.GetNodeId()),
			Ports: publishedPorts(w.GetSpec(), dynamicPorts(r.Assignments[name], st.GetNodeId())), Revision: w.GetOwner().GetRevision()}
		ep.ContainerIp = endpointIP(w.GetSpec(), st.GetAddresses())
		out = append(out, ep)
	}
	slices.SortFunc(out, func(a, b *persysv1.ServiceEndpoint) int { return cmpString(a.GetReplica(), b.GetReplica()) })
	return out
}

func cmpString(a, b string) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// dynamicPorts are the host ports the scheduler chose on node: a replica
// being moved still runs where its previous ports were chosen.
func dynamicPorts(a *persysv1.Assignment, node string) []uint32 {
	if a.GetNodeId() != node && a.GetPreviousNodeId() == node {
		return a.GetPreviousDynamicHostPorts()
	}
	return a.GetDynamicHostPorts()
}

// endpointIP is the one address of a replica its endpoint carries. A
// container has one network, the engine's bridge (a container spec names
// no other), and the runtime lists its IPv4 address there before its
// IPv6 one: the first is the address on the replica's network, and the
// others (describe workload lists them) reach the same interface. A VM's
// guest is reachable only on a bridge network: user networking's guest
// address is private to QEMU, so a VM without a bridge network has none.
// A compose project's runtime reports no address (its services have
// one each).
func endpointIP(spec *persysv1.WorkloadSpec, addrs []string) string {
	if len(addrs) == 0 {
		return ""
	}
	if vm := spec.GetVm(); vm != nil && !slices.ContainsFunc(vm.GetNetworks(), func(n *persysv1.VMNetwork) bool {
		return n.GetMode() == "bridge"
	}) {
		return ""
	}
	return addrs[0]
}

// publishedPorts are a container's ports that have a host port, fixed or
// chosen (the k-th dynamic port takes the k-th chosen one), a VM's port
// forwards (the guest port as the container port), or the host ports a
// compose file publishes, as the scheduler derived them from the file
// (host_access; the file's target ports are not kept: container port 0).
func publishedPorts(spec *persysv1.WorkloadSpec, chosen []uint32) []*persysv1.ServiceEndpointPort {
	var out []*persysv1.ServiceEndpointPort
	if spec.GetCompose() != nil {
		for _, p := range spec.GetHostAccess().GetPorts() {
			proto := p.GetProtocol()
			if proto == "" {
				proto = "tcp"
			}
			out = append(out, &persysv1.ServiceEndpointPort{HostPort: p.GetPort(), Protocol: proto})
		}
		return out
	}
	for _, n := range spec.GetVm().GetNetworks() {
		for _, f := range n.GetPortForwards() {
			proto := f.GetProtocol()
			if proto == "" {
				proto = "tcp"
			}
			out = append(out, &persysv1.ServiceEndpointPort{ContainerPort: f.GetGuestPort(), HostPort: f.GetHostPort(), Protocol: proto})
		}
	}
	k := 0
	for _, p := range spec.GetContainer().GetPorts() {
		host := p.GetHostPort()
		if p.GetDynamic() {
			host = 0
			if k < len(chosen) {
				host = chosen[k]
			}
			k++
		}
		if host == 0 {
			continue
		}
		proto := p.GetProtocol()
		if proto == "" {
			proto = "tcp"
		}
		out = append(out, &persysv1.ServiceEndpointPort{ContainerPort: p.GetContainerPort(), HostPort: host, Protocol: proto})
	}
	return out
}
