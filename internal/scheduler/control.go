package scheduler

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	persysv1 "github.com/persys-dev/compute/api/persys/v1"
	"github.com/persys-dev/compute/internal/grpcauth"
	"github.com/persys-dev/compute/internal/manifest"
	"github.com/persys-dev/compute/internal/model"
	"github.com/persys-dev/compute/internal/pki"
	"github.com/persys-dev/compute/internal/principal"
	"github.com/persys-dev/compute/internal/secrets"
	"github.com/persys-dev/compute/internal/store"
)

// Service returns the ControlService implementation; serve it with
// UnaryAuth and StreamAuth installed.
func (s *Scheduler) Service() persysv1.ControlServiceServer { return &controlService{s: s} }

type controlService struct {
	persysv1.UnimplementedControlServiceServer
	s *Scheduler
	// stop ends open WatchWorkload streams when the server shuts down; a
	// graceful stop waits for every stream, and a watch never ends alone.
	stop <-chan struct{}
}

// Which roles may call which methods: agents register and heartbeat, the
// gateway (and an admin's own tooling) reads and writes desired state.
var agentMethods = map[string]bool{
	persysv1.ControlService_RegisterNode_FullMethodName: true,
	persysv1.ControlService_Heartbeat_FullMethodName:    true,
}

// openMethods need no client certificate: a join token authenticates the
// caller instead (the scheduler's TLS verifies client certificates only
// when given, and every other method requires one here).
var openMethods = map[string]bool{
	persysv1.ControlService_JoinNode_FullMethodName: true,
}

// anyRoleMethods are open to every verified identity: each acts only on
// the caller's own identity.
var anyRoleMethods = map[string]bool{
	persysv1.ControlService_RenewCertificate_FullMethodName: true,
}

// agentReadableMethods are open to agents as well as to the gateway and
// admins: an agent needs the revoked certificates to refuse a revoked
// scheduler (or anyone else) that calls it.
var agentReadableMethods = map[string]bool{
	persysv1.ControlService_ListRevocations_FullMethodName: true,
}

// gatewayOnlyMethods serve the gateway itself (and an admin's tooling).
var gatewayOnlyMethods = map[string]bool{
	persysv1.ControlService_AuthenticateToken_FullMethodName: true,
	persysv1.ControlService_RecordAudit_FullMethodName:       true,
}

func authorizeMethod(ctx context.Context, method string) (pki.Identity, error) {
	if strings.HasPrefix(method, "/grpc.health.v1.Health/") || openMethods[method] {
		return pki.Identity{}, nil
	}
	id, err := grpcauth.PeerIdentity(ctx)
	if err != nil {
		return id, status.Error(codes.Unauthenticated, err.Error())
	}
	if agentMethods[method] {
		if id.Role != pki.RoleAgent {
			return id, status.Errorf(codes.PermissionDenied, "%s requires role agent, caller %q has role %s", method, id.CommonName, id.Role)
		}
		return id, nil
	}
	if anyRoleMethods[method] || agentReadableMethods[method] && id.Role == pki.RoleAgent {
		return id, nil
	}
	if gatewayOnlyMethods[method] && id.Role != pki.RoleGateway && id.Role != pki.RoleAdmin {
		return id, status.Errorf(codes.PermissionDenied, "%s requires role gateway or admin, caller %q has role %s", method, id.CommonName, id.Role)
	}
	if id.Role != pki.RoleGateway && id.Role != pki.RoleAdmin && id.Role != pki.RoleScheduler {
		return id, status.Errorf(codes.PermissionDenied, "%s requires role gateway or admin, caller %q has role %s", method, id.CommonName, id.Role)
	}
	return id, nil
}

// UnaryAuth authorizes every unary call by the caller's certificate role.
func UnaryAuth(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
	id, err := authorizeMethod(ctx, info.FullMethod)
	if err != nil {
		return nil, err
	}
	return handler(principal.WithIdentity(ctx, id), req)
}

