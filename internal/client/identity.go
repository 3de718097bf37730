package client

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"time"

	persysv1 "github.com/persys-dev/compute/api/persys/v1"
)

// CreateToken creates an API token for user with role (admin, operator or
// viewer) valid for ttl (0: the scheduler's default of 30 days). The answer
// holds the token itself: it is shown this once and never again.
func (c *Client) CreateToken(ctx context.Context, user, role string, ttl time.Duration) (*persysv1.CreateAPITokenResponse, error) {
	if ttl < 0 {
		return nil, fmt.Errorf("ttl: must not be negative, got %s", ttl)
	}
	body, err := json.Marshal(struct {
		User       string `json:"user"`
		Role       string `json:"role"`
		TTLSeconds int64  `json:"ttlSeconds,omitempty"`
	}{user, role, int64((ttl + time.Second - 1) / time.Second)})
	if err != nil {
		return nil, err
	}
	out := &persysv1.CreateAPITokenResponse{}
	if _, err := c.do(ctx, http.MethodPost, "/v1/tokens", nil, body, out); err != nil {
		return nil, err
	}
	return out, nil
}

// ListTokens returns every API token's id, user, role, expiry and state;
// never a token itself.
func (c *Client) ListTokens(ctx context.Context) (*persysv1.ListAPITokensResponse, error) {
	out := &persysv1.ListAPITokensResponse{}
	if _, err := c.do(ctx, http.MethodGet, "/v1/tokens", nil, nil, out); err != nil {
		return nil, err
	}
	return out, nil
}

// RevokeToken revokes the API token with id (the part after psy_).
func (c *Client) RevokeToken(ctx context.Context, id string) error {
	_, err := c.do(ctx, http.MethodDelete, "/v1/tokens/"+url.PathEscape(id), nil, nil, nil)
	return err
}

// IssueUserCertificate asks the cluster CA (through the gateway; admin) to
// sign csrPEM for user name with role, valid for ttl (0: the scheduler's
// default). The key never leaves the caller.
func (c *Client) IssueUserCertificate(ctx context.Context, name, role string, csrPEM []byte, ttl time.Duration) (*persysv1.IssueUserCertificateResponse, error) {
	body, err := json.Marshal(struct {
		Role       string `json:"role"`
		CSRPEM     string `json:"csrPem"`
		TTLSeconds int64  `json:"ttlSeconds,omitempty"`
	}{role, string(csrPEM), int64((ttl + time.Second - 1) / time.Second)})
	if err != nil {
		return nil, err
	}
	out := &persysv1.IssueUserCertificateResponse{}
	if _, err := c.do(ctx, http.MethodPost, "/v1/users/"+url.PathEscape(name)+"/certificate", nil, body, out); err != nil {
		return nil, err
	}
	return out, nil
}

// WhoAmI is the caller's identity as the gateway sees it.
type WhoAmI struct {
	User    string `json:"user"`
	Role    string `json:"role"`
	Auth    string `json:"auth"`
	TokenID string `json:"tokenId,omitempty"`
}

// WhoAmI asks the gateway who the client is.
func (c *Client) WhoAmI(ctx context.Context) (*WhoAmI, error) {
	code, _, data, err := c.send(ctx, http.MethodGet, "/v1/whoami", nil, nil)
	if err != nil {
		return nil, err
	}
	if code/100 != 2 {
		return nil, decodeError(code, data)
	}
	out := &WhoAmI{}
	if err := json.Unmarshal(data, out); err != nil {
		return nil, fmt.Errorf("GET /v1/whoami: decoding answer: %w", err)
	}
	return out, nil
}

// ListEventsOfType is ListEvents keeping only events of type typ
// ("Audit": the audit log), compared without regard to case.
func (c *Client) ListEventsOfType(ctx context.Context, workload, typ string, limit int) (*persysv1.ListEventsResponse, error) {
	q := url.Values{}
	if workload != "" {
		q.Set("workload", workload)
	}
	if typ != "" {
		q.Set("type", typ)
	}
	if limit > 0 {
		q.Set("limit", strconv.Itoa(limit))
	}
	out := &persysv1.ListEventsResponse{}
	if _, err := c.do(ctx, http.MethodGet, "/v1/events", q, nil, out); err != nil {
		return nil, err
	}
	return out, nil
}
