package scheduler

import (
	"context"
	"errors"
	"fmt"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	persysv1 "github.com/persys-dev/compute/api/persys/v1"
	"github.com/persys-dev/compute/internal/model"
	"github.com/persys-dev/compute/internal/store"
)

// ErrOtherCluster: an agent whose data dir belongs to another cluster
// asked to register (model.ErrOtherCluster).
var ErrOtherCluster = model.ErrOtherCluster

// registerNode records the node, grants its liveness lease and adopts what
// it already runs. It refuses, before looking at the workloads, an agent of
// another cluster (what it reports is that cluster's) and, while the node's
// lease is alive, another agent instance under the same node id.
func (s *Scheduler) registerNode(ctx context.Context, req *persysv1.RegisterNodeRequest) (*persysv1.RegisterNodeResponse, error) {
	id := req.GetNodeId()
	cluster := s.ClusterID()
	if cluster == "" {
		return nil, status.Error(codes.Unavailable, "the scheduler does not know its cluster id yet")
	}
	if told := req.GetClusterId(); told != "" && told != cluster {
		return nil, fmt.Errorf("cluster_id %q: node %s %w (this is cluster %q); start the agent with a fresh data dir to join this one",
			told, id, ErrOtherCluster, cluster)
	}
	leaseID, err := s.store.GrantNodeLeaseAs(ctx, id, req.GetInstanceId(), s.cfg.LeaseTTL)
	if errors.Is(err, store.ErrNodeHeld) {
		s.log.Warn("registration refused: node id held by another agent instance", "node", id, "instance", req.GetInstanceId())
		return nil, fmt.Errorf("node_id %q is registered and alive under another agent instance, not %q: stop that agent or give this one another --node-id: %w",
			id, req.GetInstanceId(), err)
	}
	if err != nil {
		return nil, fmt.Errorf("grant lease for node %s: %w", id, err)
	}
	now := s.cfg.Now()
	s.mu.Lock()
	s.invalidateLocked()
	ne := s.nodes[id]
	if ne == nil {
		ne = &nodeEntry{reports: map[string]*persysv1.WorkloadStatus{}}
		s.nodes[id] = ne
	}
	node := &persysv1.Node{
		Id:           id,
		Address:      req.GetAddress(),
		Capabilities: req.GetCapabilities(),
		State:        persysv1.NodeState_NODE_STATE_READY,
		RegisteredAt: timestamppb.New(now),
		LeaseId:      leaseID,
	}
	if ne.node != nil {
		// What the operator set survives the agent's restarts: a node
		// being drained goes on draining.
		node.Cordoned, node.Draining = ne.node.GetCordoned(), ne.node.GetDraining()
	}
	ne.node = node
	ne.alive = true
	ne.lastHeartbeat = now
	s.mu.Unlock()

	if err := s.store.PutNode(ctx, node); err != nil {
		return nil, fmt.Errorf("store node %s: %w", id, err)
	}
	// The connection pool redials by itself when the address changed; an
	// unchanged one keeps serving calls that are in flight.
	s.log.Info("node registered", "node", id, "address", req.GetAddress(), "workloads", len(req.GetWorkloads()))
	s.events.Add(model.EventNodeRegistered, &persysv1.Event{NodeId: id, Message: "registered at " + req.GetAddress()})
	// The registration's list comes without a digest: the first heartbeat
	// after it is full.
	s.processReports(id, req.GetWorkloads(), 0)
	s.mu.Lock()
	names := s.assignedLocked(id)
	s.mu.Unlock()
	for _, n := range names {
		s.queue.Add(n)
	}
	// A node that joins or returns may be where a pending workload fits.
	s.queuePending()
	s.mu.Lock()
	interval := s.heartbeatIntervalLocked()
	s.mu.Unlock()
	return &persysv1.RegisterNodeResponse{
		HeartbeatIntervalMs: interval.Milliseconds(),
		LeaseTtlSeconds:     int64(s.cfg.LeaseTTL / time.Second),
		ClusterId:           cluster,
	}, nil
}