// StreamAuth authorizes every streaming call.
func StreamAuth(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
	if _, err := authorizeMethod(ss.Context(), info.FullMethod); err != nil {
		return err
	}
	return handler(srv, ss)
}

// toStatus maps sentinel errors to gRPC codes, once, at the boundary.
func toStatus(err error) error {
	if err == nil {
		return nil
	}
	if _, ok := status.FromError(err); ok {
		return err
	}
	var merr *manifest.Error
	var nf *store.NotFoundError
	switch {
	case errors.As(err, &nf):
		// The object as the client named it; the log keeps the rest.
		return status.Error(codes.NotFound, nf.Error())
	case errors.Is(err, store.ErrInvalid), errors.Is(err, secrets.ErrInvalid):
		return status.Error(codes.InvalidArgument, err.Error())
	case errors.Is(err, secrets.ErrUnknownKey), errors.Is(err, secrets.ErrDecrypt):
		return status.Error(codes.FailedPrecondition, err.Error())
	case errors.As(err, &merr):
		st := status.New(codes.InvalidArgument, merr.Error())
		if d, derr := st.WithDetails(merr.BadRequest()); derr == nil {
			st = d
		}
		return st.Err()
	case errors.Is(err, store.ErrNotFound):
		return status.Error(codes.NotFound, err.Error())
	case errors.Is(err, store.ErrExists):
		return status.Error(codes.AlreadyExists, err.Error())
	case errors.Is(err, store.ErrConflict):
		return status.Error(codes.Aborted, err.Error())
	case errors.Is(err, store.ErrNodeHeld), errors.Is(err, ErrOtherCluster):
		return status.Error(codes.FailedPrecondition, err.Error())
	case errors.Is(err, context.DeadlineExceeded):
		return status.Error(codes.DeadlineExceeded, err.Error())
	case errors.Is(err, context.Canceled):
		return status.Error(codes.Canceled, err.Error())
	}
	return status.Error(codes.Internal, err.Error())
}

func (c *controlService) RegisterNode(ctx context.Context, req *persysv1.RegisterNodeRequest) (*persysv1.RegisterNodeResponse, error) {
	if err := c.s.serving(ctx); err != nil {
		return nil, err
	}
	if err := validateNodeCall(ctx, req.GetNodeId()); err != nil {
		return nil, err
	}
	if req.GetAddress() == "" {
		return nil, status.Error(codes.InvalidArgument, "address: required")
	}
	if req.GetCapabilities().GetCapacity() == nil {
		return nil, status.Error(codes.InvalidArgument, "capabilities.capacity: required")
	}
	if err := validateAllocatable(req.GetCapabilities()); err != nil {
		return nil, err
	}
	resp, err := c.s.registerNode(ctx, req)
	return resp, toStatus(err)
}

func (c *controlService) Heartbeat(ctx context.Context, req *persysv1.HeartbeatRequest) (*persysv1.HeartbeatResponse, error) {
	if err := c.s.serving(ctx); err != nil {
		return nil, err
	}
	if err := validateNodeCall(ctx, req.GetNodeId()); err != nil {
		return nil, err
	}
	if req.GetDigestOnly() {
		if len(req.GetWorkloads()) > 0 {
			return nil, status.Errorf(codes.InvalidArgument, "workloads: must be empty with digest_only (has %d)", len(req.GetWorkloads()))
		}
		if req.GetReportDigest() == 0 {
			return nil, status.Error(codes.InvalidArgument, "report_digest: required with digest_only")
		}
	}
	resp, err := c.s.heartbeat(ctx, req)
	return resp, toStatus(err)
}

