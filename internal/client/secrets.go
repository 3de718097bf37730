package client

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"

	persysv1 "github.com/persys-dev/compute/api/persys/v1"
	"github.com/persys-dev/compute/internal/secrets"
)

func secretPath(name string) string { return "/v1/secrets/" + url.PathEscape(name) }

// PutSecret creates or updates a secret (admin only). Values travel
// base64-encoded in the request body; the answer carries key names only
// (version 1 means it was created).
func (c *Client) PutSecret(ctx context.Context, name string, typ persysv1.SecretType, data map[string][]byte) (*persysv1.SecretInfo, error) {
	return c.PutSecretAllowing(ctx, name, typ, data, nil, nil)
}

// PutSecretAllowing is PutSecret with the secret's allow lists: the roles
// (operator, viewer) and users whose workloads may reference it.
func (c *Client) PutSecretAllowing(ctx context.Context, name string, typ persysv1.SecretType, data map[string][]byte, roles, users []string) (*persysv1.SecretInfo, error) {
	body := struct {
		Name       string            `json:"name"`
		Type       string            `json:"type"`
		Data       map[string]string `json:"data"`
		AllowRoles []string          `json:"allowRoles,omitempty"`
		AllowUsers []string          `json:"allowUsers,omitempty"`
	}{Name: name, Type: secrets.TypeName(typ), Data: make(map[string]string, len(data)), AllowRoles: roles, AllowUsers: users}
	for k, v := range data {
		body.Data[k] = base64.StdEncoding.EncodeToString(v)
	}
	b, err := json.Marshal(body)
	if err != nil {
		return nil, fmt.Errorf("encoding secret %q: %w", name, err)
	}
	out := &persysv1.SecretInfo{}
	_, err = c.do(ctx, http.MethodPost, "/v1/secrets", nil, b, out)
	clear(b)
	for k := range body.Data {
		body.Data[k] = ""
	}
	if err != nil {
		return nil, err
	}
	return out, nil
}

// GetSecret returns a secret's name, type, key names and version.
func (c *Client) GetSecret(ctx context.Context, name string) (*persysv1.SecretInfo, error) {
	out := &persysv1.SecretInfo{}
	if _, err := c.do(ctx, http.MethodGet, secretPath(name), nil, nil, out); err != nil {
		return nil, err
	}
	return out, nil
}

// ListSecrets returns every secret's info, sorted by name.
func (c *Client) ListSecrets(ctx context.Context) (*persysv1.ListSecretsResponse, error) {
	out := &persysv1.ListSecretsResponse{}
	if _, err := c.do(ctx, http.MethodGet, "/v1/secrets", nil, nil, out); err != nil {
		return nil, err
	}
	return out, nil
}

// DeleteSecret removes a secret; a missing one is a 404 APIError.
func (c *Client) DeleteSecret(ctx context.Context, name string) error {
	_, err := c.do(ctx, http.MethodDelete, secretPath(name), nil, nil, nil)
	return err
}
