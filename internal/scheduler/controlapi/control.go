package controlapi

import (
	"context"
	"errors"
	"strings"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	persysv1 "github.com/persys-dev/compute/api/persys/v1"
	"github.com/persys-dev/compute/api/persys/v1/persysv1grpc"
	"github.com/persys-dev/compute/internal/grpcauth"
	"github.com/persys-dev/compute/internal/identity"
	"github.com/persys-dev/compute/internal/manifest"
	"github.com/persys-dev/compute/internal/model"
	"github.com/persys-dev/compute/internal/nodechannel"
	"github.com/persys-dev/compute/internal/pki"
	"github.com/persys-dev/compute/internal/principal"
	"github.com/persys-dev/compute/internal/secrets"
	"github.com/persys-dev/compute/internal/secretsvc"
	"github.com/persys-dev/compute/internal/store"
)

type controlService struct {
	persysv1grpc.UnimplementedControlServiceServer
	s   Loop
	id  *identity.Service
	sec *secretsvc.Service
	// stop ends open WatchWorkload streams when the server shuts down; a
	// graceful stop waits for every stream, and a watch never ends alone.
	stop <-chan struct{}
}

// Which roles may call which methods: agents register and heartbeat, the
// gateway (and an admin's own tooling) reads and writes desired state.
var agentMethods = map[string]bool{
	persysv1grpc.ControlService_RegisterNode_FullMethodName: true,
	persysv1grpc.ControlService_Heartbeat_FullMethodName:    true,
	persysv1grpc.NodeChannelService_Connect_FullMethodName:  true,
}

// IsAgentMethod reports whether method is one only agents call.
func IsAgentMethod(method string) bool { return agentMethods[method] }

// openMethods need no client certificate: a join token authenticates the
// caller instead (the scheduler's TLS verifies client certificates only
// when given, and every other method requires one here).
var openMethods = map[string]bool{
	persysv1grpc.ControlService_JoinNode_FullMethodName: true,
}

// anyRoleMethods are open to every verified identity: each acts only on
// the caller's own identity.
var anyRoleMethods = map[string]bool{
	persysv1grpc.ControlService_RenewCertificate_FullMethodName: true,
}

// agentReadableMethods are open to agents as well as to the gateway and
// admins: an agent needs the revoked certificates to refuse a revoked
// scheduler (or anyone else) that calls it.
var agentReadableMethods = map[string]bool{
	persysv1grpc.ControlService_ListRevocations_FullMethodName: true,
}

// gatewayOnlyMethods serve the gateway itself (and an admin's tooling).
var gatewayOnlyMethods = map[string]bool{
	persysv1grpc.ControlService_AuthenticateToken_FullMethodName: true,
	persysv1grpc.ControlService_RecordAudit_FullMethodName:       true,
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
	case errors.Is(err, store.ErrNodeHeld), errors.Is(err, model.ErrOtherCluster):
		return status.Error(codes.FailedPrecondition, err.Error())
	case store.Unavailable(err):
		// etcd lost its leader under the write: retry, do not give up.
		return status.Error(codes.Unavailable, err.Error())
	case errors.Is(err, context.DeadlineExceeded):
		return status.Error(codes.DeadlineExceeded, err.Error())
	case errors.Is(err, context.Canceled):
		return status.Error(codes.Canceled, err.Error())
	}
	return status.Error(codes.Internal, err.Error())
}

// RegisterNode serves agents of earlier releases, which register with
// this unary call; agents now register in their control stream's hello.
func (c *controlService) RegisterNode(ctx context.Context, req *persysv1.RegisterNodeRequest) (*persysv1.RegisterNodeResponse, error) {
	return RegisterNode(ctx, c.s, req)
}