// validateNodeCall checks that an agent speaks only for its own node: the
// node id must be the common name of its certificate.
func validateNodeCall(ctx context.Context, nodeID string) error {
	if nodeID == "" {
		return status.Error(codes.InvalidArgument, "node_id: required")
	}
	if cn := principal.CN(ctx); cn != "" && cn != nodeID {
		return status.Errorf(codes.PermissionDenied, "node_id %q does not match the caller's certificate %q", nodeID, cn)
	}
	return nil
}

func (c *controlService) ApplyWorkload(ctx context.Context, req *persysv1.ApplyRequest) (*persysv1.ApplyResponse, error) {
	if err := c.s.serving(ctx); err != nil {
		return nil, err
	}
	who, err := principal.Of(ctx)
	if err != nil {
		return nil, err
	}
	if err := manifest.ValidateApplyRequest(req); err != nil {
		return nil, toStatus(err)
	}
	if err := c.s.prepareSpec(ctx, who, req.GetSpec()); err != nil {
		return nil, toStatus(err)
	}
	w, result, err := c.s.applyWorkload(ctx, who, req)
	if err != nil {
		return nil, toStatus(err)
	}
	return &persysv1.ApplyResponse{Workload: c.s.viewOf(w.GetName(), false, ctx), Result: result}, nil
}

func (c *controlService) GetWorkload(ctx context.Context, req *persysv1.GetWorkloadRequest) (*persysv1.WorkloadView, error) {
	if err := c.s.serving(ctx); err != nil {
		return nil, err
	}
	v := c.s.viewOf(req.GetName(), req.GetWithEvents(), ctx)
	if v == nil {
		return nil, status.Errorf(codes.NotFound, "workload %q not found", req.GetName())
	}
	return v, nil
}

func (c *controlService) ListWorkloads(ctx context.Context, req *persysv1.ListWorkloadsRequest) (*persysv1.ListWorkloadsResponse, error) {
	if err := c.s.serving(ctx); err != nil {
		return nil, err
	}
	c.s.mu.Lock()
	names := make([]string, 0, len(c.s.workloads))
	for name, e := range c.s.workloads {
		if matchLabels(e.w.GetLabels(), req.GetLabelSelector()) {
			names = append(names, name)
		}
	}
	c.s.mu.Unlock()
	sort.Strings(names)
	out := &persysv1.ListWorkloadsResponse{}
	for _, n := range names {
		if v := c.s.viewOf(n, false, ctx); v != nil {
			out.Workloads = append(out.Workloads, v)
		}
	}
	return out, nil
}

func (c *controlService) DeleteWorkload(ctx context.Context, req *persysv1.DeleteRequest) (*persysv1.DeleteResponse, error) {
	if err := c.s.serving(ctx); err != nil {
		return nil, err
	}
	if err := c.s.deleteWorkload(ctx, req.GetName()); err != nil {
		return nil, toStatus(err)
	}
	return &persysv1.DeleteResponse{}, nil
}

func (c *controlService) RetryWorkload(ctx context.Context, req *persysv1.RetryRequest) (*persysv1.WorkloadView, error) {
	if err := c.s.serving(ctx); err != nil {
		return nil, err
	}
	c.s.mu.Lock()
	e := c.s.workloads[req.GetName()]
	c.s.mu.Unlock()
	if e == nil {
		return nil, status.Errorf(codes.NotFound, "workload %q not found", req.GetName())
	}
	c.s.resetAttempts(req.GetName())
	c.s.events.Add(model.EventRetryRequested, &persysv1.Event{Workload: req.GetName(), Message: "retry requested by " + principal.CN(ctx)})
	c.s.queue.Add(req.GetName())
	return c.s.viewOf(req.GetName(), false, ctx), nil
}

