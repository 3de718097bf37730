package scheduler

import (
	"context"
	"errors"
	"fmt"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	persysv1 "github.com/persys-dev/compute/api/persys/v1"
	"github.com/persys-dev/compute/internal/store"
)

// registerNode records the node, grants its liveness lease and adopts what
// it already runs.
func (s *Scheduler) registerNode(ctx context.Context, req *persysv1.RegisterNodeRequest) (*persysv1.RegisterNodeResponse, error) {
	id := req.GetNodeId()
	leaseID, err := s.store.GrantNodeLease(ctx, id, s.cfg.LeaseTTL)
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
	s.events.add(&persysv1.Event{Type: "NodeRegistered", NodeId: id, Message: "registered at " + req.GetAddress()})
	s.processReports(id, req.GetWorkloads())
	s.mu.Lock()
	names := s.assignedLocked(id)
	s.mu.Unlock()
	for _, n := range names {
		s.queue.Add(n)
	}
	// A node that joins or returns may be where a pending workload fits.
	s.queuePending()
	return &persysv1.RegisterNodeResponse{
		HeartbeatIntervalMs: s.cfg.HeartbeatInterval.Milliseconds(),
		LeaseTtlSeconds:     int64(s.cfg.LeaseTTL / time.Second),
	}, nil
}

// heartbeat renews the node's lease (no etcd revision is created) and
// processes its report. An unknown node or an expired lease asks the agent
// to register again.
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
	s.mu.Unlock()
	s.processReports(id, req.GetWorkloads())
	return &persysv1.HeartbeatResponse{}, nil
}

// processReports stores a node's full report, queues every workload whose
// report changed (or vanished), and removes orphans: what the node runs
// that the scheduler does not assign to it.
func (s *Scheduler) processReports(nodeID string, reports []*persysv1.WorkloadStatus) {
	var changed []string
	type orphan struct{ name, uid string }
	var orphans []orphan

	s.mu.Lock()
	ne := s.nodes[nodeID]
	if ne == nil {
		s.mu.Unlock()
		return
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
		e := s.workloads[name]
		onNode := e != nil && (e.assignment.GetNodeId() == nodeID || e.assignment.GetPreviousNodeId() == nodeID)
		if !onNode || (st.GetUid() != "" && st.GetUid() != e.w.GetUid()) {
			orphans = append(orphans, orphan{name, st.GetUid()})
		}
	}
	for name := range ne.reports {
		if _, ok := next[name]; !ok {
			changed = append(changed, name)
		}
	}
	ne.reports = next
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
		cli, err := s.agents().client(nodeID, addr)
		if err == nil {
			_, err = cli.DeleteWorkload(ctx, &persysv1.DeleteWorkloadRequest{Name: name, Uid: uid})
		}
		if err != nil {
			s.log.Warn("remove orphan", "node", nodeID, "workload", name, "uid", uid, "err", err)
			return
		}
		s.metrics.orphansRemoved.Inc()
		s.log.Info("orphan removed", "node", nodeID, "workload", name, "uid", uid)
		s.events.add(&persysv1.Event{Type: "OrphanRemoved", Workload: name, NodeId: nodeID,
			Message: "removed a copy the scheduler does not assign to this node"})
	}()
}

// sameReport compares what matters for reconciliation.
func sameReport(a, b *persysv1.WorkloadStatus) bool {
	if a == nil || b == nil {
		return a == b
	}
	return a.GetUid() == b.GetUid() && a.GetRevision() == b.GetRevision() && a.GetState() == b.GetState() &&
		a.GetReason() == b.GetReason() && a.GetRuntimeId() == b.GetRuntimeId() && a.GetRestartCount() == b.GetRestartCount()
}

func cloneNode(n *persysv1.Node) *persysv1.Node {
	if n == nil {
		return &persysv1.Node{}
	}
	return proto.Clone(n).(*persysv1.Node)
}