// heartbeat renews the node's lease (no etcd revision is created) and
// processes its report. An unknown node or an expired lease asks the agent
// to register again. A report that is only the digest of the node's last
// full list is served from the list held, or, without it, answered with
// resend_full.
func (s *Scheduler) heartbeat(ctx context.Context, req *persysv1.HeartbeatRequest) (*persysv1.HeartbeatResponse, error) {
	id := req.GetNodeId()
	s.mu.Lock()
	ne := s.nodes[id]
	var leaseID int64
	if ne != nil && ne.node != nil {
		leaseID = ne.node.GetLeaseId()
	}
	s.mu.Unlock()
	if ne == nil || leaseID == 0 {
		return &persysv1.HeartbeatResponse{Reregister: true}, nil
	}
	if err := s.store.KeepAliveNode(ctx, leaseID); err != nil {
		if errors.Is(err, store.ErrLeaseNotFound) {
			return &persysv1.HeartbeatResponse{Reregister: true}, nil
		}
		return nil, fmt.Errorf("renew lease of node %s: %w", id, err)
	}
	s.metrics.heartbeats.Inc()
	s.mu.Lock()
	ne.usage = req.GetUsage()
	ne.lastHeartbeat = s.cfg.Now()
	portsChanged := !req.GetDigestOnly() && s.setUsedPortsLocked(ne, req.GetUsedHostPorts())
	intervalMs := s.heartbeatIntervalLocked().Milliseconds()
	s.mu.Unlock()
	if portsChanged {
		// A port given up may be what a pending workload waits for.
		s.queuePending()
	}
	if req.GetDigestOnly() {
		if !s.processDigest(id, req.GetReportDigest()) {
			s.metrics.digestOnly.WithLabelValues("resend_full").Inc()
			return &persysv1.HeartbeatResponse{ResendFull: true, HeartbeatIntervalMs: intervalMs}, nil
		}
		s.metrics.digestOnly.WithLabelValues("served").Inc()
		return &persysv1.HeartbeatResponse{HeartbeatIntervalMs: intervalMs}, nil
	}
	kept := s.processReports(id, req.GetWorkloads(), req.GetReportDigest())
	return &persysv1.HeartbeatResponse{DigestKept: kept && req.GetReportDigest() != 0, HeartbeatIntervalMs: intervalMs}, nil
}

// heartbeatIntervalLocked is the interval agents are told now (see
// Config.MaxHeartbeatRate). Callers hold s.mu.
func (s *Scheduler) heartbeatIntervalLocked() time.Duration {
	return HeartbeatInterval(len(s.nodes), s.cfg.HeartbeatInterval, s.cfg.LeaseTTL, s.cfg.MaxHeartbeatRate)
}

// HeartbeatInterval spreads nodes' heartbeats so that together they send
// about rate a second: never less than base, and never more than a third
// of ttl (unless base is).
func HeartbeatInterval(nodes int, base, ttl time.Duration, rate float64) time.Duration {
	d := time.Duration(float64(nodes) / rate * float64(time.Second))
	d = min(d, ttl/3)
	return max(d, base).Truncate(time.Millisecond)
}

type orphan struct{ name, uid string }

// processReports stores a node's full report with the agent's digest of it
// (0: none), queues every workload whose report changed (or vanished), and
// removes orphans: what the node runs that the scheduler does not assign
// to it. It reports false when the node is not known.
func (s *Scheduler) processReports(nodeID string, reports []*persysv1.WorkloadStatus, digest uint64) bool {
	var changed []string
	var orphans []orphan

	s.mu.Lock()
	ne := s.nodes[nodeID]
	if ne == nil {
		s.mu.Unlock()
		return false
	}
	next := make(map[string]*persysv1.WorkloadStatus, len(reports))
	for _, st := range reports {
		name := st.GetName()
		if name == "" {
			continue
		}
		next[name] = st
		if !sameReport(ne.reports[name], st) {
			changed = append(changed, name)
		}
		if s.isOrphanLocked(nodeID, name, st) {
			orphans = append(orphans, orphan{name, st.GetUid()})
		}
	}
	for name := range ne.reports {
		if _, ok := next[name]; !ok {
			changed = append(changed, name)
		}
	}
	ne.reports = next
	ne.reportDigest = digest
	if !ne.reported {
		// The node's first full list since this scheduler started or since
		// the node came back: its assigned workloads waited for it (see
		// reconcileOnce), those it does not run included.
		ne.reported = true
		changed = append(changed, s.assignedLocked(nodeID)...)
	}
	s.mu.Unlock()

	for _, n := range changed {
		s.queue.Add(n)
	}
	for _, o := range orphans {
		s.removeOrphan(nodeID, o.name, o.uid)
	}
	return true
}