func (c *controlService) WatchWorkload(req *persysv1.GetWorkloadRequest, stream grpc.ServerStreamingServer[persysv1.WorkloadView]) error {
	ctx := stream.Context()
	if err := c.s.serving(ctx); err != nil {
		return err
	}
	ch, cancel := c.s.subscribe(req.GetName())
	defer cancel()
	var last *persysv1.WorkloadView
	for {
		v := c.s.viewOf(req.GetName(), false, nil)
		if v == nil {
			return status.Errorf(codes.NotFound, "workload %q not found", req.GetName())
		}
		if last == nil || !proto.Equal(last, v) {
			if err := stream.Send(v); err != nil {
				return err
			}
			last = v
		}
		select {
		case <-ctx.Done():
			return nil
		case <-c.stop:
			return status.Error(codes.Unavailable, "scheduler is shutting down")
		case <-ch:
		}
	}
}

func (c *controlService) ListNodes(ctx context.Context, _ *persysv1.ListNodesRequest) (*persysv1.ListNodesResponse, error) {
	if err := c.s.serving(ctx); err != nil {
		return nil, err
	}
	return &persysv1.ListNodesResponse{Nodes: c.s.nodeViews("")}, nil
}

func (c *controlService) GetNode(ctx context.Context, req *persysv1.GetNodeRequest) (*persysv1.Node, error) {
	if err := c.s.serving(ctx); err != nil {
		return nil, err
	}
	nodes := c.s.nodeViews(req.GetId())
	if len(nodes) == 0 {
		return nil, status.Errorf(codes.NotFound, "node %q not found", req.GetId())
	}
	return nodes[0], nil
}

func (c *controlService) GetClusterSummary(ctx context.Context, _ *persysv1.ClusterSummaryRequest) (*persysv1.ClusterSummary, error) {
	if err := c.s.serving(ctx); err != nil {
		return nil, err
	}
	out := &persysv1.ClusterSummary{WorkloadsByState: map[string]int32{}, Capacity: &persysv1.Resources{}, Allocated: &persysv1.Resources{},
		Leader: c.s.leaderAddrString()}
	// Totals only: no per-node views (copies of every node), so that a
	// dashboard polling a large cluster costs little and holds mu briefly.
	c.s.mu.Lock()
	for _, ne := range c.s.nodes {
		out.NodesTotal++
		if ne.alive {
			out.NodesReady++
		}
		capy := ne.node.GetCapabilities().GetCapacity()
		out.Capacity.CpuMillis += capy.GetCpuMillis()
		out.Capacity.MemoryBytes += capy.GetMemoryBytes()
		out.Capacity.DiskBytes += capy.GetDiskBytes()
	}
	for _, e := range c.s.workloads {
		if e.assignment.GetNodeId() == "" || !c.s.holdsLocked(e) {
			continue
		}
		r := e.w.GetSpec().GetResources()
		out.Allocated.CpuMillis += r.GetCpuMillis()
		out.Allocated.MemoryBytes += r.GetMemoryBytes()
		out.Allocated.DiskBytes += r.GetDiskBytes()
	}
	counts := c.s.stateCountsLocked()
	c.s.mu.Unlock()
	for st, n := range counts {
		out.WorkloadsTotal += int32(n)
		out.WorkloadsByState[strings.TrimPrefix(st.String(), "ACTUAL_STATE_")] = int32(n)
	}
	return out, nil
}

func (c *controlService) ListEvents(ctx context.Context, req *persysv1.ListEventsRequest) (*persysv1.ListEventsResponse, error) {
	if err := c.s.serving(ctx); err != nil {
		return nil, err
	}
	if req.GetLimit() < 0 || req.GetLimit() > 10000 {
		return nil, status.Error(codes.InvalidArgument, "limit: must be between 0 and 10000")
	}
	if len(req.GetType()) > 64 {
		return nil, status.Error(codes.InvalidArgument, "type: longer than 64 bytes")
	}
	evs, err := c.s.store.ListEventsFiltered(ctx, store.EventFilter{Workload: req.GetWorkload(), Type: req.GetType()}, int(req.GetLimit()))
	if err != nil {
		return nil, toStatus(err)
	}
	return &persysv1.ListEventsResponse{Events: evs}, nil
}

