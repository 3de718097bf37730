package bench

import (
	"context"
	"fmt"
	"hash/fnv"
	"strings"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/persys-dev/compute/internal/grpcauth"
	"github.com/persys-dev/compute/internal/pki"
)

// The shared transport of the hollow cluster. Real agents each hold an
// mTLS connection to the scheduler, with their control stream on it: a
// handshake and descriptors per node, which caps one process at a few
// thousand nodes and spends the CPU on TLS instead of the scheduler. With
// the shared transport the hollow agents send their calls, and hold their
// control streams, over a few plaintext loopback connections, each call
// and stream tagged with the caller's identity. The scheduler code and the
// agent code are the real ones; only the transport and the source of the
// caller's identity differ (grpcauth.AssertIdentity). This switch exists
// in this package only: no daemon has it.
const (
	// simIdentityKey carries "role:name" of the caller.
	simIdentityKey = "x-persys-sim-identity"
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
}

func (t taggedConn) Invoke(ctx context.Context, method string, args, reply any, opts ...grpc.CallOption) error {
	return t.cc.Invoke(metadata.AppendToOutgoingContext(ctx, t.md...), method, args, reply, opts...)
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