// RegisterNode is the one path of a node's registration, whether it came
// as a unary ControlService call or in the hello of the node's control
// stream: it refuses a follower's (naming the leader), checks the
// request, field by field, and hands it to the loop.
func RegisterNode(ctx context.Context, s Loop, req *persysv1.RegisterNodeRequest) (*persysv1.RegisterNodeResponse, error) {
	if err := s.Serving(ctx); err != nil {
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
	if n := req.GetMaxConcurrentCalls(); n > nodechannel.MaxConcurrentCalls {
		return nil, status.Errorf(codes.InvalidArgument, "max_concurrent_calls: %d is above %d (0: the scheduler's bound)", n, nodechannel.MaxConcurrentCalls)
	}
	resp, err := s.RegisterNode(ctx, req)
	return resp, toStatus(err)
}

func (c *controlService) Heartbeat(ctx context.Context, req *persysv1.HeartbeatRequest) (*persysv1.HeartbeatResponse, error) {
	return Heartbeat(ctx, c.s, req)
}

// maxRemoved bounds the names one delta heartbeat removes.
const maxRemoved = 10000

// Heartbeat is the one path of a node's heartbeat, whether it came as a
// unary ControlService call or on the node's control stream: it checks the
// request, field by field, and hands it to the loop.
func Heartbeat(ctx context.Context, s Loop, req *persysv1.HeartbeatRequest) (*persysv1.HeartbeatResponse, error) {
	if err := s.Serving(ctx); err != nil {
		return nil, err
	}
	if err := validateNodeCall(ctx, req.GetNodeId()); err != nil {
		return nil, err
	}
	if err := validateHeartbeat(req); err != nil {
		return nil, err
	}
	resp, err := s.Heartbeat(ctx, req)
	return resp, toStatus(err)
}

// validateHeartbeat checks how a heartbeat's list is told: whole, as its
// digest alone, or as a change.
func validateHeartbeat(req *persysv1.HeartbeatRequest) error {
	if req.GetDigestOnly() {
		if len(req.GetWorkloads()) > 0 {
			return status.Errorf(codes.InvalidArgument, "workloads: must be empty with digest_only (has %d)", len(req.GetWorkloads()))
		}
		if req.GetReportDigest() == 0 {
			return status.Error(codes.InvalidArgument, "report_digest: required with digest_only")
		}
		if req.GetDelta() {
			return status.Error(codes.InvalidArgument, "delta: not with digest_only")
		}
	}
	if req.GetDelta() && req.GetReportDigest() == 0 {
		return status.Error(codes.InvalidArgument, "report_digest: required with delta")
	}
	if n := len(req.GetRemoved()); n > 0 {
		if !req.GetDelta() {
			return status.Errorf(codes.InvalidArgument, "removed: only with delta (has %d)", n)
		}
		if n > maxRemoved {
			return status.Errorf(codes.InvalidArgument, "removed: %d names, at most %d", n, maxRemoved)
		}
	}
	return nil
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
	if err := c.s.Serving(ctx); err != nil {
		return nil, err
	}
	who, err := principal.Of(ctx)
	if err != nil {
		return nil, err
	}
	if err := manifest.ValidateApplyRequest(req); err != nil {
		return nil, toStatus(err)
	}
	if err := c.s.PrepareSpec(ctx, who, req.GetSpec()); err != nil {
		return nil, toStatus(err)
	}
	w, result, err := c.s.ApplyWorkload(ctx, who, req)
	if err != nil {
		return nil, toStatus(err)
	}
	return &persysv1.ApplyResponse{Workload: c.s.WorkloadView(w.GetName(), false, ctx), Result: result}, nil
}

func (c *controlService) GetWorkload(ctx context.Context, req *persysv1.GetWorkloadRequest) (*persysv1.WorkloadView, error) {
	if err := c.s.Serving(ctx); err != nil {
		return nil, err
	}
	v := c.s.WorkloadView(req.GetName(), req.GetWithEvents(), ctx)
	if v == nil {
		return nil, status.Errorf(codes.NotFound, "workload %q not found", req.GetName())
	}
	return v, nil
}

func (c *controlService) ListWorkloads(ctx context.Context, req *persysv1.ListWorkloadsRequest) (*persysv1.ListWorkloadsResponse, error) {
	if err := c.s.Serving(ctx); err != nil {
		return nil, err
	}
	names := c.s.WorkloadNames(req.GetLabelSelector())
	out := &persysv1.ListWorkloadsResponse{}
	for _, n := range names {
		if v := c.s.WorkloadView(n, false, ctx); v != nil {
			out.Workloads = append(out.Workloads, v)
		}
	}
	return out, nil
}

func (c *controlService) DeleteWorkload(ctx context.Context, req *persysv1.DeleteRequest) (*persysv1.DeleteResponse, error) {
	if err := c.s.Serving(ctx); err != nil {
		return nil, err
	}
	if err := c.s.DeleteWorkload(ctx, req.GetName()); err != nil {
		return nil, toStatus(err)
	}
	return &persysv1.DeleteResponse{}, nil
}

func (c *controlService) RetryWorkload(ctx context.Context, req *persysv1.RetryRequest) (*persysv1.WorkloadView, error) {
	if err := c.s.Serving(ctx); err != nil {
		return nil, err
	}
	v, err := c.s.RetryWorkload(ctx, req.GetName())
	return v, toStatus(err)
}

func (c *controlService) WatchWorkload(req *persysv1.GetWorkloadRequest, stream grpc.ServerStreamingServer[persysv1.WorkloadView]) error {
	ctx := stream.Context()
	if err := c.s.Serving(ctx); err != nil {
		return err
	}
	ch, cancel := c.s.Subscribe(req.GetName())
	defer cancel()
	var last *persysv1.WorkloadView
	for {
		v := c.s.WorkloadView(req.GetName(), false, nil)
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
			// A status, not a clean end: the caller reads a clean end as
			// the workload deleted.
			return status.FromContextError(ctx.Err()).Err()
		case <-c.stop:
			return status.Error(codes.Unavailable, "scheduler is shutting down")
		case <-ch:
		}
	}
}

