package scheduler

import (
	"context"
	"errors"
	"fmt"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"

	persysv1 "github.com/persys-dev/compute/api/persys/v1"
	"github.com/persys-dev/compute/api/persys/v1/persysv1grpc"
	"github.com/persys-dev/compute/internal/model"
	"github.com/persys-dev/compute/internal/scheduler/statecache"
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
	ttl := s.leaseTTLFor(s.cache.NodeCount() + 1)
	leaseID, err := s.store.GrantNodeLeaseAs(ctx, id, req.GetInstanceId(), ttl)
	if errors.Is(err, store.ErrNodeHeld) {
		s.log.Warn("registration refused: node id held by another agent instance", "node", id, "instance", req.GetInstanceId())
		return nil, fmt.Errorf("node_id %q is registered and alive under another agent instance, not %q: stop that agent or give this one another --node-id: %w",
			id, req.GetInstanceId(), err)
	}
	if err != nil {
		return nil, fmt.Errorf("grant lease for node %s: %w", id, err)
	}
	now := s.cfg.Now()
	node := s.cache.RegisterNode(&persysv1.Node{
		Id:           id,
		Address:      req.GetAddress(),
		Capabilities: req.GetCapabilities(),
		State:        persysv1.NodeState_NODE_STATE_READY,
		RegisteredAt: timestamppb.New(now),
		LeaseId:      leaseID,
	}, now)

	rev, err := s.store.PutNode(ctx, node)
	if err != nil {
		return nil, fmt.Errorf("store node %s: %w", id, err)
	}
	s.cache.NodeWritten(id, rev)
	s.cache.LeaseGranted(id, leaseID, ttl)
	s.callLimits.declare(id, req.GetMaxConcurrentCalls())
	// The connection pool redials by itself when the address changed; an
	// unchanged one keeps serving calls that are in flight.
	s.log.Info("node registered", "node", id, "address", req.GetAddress(), "workloads", len(req.GetWorkloads()))
	s.events.Add(model.EventNodeRegistered, &persysv1.Event{NodeId: id, Message: "registered at " + req.GetAddress()})
	// The registration's list comes without a digest: the first heartbeat
	// after it is full.
	s.processReports(id, req.GetWorkloads(), 0)
	for _, n := range s.cache.AssignedTo(id) {
		s.queue.Add(n)
	}
	// A node that joins or returns may be where a pending workload fits.
	s.queuePending()
	interval := s.heartbeatInterval(s.cache.NodeCount(), ttl)
	return &persysv1.RegisterNodeResponse{
		HeartbeatIntervalMs: interval.Milliseconds(),
		LeaseTtlSeconds:     int64(ttl / time.Second),
		ClusterId:           cluster,
	}, nil
}

