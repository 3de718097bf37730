// Package grpcauth authorizes gRPC calls by the role carried in the
// caller's client certificate. Servers install RequireRole (and
// RequireRoleStream for streaming methods) after configuring mTLS with
// pki.ServerTLS; handlers read the verified caller with FromContext.
//
// The gRPC health protocol (grpc.health.v1) is open to every peer that
// passed the mTLS handshake, so probes need no privileged certificate.
//
// HolderCredentials makes gRPC read a pki.Holder at every handshake
// (renewed certificates, rotated CA bundles, revocation checks), and
// PollRevocations keeps a pki.RevocationSet current from the scheduler for
// components without etcd.
package grpcauth

import (
	"context"
	"fmt"
	"strings"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"

	"github.com/persys-dev/compute/internal/pki"
)

// healthPrefix is the method prefix of the gRPC health protocol.
const healthPrefix = "/grpc.health.v1.Health/"

type identityKey struct{}

// assertedKey carries an identity set by in-process code (AssertIdentity).
type assertedKey struct{}

// AssertIdentity returns ctx with id standing in for a verified client
// certificate. Only the hollow-node simulator uses it (package bench), in
// an interceptor of its own plaintext loopback server, where thousands of
// simulated nodes share a few connections: a context value cannot be set
// by a remote peer, and no daemon installs such an interceptor, so every
// real server still requires mTLS.
func AssertIdentity(ctx context.Context, id pki.Identity) context.Context {
	return context.WithValue(ctx, assertedKey{}, id)
}

// PeerIdentity returns the identity of the caller from its verified client
// certificate (or from AssertIdentity). It fails when the connection is
// not TLS or carries no usable certificate.
func PeerIdentity(ctx context.Context) (pki.Identity, error) {
	if id, ok := ctx.Value(assertedKey{}).(pki.Identity); ok {
		return id, nil
	}
	p, ok := peer.FromContext(ctx)
	if !ok {
		return pki.Identity{}, fmt.Errorf("grpcauth: no peer in context")
	}
	info, ok := p.AuthInfo.(credentials.TLSInfo)
	if !ok {
		return pki.Identity{}, fmt.Errorf("grpcauth: peer %s did not connect over TLS", p.Addr)
	}
	id, err := pki.PeerIdentity(&info.State)
	if err != nil {
		return pki.Identity{}, fmt.Errorf("grpcauth: peer %s: %w", p.Addr, err)
	}
	return id, nil
}

// FromContext returns the identity stored by RequireRole or
// RequireRoleStream for the current call.
func FromContext(ctx context.Context) (pki.Identity, bool) {
	id, ok := ctx.Value(identityKey{}).(pki.Identity)
	return id, ok
}

// authorize checks the caller of method against roles and returns the
// context with the caller's identity.
func authorize(ctx context.Context, method string, roles []pki.Role) (context.Context, error) {
	return authorizeFunc(ctx, method, func(string) []pki.Role { return roles })
}

// authorizeFunc checks the caller of method against the roles rolesFor
// gives for it.
func authorizeFunc(ctx context.Context, method string, rolesFor func(method string) []pki.Role) (context.Context, error) {
	if strings.HasPrefix(method, healthPrefix) {
		return ctx, nil
	}
	id, err := PeerIdentity(ctx)
	if err != nil {
		return nil, status.Error(codes.PermissionDenied, err.Error())
	}
	for _, r := range rolesFor(method) {
		if id.Role == r {
			return context.WithValue(ctx, identityKey{}, id), nil
		}
	}
	return nil, status.Errorf(codes.PermissionDenied, "caller %q with role %v may not call %s", id.CommonName, id.Role, method)
}

// RequireRole admits unary calls only from peers whose client certificate
// carries one of roles; others get codes.PermissionDenied.
func RequireRole(roles ...pki.Role) grpc.UnaryServerInterceptor {
	roles = append([]pki.Role(nil), roles...)
	return func(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
		ctx, err := authorize(ctx, info.FullMethod, roles)
		if err != nil {
			return nil, err
		}
		return handler(ctx, req)
	}
}

// RequireRoleStream is RequireRole for streaming calls.
func RequireRoleStream(roles ...pki.Role) grpc.StreamServerInterceptor {
	roles = append([]pki.Role(nil), roles...)
	return func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
		ctx, err := authorize(ss.Context(), info.FullMethod, roles)
		if err != nil {
			return err
		}
		return handler(srv, WithStreamContext(ss, ctx))
	}
}

// WithStreamContext returns ss with ctx as its context, for stream
// interceptors that add to it (an identity, say).
func WithStreamContext(ss grpc.ServerStream, ctx context.Context) grpc.ServerStream {
	return &ctxStream{ServerStream: ss, ctx: ctx}
}

type ctxStream struct {
	grpc.ServerStream
	ctx context.Context
}

func (s *ctxStream) Context() context.Context { return s.ctx }

// Policy admits callers per method: Methods maps a full method name (for
// example "/persys.v1.ControlService/Heartbeat") to the roles allowed to
// call it, and Default applies to every method not listed. A method with
// no roles is denied to everyone.
type Policy struct {
	Methods map[string][]pki.Role
	Default []pki.Role
}

func (p Policy) rolesFor(method string) []pki.Role {
	if roles, ok := p.Methods[method]; ok {
		return roles
	}
	return p.Default
}

// Unary returns the policy as a unary interceptor.
func (p Policy) Unary() grpc.UnaryServerInterceptor {
	return func(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
		ctx, err := authorizeFunc(ctx, info.FullMethod, p.rolesFor)
		if err != nil {
			return nil, err
		}
		return handler(ctx, req)
	}
}

// Stream returns the policy as a stream interceptor.
func (p Policy) Stream() grpc.StreamServerInterceptor {
	return func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
		ctx, err := authorizeFunc(ss.Context(), info.FullMethod, p.rolesFor)
		if err != nil {
			return err
		}
		return handler(srv, WithStreamContext(ss, ctx))
	}
}