// applyWorkload creates the workload or, when its spec or labels changed,
// writes a new revision; an identical apply changes nothing.
func (s *Scheduler) applyWorkload(ctx context.Context, who principal.Principal, req *persysv1.ApplyRequest) (*persysv1.Workload, string, error) {
	name := req.GetName()
	if err := s.secrets.EnsureGenerated(ctx, who, name, req.GetSpec()); err != nil {
		return nil, "", err
	}
	now := timestamppb.New(s.cfg.Now())
	// create writes the workload if its key is absent (the transaction
	// compares that), so it needs no read first: ErrExists sends the
	// caller to the read-modify-write path.
	create := func() (*persysv1.Workload, error) {
		w := &persysv1.Workload{Name: name, Uid: newUID(), Labels: req.GetLabels(), Spec: req.GetSpec(),
			Revision: 1, CreatedAt: now, UpdatedAt: now, AppliedBy: who.Name, AppliedRole: string(who.Role)}
		newRev, err := s.createWorkload(ctx, w)
		if err != nil {
			return nil, err
		}
		s.cacheWorkload(w, newRev)
		s.log.Info("workload created", "workload", name, "revision", 1, "by", principal.CN(ctx))
		s.events.Add(model.EventCreated, &persysv1.Event{Workload: name, Revision: 1, Message: "created by " + principal.CN(ctx)})
		return w, nil
	}
	s.mu.Lock()
	_, cached := s.workloads[name]
	s.mu.Unlock()
	if !cached {
		// Most likely new: skip the read.
		w, err := create()
		if err == nil {
			return w, "created", nil
		}
		if !errors.Is(err, store.ErrExists) {
			return nil, "", err
		}
	}
	for attempt := 0; attempt < 5; attempt++ {
		cur, rev, err := s.store.GetWorkload(ctx, name)
		switch {
		case errors.Is(err, store.ErrNotFound):
			w, err := create()
			if errors.Is(err, store.ErrExists) {
				continue
			}
			if err != nil {
				return nil, "", err
			}
			return w, "created", nil
		case err != nil:
			return nil, "", err
		}
		if cur.GetDeleting() {
			return nil, "", status.Errorf(codes.FailedPrecondition, "workload %q is being deleted; apply again once it is gone", name)
		}
		if proto.Equal(cur.GetSpec(), req.GetSpec()) && equalLabels(cur.GetLabels(), req.GetLabels()) {
			return cur, "unchanged", nil
		}
		next := proto.Clone(cur).(*persysv1.Workload)
		next.Labels, next.UpdatedAt = req.GetLabels(), now
		if !proto.Equal(cur.GetSpec(), req.GetSpec()) {
			next.Spec = req.GetSpec()
			next.Revision = cur.GetRevision() + 1
			next.AppliedBy, next.AppliedRole = who.Name, string(who.Role)
		}
		newRev, err := s.store.UpdateWorkload(ctx, next, rev)
		if errors.Is(err, store.ErrConflict) {
			continue
		}
		if err != nil {
			return nil, "", err
		}
		s.cacheWorkload(next, newRev)
		s.log.Info("workload updated", "workload", name, "revision", next.GetRevision(), "by", principal.CN(ctx))
		s.events.Add(model.EventUpdated, &persysv1.Event{Workload: name, Revision: next.GetRevision(),
			Message: fmt.Sprintf("revision %d by %s", next.GetRevision(), principal.CN(ctx))})
		return next, "updated", nil
	}
	return nil, "", fmt.Errorf("apply %q: %w: too many concurrent changes", name, store.ErrConflict)
}

