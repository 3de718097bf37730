package controlapi

// The secret calls: the leader check, then internal/secretsvc (which
// checks the caller's permission itself).

import (
	"context"

	persysv1 "github.com/persys-dev/compute/api/persys/v1"
)

func (c *controlService) PutSecret(ctx context.Context, req *persysv1.PutSecretRequest) (*persysv1.SecretInfo, error) {
	if err := c.s.Serving(ctx); err != nil {
		return nil, err
	}
	resp, err := c.sec.Put(ctx, req)
	return resp, toStatus(err)
}

func (c *controlService) GetSecret(ctx context.Context, req *persysv1.GetSecretRequest) (*persysv1.SecretInfo, error) {
	if err := c.s.Serving(ctx); err != nil {
		return nil, err
	}
	resp, err := c.sec.Get(ctx, req)
	return resp, toStatus(err)
}

func (c *controlService) ListSecrets(ctx context.Context, req *persysv1.ListSecretsRequest) (*persysv1.ListSecretsResponse, error) {
	if err := c.s.Serving(ctx); err != nil {
		return nil, err
	}
	resp, err := c.sec.List(ctx, req)
	return resp, toStatus(err)
}

func (c *controlService) DeleteSecret(ctx context.Context, req *persysv1.DeleteSecretRequest) (*persysv1.DeleteSecretResponse, error) {
	if err := c.s.Serving(ctx); err != nil {
		return nil, err
	}
	resp, err := c.sec.Delete(ctx, req)
	return resp, toStatus(err)
}
