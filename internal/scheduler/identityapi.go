package scheduler

// The identity calls of ControlService: a thin adapter over
// internal/identity. It checks what the scheduler alone knows (whether this
// replica leads) and the caller's role where a method needs admin, calls
// the service, and maps its errors to gRPC codes.

import (
	"context"

	"google.golang.org/grpc"

	persysv1 "github.com/persys-dev/compute/api/persys/v1"
	"github.com/persys-dev/compute/internal/identity"
	"github.com/persys-dev/compute/internal/pki"
	"github.com/persys-dev/compute/internal/principal"
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
	if err := s.identity.CheckRevoked(ctx, info.FullMethod, agentMethods[info.FullMethod]); err != nil {
		return nil, err
	}
	return handler(ctx, req)
}

// RevocationStream is RevocationUnary for streams.
func (s *Scheduler) RevocationStream(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
	if err := s.identity.CheckRevoked(ss.Context(), info.FullMethod, agentMethods[info.FullMethod]); err != nil {
		return err
	}
	return handler(srv, ss)
}

// identityNodes answers the identity service from the node cache.
type identityNodes struct{ s *Scheduler }

func (n identityNodes) NodeAlive(id string) bool {
	n.s.mu.Lock()
	defer n.s.mu.Unlock()
	ne := n.s.nodes[id]
	return ne != nil && ne.alive
}

func (n identityNodes) AliveNodeLeases() map[string]int64 {
	n.s.mu.Lock()
	defer n.s.mu.Unlock()
	leases := map[string]int64{}
	for id, ne := range n.s.nodes {
		if ne.node != nil && ne.alive {
			leases[id] = ne.node.GetLeaseId()
		}
	}
	return leases
}

func (c *controlService) CreateJoinToken(ctx context.Context, req *persysv1.CreateJoinTokenRequest) (*persysv1.CreateJoinTokenResponse, error) {
	if err := c.s.serving(ctx); err != nil {
		return nil, err
	}
	resp, err := c.s.identity.CreateJoinToken(ctx, req)
	return resp, toStatus(err)
}

func (c *controlService) ListJoinTokens(ctx context.Context, req *persysv1.ListJoinTokensRequest) (*persysv1.ListJoinTokensResponse, error) {
	if err := c.s.serving(ctx); err != nil {
		return nil, err
	}
	resp, err := c.s.identity.ListJoinTokens(ctx, req)
	return resp, toStatus(err)
}

func (c *controlService) RevokeJoinToken(ctx context.Context, req *persysv1.RevokeJoinTokenRequest) (*persysv1.RevokeJoinTokenResponse, error) {
	if err := c.s.serving(ctx); err != nil {
		return nil, err
	}
	resp, err := c.s.identity.RevokeJoinToken(ctx, req)
	return resp, toStatus(err)
}

func (c *controlService) JoinNode(ctx context.Context, req *persysv1.JoinNodeRequest) (*persysv1.JoinNodeResponse, error) {
	if err := c.s.serving(ctx); err != nil {
		return nil, err
	}
	resp, err := c.s.identity.JoinNode(ctx, req)
	return resp, toStatus(err)
}

func (c *controlService) RenewCertificate(ctx context.Context, req *persysv1.RenewCertificateRequest) (*persysv1.RenewCertificateResponse, error) {
	if err := c.s.serving(ctx); err != nil {
		return nil, err
	}
	resp, err := c.s.identity.RenewCertificate(ctx, req)
	return resp, toStatus(err)
}

func (c *controlService) RevokeCertificate(ctx context.Context, req *persysv1.RevokeCertificateRequest) (*persysv1.RevokeCertificateResponse, error) {
	if err := c.s.serving(ctx); err != nil {
		return nil, err
	}
	resp, err := c.s.identity.RevokeCertificate(ctx, req)
	return resp, toStatus(err)
}

func (c *controlService) ListRevocations(ctx context.Context, req *persysv1.ListRevocationsRequest) (*persysv1.ListRevocationsResponse, error) {
	if err := c.s.serving(ctx); err != nil {
		return nil, err
	}
	resp, err := c.s.identity.ListRevocations(ctx, req)
	return resp, toStatus(err)
}

func (c *controlService) IssueUserCertificate(ctx context.Context, req *persysv1.IssueUserCertificateRequest) (*persysv1.IssueUserCertificateResponse, error) {
	if err := principal.RequireAdmin(ctx, "IssueUserCertificate"); err != nil {
		return nil, err
	}
	resp, err := c.s.identity.IssueUserCertificate(ctx, req)
	return resp, toStatus(err)
}

func (c *controlService) CreateAPIToken(ctx context.Context, req *persysv1.CreateAPITokenRequest) (*persysv1.CreateAPITokenResponse, error) {
	if err := principal.RequireAdmin(ctx, "CreateAPIToken"); err != nil {
		return nil, err
	}
	if err := c.s.serving(ctx); err != nil {
		return nil, err
	}
	resp, err := c.s.identity.CreateAPIToken(ctx, req)
	return resp, toStatus(err)
}

func (c *controlService) ListAPITokens(ctx context.Context, req *persysv1.ListAPITokensRequest) (*persysv1.ListAPITokensResponse, error) {
	if err := principal.RequireAdmin(ctx, "ListAPITokens"); err != nil {
		return nil, err
	}
	resp, err := c.s.identity.ListAPITokens(ctx, req)
	return resp, toStatus(err)
}

func (c *controlService) RevokeAPIToken(ctx context.Context, req *persysv1.RevokeAPITokenRequest) (*persysv1.RevokeAPITokenResponse, error) {
	if err := principal.RequireAdmin(ctx, "RevokeAPIToken"); err != nil {
		return nil, err
	}
	if err := c.s.serving(ctx); err != nil {
		return nil, err
	}
	resp, err := c.s.identity.RevokeAPIToken(ctx, req)
	return resp, toStatus(err)
}

func (c *controlService) AuthenticateToken(ctx context.Context, req *persysv1.AuthenticateTokenRequest) (*persysv1.AuthenticateTokenResponse, error) {
	resp, err := c.s.identity.AuthenticateToken(ctx, req)
	return resp, toStatus(err)
}

func (c *controlService) RecordAudit(ctx context.Context, req *persysv1.RecordAuditRequest) (*persysv1.RecordAuditResponse, error) {
	resp, err := c.s.identity.RecordAudit(ctx, req)
	return resp, toStatus(err)
}