// deleteWorkload marks the workload for deletion; the reconciler removes it
// from its node and then deletes its keys.
func (s *Scheduler) deleteWorkload(ctx context.Context, name string) error {
	for attempt := 0; attempt < 5; attempt++ {
		cur, rev, err := s.store.GetWorkload(ctx, name)
		if err != nil {
			return err
		}
		if cur.GetDeleting() {
			return nil
		}
		next := proto.Clone(cur).(*persysv1.Workload)
		next.Deleting = true
		next.UpdatedAt = timestamppb.New(s.cfg.Now())
		newRev, err := s.store.UpdateWorkload(ctx, next, rev)
		if errors.Is(err, store.ErrConflict) {
			continue
		}
		if err != nil {
			return err
		}
		s.cacheWorkload(next, newRev)
		s.log.Info("workload deleting", "workload", name, "by", principal.CN(ctx))
		s.events.Add(model.EventDeleteRequested, &persysv1.Event{Workload: name, Message: "delete requested by " + principal.CN(ctx)})
		return nil
	}
	return fmt.Errorf("delete %q: %w: too many concurrent changes", name, store.ErrConflict)
}

// cacheWorkload records our own write at once (the watch echo is ignored
// as not newer) and queues the workload, so nothing waits for the watch.
func (s *Scheduler) cacheWorkload(w *persysv1.Workload, rev int64) {
	s.mu.Lock()
	if s.buriedLocked(w.GetName(), rev) {
		// The reconciler deleted it already (it saw our write through the
		// watch first): do not bring it back.
		s.mu.Unlock()
		return
	}
	e := s.workloads[w.GetName()]
	if e != nil && e.assignment != nil {
		// Only an assigned workload counts in the placement snapshot.
		s.invalidateLocked()
	}
	if e == nil {
		e = &workloadEntry{}
		s.putWorkloadLocked(w.GetName(), e)
	}
	if rev <= e.rev {
		// The watch brought this write first and queued it.
		s.mu.Unlock()
		return
	}
	if e.w != nil && e.w.GetUid() != w.GetUid() {
		s.resetEntryLocked(w.GetName(), e)
	}
	e.w, e.rev = w, rev
	s.notifyLocked(w.GetName())
	s.mu.Unlock()
	s.queue.Add(w.GetName())
}

// viewOf assembles a workload's view from the cache; events are read from
// etcd only when asked for.
func (s *Scheduler) viewOf(name string, withEvents bool, ctx context.Context) *persysv1.WorkloadView {
	s.mu.Lock()
	e := s.workloads[name]
	if e == nil {
		s.mu.Unlock()
		return nil
	}
	v := &persysv1.WorkloadView{Workload: e.w, Status: e.status, Assignment: e.assignment}
	if v.Status == nil {
		v.Status = &persysv1.WorkloadStatus{Name: name, Uid: e.w.GetUid(), State: persysv1.ActualState_ACTUAL_STATE_PENDING}
	}
	if e.assignment == nil && e.pending != nil {
		v.Assignment = &persysv1.Assignment{Name: name, Uid: e.w.GetUid(), Decision: e.pending}
	}
	s.mu.Unlock()
	if withEvents && ctx != nil {
		if evs, err := s.store.ListEvents(ctx, name, 20); err == nil {
			v.Events = evs
		}
	}
	return v
}

// nodeViews returns nodes (or one node) with live usage and allocation.
func (s *Scheduler) nodeViews(only string) []*persysv1.Node {
	s.mu.Lock()
	defer s.mu.Unlock()
	alloc := map[string]*persysv1.Resources{}
	for _, e := range s.workloads {
		if id := e.assignment.GetNodeId(); id != "" && (only == "" || id == only) && s.holdsLocked(e) {
			alloc[id] = addResources(alloc[id], e.w.GetSpec().GetResources())
		}
	}
	poolAlloc := s.poolAllocationsLocked(only)
	var out []*persysv1.Node
	for id, ne := range s.nodes {
		if only != "" && id != only {
			continue
		}
		n := cloneNode(ne.node)
		n.State = persysv1.NodeState_NODE_STATE_NOT_READY
		if ne.alive {
			n.State = persysv1.NodeState_NODE_STATE_READY
		}
		n.Usage = ne.usage
		n.Allocated = alloc[id]
		if n.Allocated == nil {
			n.Allocated = &persysv1.Resources{}
		}
		for _, p := range n.GetCapabilities().GetStoragePools() {
			p.AllocatedBytes = poolAlloc[id][p.GetName()]
		}
		if !ne.lastHeartbeat.IsZero() {
			n.LastHeartbeat = timestamppb.New(ne.lastHeartbeat)
		}
		out = append(out, n)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].GetId() < out[j].GetId() })
	return out
}