func (c *controlService) ListNodes(ctx context.Context, _ *persysv1.ListNodesRequest) (*persysv1.ListNodesResponse, error) {
	if err := c.s.Serving(ctx); err != nil {
		return nil, err
	}
	return &persysv1.ListNodesResponse{Nodes: c.s.NodeViews("")}, nil
}

func (c *controlService) GetNode(ctx context.Context, req *persysv1.GetNodeRequest) (*persysv1.Node, error) {
	if err := c.s.Serving(ctx); err != nil {
		return nil, err
	}
	nodes := c.s.NodeViews(req.GetId())
	if len(nodes) == 0 {
		return nil, status.Errorf(codes.NotFound, "node %q not found", req.GetId())
	}
	return nodes[0], nil
}

func (c *controlService) GetClusterSummary(ctx context.Context, _ *persysv1.ClusterSummaryRequest) (*persysv1.ClusterSummary, error) {
	if err := c.s.Serving(ctx); err != nil {
		return nil, err
	}
	return c.s.ClusterSummary(), nil
}

func (c *controlService) ListEvents(ctx context.Context, req *persysv1.ListEventsRequest) (*persysv1.ListEventsResponse, error) {
	if err := c.s.Serving(ctx); err != nil {
		return nil, err
	}
	if req.GetLimit() < 0 || req.GetLimit() > 10000 {
		return nil, status.Error(codes.InvalidArgument, "limit: must be between 0 and 10000")
	}
	if len(req.GetType()) > 64 {
		return nil, status.Error(codes.InvalidArgument, "type: longer than 64 bytes")
	}
	evs, err := c.s.ListEvents(ctx, store.EventFilter{Workload: req.GetWorkload(), Type: req.GetType()}, int(req.GetLimit()))
	if err != nil {
		return nil, toStatus(err)
	}
	return &persysv1.ListEventsResponse{Events: evs}, nil
}

func (c *controlService) CordonNode(ctx context.Context, req *persysv1.CordonRequest) (*persysv1.Node, error) {
	if err := c.s.Serving(ctx); err != nil {
		return nil, err
	}
	n, err := c.s.SetCordon(ctx, req.GetId(), true)
	return n, toStatus(err)
}

func (c *controlService) UncordonNode(ctx context.Context, req *persysv1.CordonRequest) (*persysv1.Node, error) {
	if err := c.s.Serving(ctx); err != nil {
		return nil, err
	}
	n, err := c.s.SetCordon(ctx, req.GetId(), false)
	return n, toStatus(err)
}

func (c *controlService) DrainNode(ctx context.Context, req *persysv1.DrainRequest) (*persysv1.DrainResponse, error) {
	if err := c.s.Serving(ctx); err != nil {
		return nil, err
	}
	if req.GetTimeoutSeconds() < 0 || req.GetTimeoutSeconds() > 3600 {
		return nil, status.Error(codes.InvalidArgument, "timeout_seconds: must be between 0 and 3600")
	}
	timeout := time.Duration(req.GetTimeoutSeconds()) * time.Second
	if timeout == 0 {
		timeout = 2 * time.Minute
	}
	resp, err := c.s.Drain(ctx, req.GetId(), timeout)
	return resp, toStatus(err)
}

func (c *controlService) GetLeader(ctx context.Context, _ *persysv1.GetLeaderRequest) (*persysv1.LeaderInfo, error) {
	return c.s.Leader(), nil
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
