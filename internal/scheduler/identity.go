package scheduler

// The scheduler's side of internal/identity: its configuration, the
// revocation interceptors, and the node questions the service asks.

import (
	"context"

	"google.golang.org/grpc"

	"github.com/persys-dev/compute/internal/identity"
	"github.com/persys-dev/compute/internal/pki"
	"github.com/persys-dev/compute/internal/scheduler/controlapi"
)

// IdentityConfig turns on the signing calls (see identity.CAConfig).
type IdentityConfig = identity.CAConfig

// SetIdentity configures the signing calls; call it before Run and Serve.
func (s *Scheduler) SetIdentity(cfg IdentityConfig) { s.identity.SetCA(cfg) }

// Revocations is the scheduler's revocation set, kept current by
// RunIdentity; install it in the TLS holders (pki.Holder.SetRevocationChecker).
func (s *Scheduler) Revocations() *pki.RevocationSet { return s.identity.Revocations() }

// RunIdentity keeps the revocation set current from etcd and turns revoked
// nodes NotReady, until ctx ends.
func (s *Scheduler) RunIdentity(ctx context.Context) error { return s.identity.Run(ctx) }

// RevocationUnary refuses unary calls on connections whose client
// certificate has been revoked since the handshake.
func (s *Scheduler) RevocationUnary(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
	if err := s.identity.CheckRevoked(ctx, info.FullMethod, controlapi.IsAgentMethod(info.FullMethod)); err != nil {
		return nil, err
	}
	return handler(ctx, req)
}

// RevocationStream is RevocationUnary for streams.
func (s *Scheduler) RevocationStream(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
	if err := s.identity.CheckRevoked(ss.Context(), info.FullMethod, controlapi.IsAgentMethod(info.FullMethod)); err != nil {
		return err
	}
	return handler(srv, ss)
}

// identityNodes answers the identity service from the node cache.
type identityNodes struct{ s *Scheduler }

func (n identityNodes) NodeAlive(id string) bool { return n.s.cache.NodeAlive(id) }

func (n identityNodes) AliveNodeLeases() map[string]int64 { return n.s.cache.AliveNodeLeases() }