func addResources(a, b *persysv1.Resources) *persysv1.Resources {
	return &persysv1.Resources{CpuMillis: a.GetCpuMillis() + b.GetCpuMillis(),
		MemoryBytes: a.GetMemoryBytes() + b.GetMemoryBytes(), DiskBytes: a.GetDiskBytes() + b.GetDiskBytes()}
}

func matchLabels(labels, selector map[string]string) bool {
	for k, v := range selector {
		if labels[k] != v {
			return false
		}
	}
	return true
}

func equalLabels(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if bv, ok := b[k]; !ok || bv != v {
			return false
		}
	}
	return true
}

func (c *controlService) CordonNode(ctx context.Context, req *persysv1.CordonRequest) (*persysv1.Node, error) {
	if err := c.s.serving(ctx); err != nil {
		return nil, err
	}
	n, err := c.s.setCordon(ctx, req.GetId(), true, false)
	return n, toStatus(err)
}

func (c *controlService) UncordonNode(ctx context.Context, req *persysv1.CordonRequest) (*persysv1.Node, error) {
	if err := c.s.serving(ctx); err != nil {
		return nil, err
	}
	n, err := c.s.setCordon(ctx, req.GetId(), false, false)
	return n, toStatus(err)
}

func (c *controlService) DrainNode(ctx context.Context, req *persysv1.DrainRequest) (*persysv1.DrainResponse, error) {
	if err := c.s.serving(ctx); err != nil {
		return nil, err
	}
	if req.GetTimeoutSeconds() < 0 || req.GetTimeoutSeconds() > 3600 {
		return nil, status.Error(codes.InvalidArgument, "timeout_seconds: must be between 0 and 3600")
	}
	timeout := time.Duration(req.GetTimeoutSeconds()) * time.Second
	if timeout == 0 {
		timeout = 2 * time.Minute
	}
	resp, err := c.s.drain(ctx, req.GetId(), timeout)
	return resp, toStatus(err)
}

func (c *controlService) GetLeader(ctx context.Context, _ *persysv1.GetLeaderRequest) (*persysv1.LeaderInfo, error) {
	info := &persysv1.LeaderInfo{Address: c.s.leaderAddrString(), IsLeader: c.s.leading.Load()}
	if c.s.cfg.Election == nil {
		info.IsLeader = true
	}
	info.Id = info.Address
	return info, nil
}

// validateAllocatable refuses an allocatable share that is negative or
// larger than the capacity it is a share of.
func validateAllocatable(caps *persysv1.NodeCapabilities) error {
	a, c := caps.GetAllocatable(), caps.GetCapacity()
	if a == nil {
		return nil
	}
	for _, f := range []struct {
		name       string
		got, limit int64
	}{
		{"cpu_millis", a.GetCpuMillis(), c.GetCpuMillis()},
		{"memory_bytes", a.GetMemoryBytes(), c.GetMemoryBytes()},
		{"disk_bytes", a.GetDiskBytes(), c.GetDiskBytes()},
	} {
		if f.got < 0 || f.got > f.limit {
			return status.Errorf(codes.InvalidArgument, "capabilities.allocatable.%s: %d must be between 0 and the capacity %d", f.name, f.got, f.limit)
		}
	}
	return nil
}
