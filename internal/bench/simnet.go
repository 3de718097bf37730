package bench

import (
	"context"
	"fmt"
	"hash/fnv"
	"strings"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	persysv1 "github.com/persys-dev/compute/api/persys/v1"
	"github.com/persys-dev/compute/api/persys/v1/persysv1grpc"
	"github.com/persys-dev/compute/internal/grpcauth"
	"github.com/persys-dev/compute/internal/pki"
)

// The shared transport of the hollow cluster. Real agents each hold an
// mTLS connection to the scheduler and serve their own mTLS listener: five
// descriptors and two handshakes per node, which caps one process at a few
// thousand nodes and spends the CPU on TLS instead of the scheduler. With
// the shared transport the hollow agents send their calls over a few
// plaintext loopback connections, each call tagged with the caller's
// identity, and one listener serves every hollow agent's AgentService,
// dispatching by the node id the scheduler tags its calls with. The
// scheduler code and the agent code are the real ones; only the transport
// and the source of the caller's identity differ (grpcauth.AssertIdentity).
// This switch exists in this package only: no daemon has it.
const (
	// simIdentityKey carries "role:name" of the caller.
	simIdentityKey = "x-persys-sim-identity"
	// simNodeKey names the hollow node a scheduler call is meant for.
	simNodeKey = "x-persys-sim-node"
	// sharedConns is the number of connections each direction shares.
	sharedConns = 8
	// windowBytes is the HTTP/2 flow-control window of shared connections,
	// which carry thousands of streams each.
	windowBytes = 4 << 20
)

// taggedConn sends every call over a shared connection with fixed metadata.
type taggedConn struct {
	cc grpc.ClientConnInterface
	md []string
	// applies, when set, times ApplyWorkload calls.
	applies *durSamples
}

func (t taggedConn) Invoke(ctx context.Context, method string, args, reply any, opts ...grpc.CallOption) error {
	if t.applies == nil || method != persysv1grpc.AgentService_ApplyWorkload_FullMethodName {
		return t.cc.Invoke(metadata.AppendToOutgoingContext(ctx, t.md...), method, args, reply, opts...)
	}
	start := time.Now()
	err := t.cc.Invoke(metadata.AppendToOutgoingContext(ctx, t.md...), method, args, reply, opts...)
	t.applies.add(time.Since(start))
	return err
}

func (t taggedConn) NewStream(ctx context.Context, desc *grpc.StreamDesc, method string, opts ...grpc.CallOption) (grpc.ClientStream, error) {
	return t.cc.NewStream(metadata.AppendToOutgoingContext(ctx, t.md...), desc, method, opts...)
}

// connSet is a few shared plaintext connections to one address; a caller
// keeps to one of them (by hash of its name).
type connSet struct {
	conns []*grpc.ClientConn
}

func dialShared(addr string) (*connSet, error) {
	cs := &connSet{}
	for range sharedConns {
		conn, err := grpc.NewClient(addr,
			grpc.WithTransportCredentials(insecure.NewCredentials()),
			grpc.WithInitialWindowSize(windowBytes), grpc.WithInitialConnWindowSize(windowBytes),
		)
		if err != nil {
			cs.Close()
			return nil, fmt.Errorf("bench: dial %s: %w", addr, err)
		}
		cs.conns = append(cs.conns, conn)
	}
	return cs, nil
}

func (cs *connSet) pick(name string) *grpc.ClientConn {
	h := fnv.New32a()
	_, _ = h.Write([]byte(name))
	return cs.conns[h.Sum32()%uint32(len(cs.conns))]
}

// as returns a connection that calls as role:name, over the connection
// picked by name.
func (cs *connSet) as(role pki.Role, name string) taggedConn {
	return taggedConn{cc: cs.pick(name), md: []string{simIdentityKey, string(role) + ":" + name}}
}

func (cs *connSet) Close() {
	if cs == nil {
		return
	}
	for _, c := range cs.conns {
		_ = c.Close()
	}
}

// simIdentity reads the caller's identity from the call's metadata, for
// the servers of the shared transport. allowed lists the roles admitted.
func simIdentity(ctx context.Context, allowed ...pki.Role) (context.Context, error) {
	md, _ := metadata.FromIncomingContext(ctx)
	v := md.Get(simIdentityKey)
	if len(v) != 1 {
		return nil, status.Error(codes.Unauthenticated, "bench: call carries no simulated identity")
	}
	role, name, ok := strings.Cut(v[0], ":")
	if !ok || name == "" {
		return nil, status.Errorf(codes.Unauthenticated, "bench: simulated identity %q: want role:name", v[0])
	}
	for _, r := range allowed {
		if string(r) == role {
			return grpcauth.AssertIdentity(ctx, pki.Identity{CommonName: name, Role: r, Serial: "sim"}), nil
		}
	}
	return nil, status.Errorf(codes.PermissionDenied, "bench: simulated role %q not admitted here", role)
}

func simUnary(allowed ...pki.Role) grpc.UnaryServerInterceptor {
	return func(ctx context.Context, req any, _ *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
		ctx, err := simIdentity(ctx, allowed...)
		if err != nil {
			return nil, err
		}
		return handler(ctx, req)
	}
}