// heartbeat renews the node's lease (no etcd revision is created) and
// processes its report. An unknown node or an expired lease asks the agent
// to register again. A report that is only the digest of the node's last
// full list is served from the list held, or, without it, answered with
// resend_full; a change to it (delta) is applied to the list held, or,
// when that cannot give the agent's list, answered with send_full_list.
func (s *Scheduler) heartbeat(ctx context.Context, req *persysv1.HeartbeatRequest) (*persysv1.HeartbeatResponse, error) {
	id := req.GetNodeId()
	if err := checkRepairs(req.GetRepairs()); err != nil {
		return nil, err
	}
	leaseID, ttl := s.cache.NodeLeaseTTL(id)
	if ttl == 0 {
		// Granted by an earlier leader: at least the configured TTL.
		ttl = s.cfg.LeaseTTL
	}
	if leaseID == 0 {
		return &persysv1.HeartbeatResponse{Reregister: true}, nil
	}
	if err := s.store.KeepAliveNode(ctx, leaseID); err != nil {
		if errors.Is(err, store.ErrLeaseNotFound) {
			return &persysv1.HeartbeatResponse{Reregister: true}, nil
		}
		return nil, fmt.Errorf("renew lease of node %s: %w", id, err)
	}
	s.metrics.heartbeats.Inc()
	for _, r := range req.GetRepairs() {
		s.events.Add(model.EventRepaired, &persysv1.Event{Workload: r.GetWorkload(), NodeId: id,
			Message: fmt.Sprintf("%s: %s", r.GetRuntime(), r.GetAction()) + detailSuffix(r.GetDetail())})
	}
	portsChanged, nodes := s.cache.RecordHeartbeat(id, statecache.Heartbeat{Usage: req.GetUsage(), At: s.cfg.Now(),
		Full: !req.GetDigestOnly(), UsedPorts: req.GetUsedHostPorts()})
	intervalMs := s.heartbeatInterval(nodes, ttl).Milliseconds()
	if want := s.leaseTTLFor(nodes); leaseOutgrown(ttl, want) {
		// The cluster grew past what the node's lease was granted for:
		// its heartbeats may spread out only once the lease is longer.
		s.extendLease(id, leaseID, want)
	}
	if portsChanged {
		// A port given up may be what a pending workload waits for.
		s.queuePending()
	}
	if req.GetDelta() {
		if !s.processDelta(id, req.GetWorkloads(), req.GetRemoved(), req.GetReportDigest()) {
			s.metrics.deltas.WithLabelValues("send_full_list").Inc()
			return &persysv1.HeartbeatResponse{SendFullList: true, HeartbeatIntervalMs: intervalMs}, nil
		}
		s.metrics.deltas.WithLabelValues("applied").Inc()
		return &persysv1.HeartbeatResponse{DigestKept: true, HeartbeatIntervalMs: intervalMs}, nil
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

// Bounds of the repairs one heartbeat tells (an agent keeps at most 256).
const (
	maxRepairsPerHeartbeat = 256
	maxRepairField         = 1024
)

// checkRepairs refuses a heartbeat whose repairs exceed their bounds,
// naming the field.
func checkRepairs(rs []*persysv1.AgentRepair) error {
	if len(rs) > maxRepairsPerHeartbeat {
		return status.Errorf(codes.InvalidArgument, "repairs: %d, at most %d per heartbeat", len(rs), maxRepairsPerHeartbeat)
	}
	for i, r := range rs {
		for field, v := range map[string]string{"workload": r.GetWorkload(), "runtime": r.GetRuntime(), "action": r.GetAction(), "detail": r.GetDetail()} {
			if len(v) > maxRepairField {
				return status.Errorf(codes.InvalidArgument, "repairs[%d].%s: %d bytes, at most %d", i, field, len(v), maxRepairField)
			}
		}
	}
	return nil
}

func detailSuffix(d string) string {
	if d == "" {
		return ""
	}
	return " (" + d + ")"
}

// heartbeatInterval is the interval an agent whose lease has ttl is told
// in a cluster of nodes (see Config.MaxHeartbeatRate).
func (s *Scheduler) heartbeatInterval(nodes int, ttl time.Duration) time.Duration {
	return HeartbeatInterval(nodes, s.cfg.HeartbeatInterval, ttl, s.cfg.MaxHeartbeatRate)
}

// leaseTTLFor is the lease TTL a node gets in a cluster of nodes (see
// LeaseTTLFor).
func (s *Scheduler) leaseTTLFor(nodes int) time.Duration {
	return LeaseTTLFor(nodes, s.cfg.LeaseTTL, s.cfg.MaxHeartbeatRate)
}

// LeaseTTLFor is the node lease TTL of a cluster of nodes: ttl, or, once
// heartbeats spread to about rate a second need an interval longer than
// a third of it, three such intervals, so that a node still survives two
// lost heartbeats in a row (at 1,000 a second: 30 s at 10,000 nodes).
// Without it the interval stopped at a third of ttl, and 10,000 nodes
// sent 3,000 heartbeats a second to a scheduler that could not serve
// them all on a small machine: every lease expired.
func LeaseTTLFor(nodes int, ttl time.Duration, rate float64) time.Duration {
	spread := time.Duration(float64(nodes) / rate * float64(time.Second))
	return max(ttl, (3 * spread).Round(time.Second))
}

// HeartbeatInterval spreads nodes' heartbeats so that together they send
// about rate a second: never less than base, and never more than a third
// of ttl (unless base is).
func HeartbeatInterval(nodes int, base, ttl time.Duration, rate float64) time.Duration {
	d := time.Duration(float64(nodes) / rate * float64(time.Second))
	d = min(d, ttl/3)
	return max(d, base).Truncate(time.Millisecond)
}

// processReports stores a node's full report with the agent's digest of it
// (0: none), queues every workload whose report changed (or vanished), and
// removes orphans: what the node runs that the scheduler does not assign
// to it. It reports false when the node is not known.
func (s *Scheduler) processReports(nodeID string, reports []*persysv1.WorkloadStatus, digest uint64) bool {
	r := s.cache.StoreReports(nodeID, reports, digest)
	if !r.Known {
		return false
	}
	for _, n := range r.Changed {
		s.queue.Add(n)
	}
	for _, o := range r.Orphans {
		s.removeOrphan(nodeID, o.Name, o.UID)
	}
	return true
}

// processDelta applies a heartbeat's change to the node's list (see
// statecache.Cache.ApplyDelta) and goes on as processReports does. It
// reports false when the agent must send its full list.
func (s *Scheduler) processDelta(nodeID string, changed []*persysv1.WorkloadStatus, removed []string, digest uint64) bool {
	r, ok := s.cache.ApplyDelta(nodeID, changed, removed, digest)
	if !ok {
		return false
	}
	for _, n := range r.Changed {
		s.queue.Add(n)
	}
	for _, o := range r.Orphans {
		s.removeOrphan(nodeID, o.Name, o.UID)
	}
	return true
}

// processDigest serves a heartbeat whose list is the node's last full one,
// sent as its digest alone (see statecache.Cache.DigestOrphans), removing
// the orphans in it. It reports false when the agent must send the list.
func (s *Scheduler) processDigest(nodeID string, digest uint64) bool {
	orphans, ok := s.cache.DigestOrphans(nodeID, digest)
	if !ok {
		return false
	}
	for _, o := range orphans {
		s.removeOrphan(nodeID, o.Name, o.UID)
	}
	return true
}

// removeOrphan asks a node to delete a workload it should not run, once at
// a time per node and name.
func (s *Scheduler) removeOrphan(nodeID, name, uid string) {
	key := nodeID + "/" + name + "/" + uid
	s.goOnce(s.orphanInflight, key, func(runCtx context.Context) {
		err := s.agents().call(runCtx, nodeID, s.cfg.ApplyTimeout, func(cctx context.Context, cli persysv1grpc.AgentServiceClient) error {
			_, err := cli.DeleteWorkload(cctx, &persysv1.DeleteWorkloadRequest{Name: name, Uid: uid})
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
	})
}

// goOnce runs fn in the background with the term's context, unless a run
// under key in inflight (guarded by runMu) is under way or the scheduler
// does not lead; it reports whether fn started.
func (s *Scheduler) goOnce(inflight map[string]bool, key string, fn func(runCtx context.Context)) bool {
	s.runMu.Lock()
	runCtx := s.runCtx
	if inflight[key] || runCtx == nil || runCtx.Err() != nil {
		s.runMu.Unlock()
		return false
	}
	inflight[key] = true
	s.background.Add(1)
	s.runMu.Unlock()
	go func() {
		defer s.background.Done()
		defer func() {
			s.runMu.Lock()
			delete(inflight, key)
			s.runMu.Unlock()
		}()
		fn(runCtx)
	}()
	return true
}