// processDigest serves a heartbeat whose list is the node's last full one,
// sent as its digest alone. Nothing the node reports changed, so nothing
// is queued; but an assignment may have moved away since, so what the node
// reports is checked for orphans again, as a full list would be. It
// reports false when the list held is not the one with that digest (none
// yet since this scheduler started or the node registered, or changed
// here since): the agent must send it.
func (s *Scheduler) processDigest(nodeID string, digest uint64) bool {
	var orphans []orphan
	s.mu.Lock()
	ne := s.nodes[nodeID]
	if ne == nil || !ne.reported || ne.reportDigest == 0 || ne.reportDigest != digest {
		s.mu.Unlock()
		return false
	}
	for name, st := range ne.reports {
		if s.isOrphanLocked(nodeID, name, st) {
			orphans = append(orphans, orphan{name, st.GetUid()})
		}
	}
	s.mu.Unlock()
	for _, o := range orphans {
		s.removeOrphan(nodeID, o.name, o.uid)
	}
	return true
}

// isOrphanLocked reports whether the workload a node reports with st is
// one the scheduler does not assign to that node, or another instance of
// it (another uid). s.mu is held.
func (s *Scheduler) isOrphanLocked(nodeID, name string, st *persysv1.WorkloadStatus) bool {
	e := s.workloads[name]
	onNode := e != nil && (e.assignment.GetNodeId() == nodeID || e.assignment.GetPreviousNodeId() == nodeID)
	return !onNode || (st.GetUid() != "" && st.GetUid() != e.w.GetUid())
}

// setReport records what the scheduler learned of a workload on the node
// outside the node's lists (st nil: it is gone). A change that matters
// means reports no longer is the list the agent's digest stands for, so
// the next digest-only heartbeat is answered with resend_full. s.mu is
// held.
func (ne *nodeEntry) setReport(name string, st *persysv1.WorkloadStatus) {
	old, had := ne.reports[name]
	if st == nil {
		if !had {
			return
		}
		delete(ne.reports, name)
	} else {
		ne.reports[name] = st
		if had && sameReport(old, st) && old.GetMessage() == st.GetMessage() {
			return
		}
	}
	ne.reportDigest = 0
}

// removeOrphan asks a node to delete a workload it should not run, once at
// a time per node and name.
func (s *Scheduler) removeOrphan(nodeID, name, uid string) {
	key := nodeID + "/" + name + "/" + uid
	s.mu.Lock()
	if s.orphanInflight[key] {
		s.mu.Unlock()
		return
	}
	runCtx := s.runCtx
	if runCtx == nil || runCtx.Err() != nil {
		s.mu.Unlock()
		return
	}
	s.orphanInflight[key] = true
	addr := ""
	if ne := s.nodes[nodeID]; ne != nil {
		addr = ne.node.GetAddress()
	}
	s.background.Add(1)
	s.mu.Unlock()

	go func() {
		defer s.background.Done()
		defer func() {
			s.mu.Lock()
			delete(s.orphanInflight, key)
			s.mu.Unlock()
		}()
		ctx, cancel := context.WithTimeout(runCtx, s.cfg.ApplyTimeout)
		defer cancel()
		err := s.agents().call(ctx, nodeID, addr, func(cli persysv1.AgentServiceClient) error {
			_, err := cli.DeleteWorkload(ctx, &persysv1.DeleteWorkloadRequest{Name: name, Uid: uid})
			return err
		})
		if err != nil {
			s.log.Warn("remove orphan", "node", nodeID, "workload", name, "uid", uid, "err", err)
			return
		}
		s.metrics.orphansRemoved.Inc()
		s.log.Info("orphan removed", "node", nodeID, "workload", name, "uid", uid)
		s.events.Add(model.EventOrphanRemoved, &persysv1.Event{Workload: name, NodeId: nodeID,
			Message: "removed a copy the scheduler does not assign to this node"})
	}()
}

// sameReport compares what matters for reconciliation.
func sameReport(a, b *persysv1.WorkloadStatus) bool {
	if a == nil || b == nil {
		return a == b
	}
	return a.GetUid() == b.GetUid() && a.GetRevision() == b.GetRevision() && a.GetState() == b.GetState() &&
		a.GetReason() == b.GetReason() && a.GetRuntimeId() == b.GetRuntimeId() && a.GetRestartCount() == b.GetRestartCount() &&
		a.GetReady() == b.GetReady() && a.GetHealth() == b.GetHealth() && a.GetHealthOutput() == b.GetHealthOutput()
}

func cloneNode(n *persysv1.Node) *persysv1.Node {
	if n == nil {
		return &persysv1.Node{}
	}
	return proto.Clone(n).(*persysv1.Node)
}