func simStream(allowed ...pki.Role) grpc.StreamServerInterceptor {
	return func(srv any, ss grpc.ServerStream, _ *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
		ctx, err := simIdentity(ss.Context(), allowed...)
		if err != nil {
			return err
		}
		return handler(srv, grpcauth.WithStreamContext(ss, ctx))
	}
}

// sharedServerOptions are the options of both shared-transport servers.
func sharedServerOptions(allowed ...pki.Role) []grpc.ServerOption {
	return []grpc.ServerOption{
		grpc.Creds(insecure.NewCredentials()),
		grpc.InitialWindowSize(windowBytes), grpc.InitialConnWindowSize(windowBytes),
		grpc.ChainUnaryInterceptor(simUnary(allowed...)),
		grpc.ChainStreamInterceptor(simStream(allowed...)),
	}
}

// hollowMux serves the AgentService of every hollow node on one listener,
// dispatching each call to the node it names. A stopped node answers
// Unavailable, as a dead agent's connection would.
type hollowMux struct {
	persysv1grpc.UnimplementedAgentServiceServer
	mu    sync.RWMutex
	nodes map[string]persysv1grpc.AgentServiceServer
}

func newHollowMux() *hollowMux {
	return &hollowMux{nodes: map[string]persysv1grpc.AgentServiceServer{}}
}

func (m *hollowMux) add(id string, svc persysv1grpc.AgentServiceServer) {
	m.mu.Lock()
	m.nodes[id] = svc
	m.mu.Unlock()
}

func (m *hollowMux) remove(id string) {
	m.mu.Lock()
	delete(m.nodes, id)
	m.mu.Unlock()
}

func (m *hollowMux) node(ctx context.Context) (persysv1grpc.AgentServiceServer, error) {
	md, _ := metadata.FromIncomingContext(ctx)
	v := md.Get(simNodeKey)
	if len(v) != 1 {
		return nil, status.Error(codes.InvalidArgument, "bench: call names no hollow node")
	}
	m.mu.RLock()
	svc := m.nodes[v[0]]
	m.mu.RUnlock()
	if svc == nil {
		return nil, status.Errorf(codes.Unavailable, "bench: hollow node %s is down", v[0])
	}
	return svc, nil
}

func (m *hollowMux) ApplyWorkload(ctx context.Context, req *persysv1.ApplyWorkloadRequest) (*persysv1.ApplyWorkloadResponse, error) {
	svc, err := m.node(ctx)
	if err != nil {
		return nil, err
	}
	return svc.ApplyWorkload(ctx, req)
}

func (m *hollowMux) DeleteWorkload(ctx context.Context, req *persysv1.DeleteWorkloadRequest) (*persysv1.DeleteWorkloadResponse, error) {
	svc, err := m.node(ctx)
	if err != nil {
		return nil, err
	}
	return svc.DeleteWorkload(ctx, req)
}

func (m *hollowMux) GetWorkloadStatus(ctx context.Context, req *persysv1.GetWorkloadStatusRequest) (*persysv1.WorkloadStatus, error) {
	svc, err := m.node(ctx)
	if err != nil {
		return nil, err
	}
	return svc.GetWorkloadStatus(ctx, req)
}

func (m *hollowMux) ListWorkloads(ctx context.Context, req *persysv1.ListAgentWorkloadsRequest) (*persysv1.ListAgentWorkloadsResponse, error) {
	svc, err := m.node(ctx)
	if err != nil {
		return nil, err
	}
	return svc.ListWorkloads(ctx, req)
}

func (m *hollowMux) HealthCheck(ctx context.Context, req *persysv1.HealthCheckRequest) (*persysv1.HealthCheckResponse, error) {
	svc, err := m.node(ctx)
	if err != nil {
		return nil, err
	}
	return svc.HealthCheck(ctx, req)
}

func (m *hollowMux) GetWorkloadLogs(ctx context.Context, req *persysv1.GetWorkloadLogsRequest) (*persysv1.GetWorkloadLogsResponse, error) {
	svc, err := m.node(ctx)
	if err != nil {
		return nil, err
	}
	return svc.GetWorkloadLogs(ctx, req)
}

// sharedDialer is the scheduler's AgentDialer over the shared transport:
// every node's client is a tagged view of one of a few connections to the
// hollow mux.
type sharedDialer struct {
	conns *connSet
	// applies, when set, receives the duration of every ApplyWorkload
	// call, as the scheduler sees it (exact samples for the report).
	applies *durSamples
}

func (d sharedDialer) Dial(nodeID, _ string) (persysv1grpc.AgentServiceClient, func() error, error) {
	// Spread the nodes over the connections, not all on "scheduler"'s.
	tc := taggedConn{cc: d.conns.pick(nodeID), applies: d.applies,
		md: []string{simIdentityKey, string(pki.RoleScheduler) + ":scheduler", simNodeKey, nodeID}}
	return persysv1grpc.NewAgentServiceClient(tc), func() error { return nil }, nil
}
