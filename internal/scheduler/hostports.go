package scheduler

import (
	"slices"

	"google.golang.org/protobuf/proto"

	persysv1 "github.com/persys-dev/compute/api/persys/v1"
	"github.com/persys-dev/compute/internal/hostaccess"
	"github.com/persys-dev/compute/internal/hostaccess/specaccess"
	"github.com/persys-dev/compute/internal/placement"
)

// hostNeeds is what a spec asks of its host: the host_access derived at
// apply when the spec carries it, else read from the spec's fields (specs
// stored before host_access existed).
func hostNeeds(spec *persysv1.WorkloadSpec) hostaccess.Needs {
	if h := spec.GetHostAccess(); h != nil {
		return specaccess.FromProto(h)
	}
	return specaccess.Of(spec)
}

// usedPorts are the host ports the node's agent reports bound by something
// Persys did not start.
func usedPorts(caps *persysv1.NodeCapabilities) []hostaccess.Port {
	used := caps.GetUsedHostPorts()
	if len(used) == 0 {
		return nil
	}
	out := make([]hostaccess.Port, len(used))
	for i, p := range used {
		out[i] = specaccess.PortFromProto(p)
	}
	return out
}

// gaveUp reports whether st is the final FAILED status of w's revision.
func gaveUp(st *persysv1.WorkloadStatus, w *persysv1.Workload, maxAttempts int) bool {
	return maxAttempts > 0 && st.GetState() == persysv1.ActualState_ACTUAL_STATE_FAILED &&
		int(st.GetAttempts()) >= maxAttempts && st.GetRevision() == w.GetRevision()
}

// portsHeldLocked lists, per node, the host ports of the workloads that
// hold their place there (a moving workload on both nodes). Callers hold
// mu.
func (s *Scheduler) portsHeldLocked() map[string][]hostaccess.Port {
	out := map[string][]hostaccess.Port{}
	for _, e := range s.workloads {
		spec := e.w.GetSpec()
		if !hasHostPorts(spec) || !s.holdsLocked(e) {
			continue
		}
		ports := hostNeeds(spec).Ports
		for _, id := range [...]string{e.assignment.GetNodeId(), e.assignment.GetPreviousNodeId()} {
			if id != "" {
				out[id] = append(out[id], ports...)
			}
		}
	}
	return out
}

// hasHostPorts is a cheap test that spares the snapshot reading the needs
// of the many workloads that publish no host port.
func hasHostPorts(spec *persysv1.WorkloadSpec) bool {
	if h := spec.GetHostAccess(); h != nil {
		return len(h.GetPorts()) > 0
	}
	for _, p := range spec.GetContainer().GetPorts() {
		if p.GetHostPort() > 0 {
			return true
		}
	}
	for _, nw := range spec.GetVm().GetNetworks() {
		if len(nw.GetPortForwards()) > 0 {
			return true
		}
	}
	return false
}

// adjustPorts returns taken with ports added (sign > 0) or removed, one
// instance each. It never writes into taken, which earlier copies of the
// snapshot share.
func adjustPorts(taken, ports []hostaccess.Port, sign int64) []hostaccess.Port {
	if sign > 0 {
		return append(slices.Clip(taken), ports...)
	}
	out := slices.Clone(taken)
	for _, p := range ports {
		if i := slices.Index(out, p); i >= 0 {
			out = slices.Delete(out, i, i+1)
		}
	}
	return out
}

// pendingReason is the status reason of a workload no node takes: the
// policy or port reason when it rules out every node (the caller knows
// what to change), else NO_FEASIBLE_NODE.
func pendingReason(d placement.Decision) persysv1.FailureReason {
	if len(d.Rejections) == 0 {
		return persysv1.FailureReason_FAILURE_REASON_NO_FEASIBLE_NODE
	}
	every := func(r placement.RejectReason) bool {
		for _, rej := range d.Rejections {
			if !rej.All.Has(r) {
				return false
			}
		}
		return true
	}
	switch {
	case every(placement.PolicyDenied):
		return persysv1.FailureReason_FAILURE_REASON_POLICY_DENIED
	case every(placement.PortConflict):
		return persysv1.FailureReason_FAILURE_REASON_PORT_CONFLICT
	}
	return persysv1.FailureReason_FAILURE_REASON_NO_FEASIBLE_NODE
}

// maxUsedHostPorts bounds the used ports a node's record keeps (agents
// send no more than this).
const maxUsedHostPorts = 1024

// setUsedPortsLocked records the host ports a full heartbeat reports bound
// by something else, in the node's capabilities as registration does. The
// record is replaced, never changed in place (views share it), and only
// when the list changed, which also drops the placement snapshot; it
// reports whether it did. Callers hold mu.
func (s *Scheduler) setUsedPortsLocked(ne *nodeEntry, used []*persysv1.HostPort) bool {
	if len(used) > maxUsedHostPorts {
		used = used[:maxUsedHostPorts]
	}
	old := ne.node.GetCapabilities().GetUsedHostPorts()
	if slices.EqualFunc(old, used, func(a, b *persysv1.HostPort) bool { return proto.Equal(a, b) }) {
		return false
	}
	n := cloneNode(ne.node)
	if n.Capabilities == nil {
		n.Capabilities = &persysv1.NodeCapabilities{}
	}
	n.Capabilities.UsedHostPorts = used
	ne.node = n
	s.invalidateLocked()
	return true
}
