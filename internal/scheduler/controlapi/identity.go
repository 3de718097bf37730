package controlapi

// The identity calls: the leader check and the admin role where a method
// needs it, then internal/identity. CreateAPIToken and RevokeAPIToken
// marked as a console login or logout (contract.MetadataTokenPurpose)
// admit any user, for a session token of its own.

import (
	"context"

	"google.golang.org/grpc/metadata"

	"github.com/persys-dev/compute/api/persys/contract"
	persysv1 "github.com/persys-dev/compute/api/persys/v1"
	"github.com/persys-dev/compute/internal/principal"
)

func (c *controlService) CreateJoinToken(ctx context.Context, req *persysv1.CreateJoinTokenRequest) (*persysv1.CreateJoinTokenResponse, error) {
	if err := c.s.Serving(ctx); err != nil {
		return nil, err
	}
	resp, err := c.id.CreateJoinToken(ctx, req)
	return resp, toStatus(err)
}

func (c *controlService) ListJoinTokens(ctx context.Context, req *persysv1.ListJoinTokensRequest) (*persysv1.ListJoinTokensResponse, error) {
	if err := c.s.Serving(ctx); err != nil {
		return nil, err
	}
	resp, err := c.id.ListJoinTokens(ctx, req)
	return resp, toStatus(err)
}

func (c *controlService) RevokeJoinToken(ctx context.Context, req *persysv1.RevokeJoinTokenRequest) (*persysv1.RevokeJoinTokenResponse, error) {
	if err := c.s.Serving(ctx); err != nil {
		return nil, err
	}
	resp, err := c.id.RevokeJoinToken(ctx, req)
	return resp, toStatus(err)
}

func (c *controlService) JoinNode(ctx context.Context, req *persysv1.JoinNodeRequest) (*persysv1.JoinNodeResponse, error) {
	if err := c.s.Serving(ctx); err != nil {
		return nil, err
	}
	resp, err := c.id.JoinNode(ctx, req)
	return resp, toStatus(err)
}

func (c *controlService) RenewCertificate(ctx context.Context, req *persysv1.RenewCertificateRequest) (*persysv1.RenewCertificateResponse, error) {
	if err := c.s.Serving(ctx); err != nil {
		return nil, err
	}
	resp, err := c.id.RenewCertificate(ctx, req)
	return resp, toStatus(err)
}

func (c *controlService) RevokeCertificate(ctx context.Context, req *persysv1.RevokeCertificateRequest) (*persysv1.RevokeCertificateResponse, error) {
	if err := c.s.Serving(ctx); err != nil {
		return nil, err
	}
	resp, err := c.id.RevokeCertificate(ctx, req)
	return resp, toStatus(err)
}

func (c *controlService) ListRevocations(ctx context.Context, req *persysv1.ListRevocationsRequest) (*persysv1.ListRevocationsResponse, error) {
	if err := c.s.Serving(ctx); err != nil {
		return nil, err
	}
	resp, err := c.id.ListRevocations(ctx, req)
	return resp, toStatus(err)
}

func (c *controlService) IssueUserCertificate(ctx context.Context, req *persysv1.IssueUserCertificateRequest) (*persysv1.IssueUserCertificateResponse, error) {
	if err := principal.RequireAdmin(ctx, "IssueUserCertificate"); err != nil {
		return nil, err
	}
	resp, err := c.id.IssueUserCertificate(ctx, req)
	return resp, toStatus(err)
}

func (c *controlService) CreateAPIToken(ctx context.Context, req *persysv1.CreateAPITokenRequest) (*persysv1.CreateAPITokenResponse, error) {
	if consoleSession(ctx) {
		// A console login: any user, for itself (identity checks that).
		p, err := principal.Of(ctx)
		if err != nil {
			return nil, err
		}
		if err := c.s.Serving(ctx); err != nil {
			return nil, err
		}
		resp, err := c.id.CreateConsoleSession(ctx, p, onlyMetadata(ctx, contract.MetadataLoginToken), req)
		return resp, toStatus(err)
	}
	if err := principal.RequireAdmin(ctx, "CreateAPIToken"); err != nil {
		return nil, err
	}
	if err := c.s.Serving(ctx); err != nil {
		return nil, err
	}
	resp, err := c.id.CreateAPIToken(ctx, req)
	return resp, toStatus(err)
}

func (c *controlService) ListAPITokens(ctx context.Context, req *persysv1.ListAPITokensRequest) (*persysv1.ListAPITokensResponse, error) {
	if err := principal.RequireAdmin(ctx, "ListAPITokens"); err != nil {
		return nil, err
	}
	resp, err := c.id.ListAPITokens(ctx, req)
	return resp, toStatus(err)
}

func (c *controlService) RevokeAPIToken(ctx context.Context, req *persysv1.RevokeAPITokenRequest) (*persysv1.RevokeAPITokenResponse, error) {
	if consoleSession(ctx) {
		// A console logout: its owner ends its own session.
		p, err := principal.Of(ctx)
		if err != nil {
			return nil, err
		}
		if err := c.s.Serving(ctx); err != nil {
			return nil, err
		}
		resp, err := c.id.RevokeConsoleSession(ctx, p, req)
		return resp, toStatus(err)
	}
	if err := principal.RequireAdmin(ctx, "RevokeAPIToken"); err != nil {
		return nil, err
	}
	if err := c.s.Serving(ctx); err != nil {
		return nil, err
	}
	resp, err := c.id.RevokeAPIToken(ctx, req)
	return resp, toStatus(err)
}

func (c *controlService) AuthenticateToken(ctx context.Context, req *persysv1.AuthenticateTokenRequest) (*persysv1.AuthenticateTokenResponse, error) {
	resp, err := c.id.AuthenticateToken(ctx, req)
	return resp, toStatus(err)
}

func (c *controlService) RecordAudit(ctx context.Context, req *persysv1.RecordAuditRequest) (*persysv1.RecordAuditResponse, error) {
	resp, err := c.id.RecordAudit(ctx, req)
	return resp, toStatus(err)
}

// consoleSession reports whether the call is marked as a console login or
// logout (contract.MetadataTokenPurpose).
func consoleSession(ctx context.Context) bool {
	return onlyMetadata(ctx, contract.MetadataTokenPurpose) == contract.TokenPurposeConsoleSession
}

// onlyMetadata is the single value of key in the call's metadata, "" when
// absent or given more than once.
func onlyMetadata(ctx context.Context, key string) string {
	md, _ := metadata.FromIncomingContext(ctx)
	if v := md.Get(key); len(v) == 1 {
		return v[0]
	}
	return ""
}
