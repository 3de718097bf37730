package gateway

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"

	"google.golang.org/protobuf/proto"

	persysv1 "github.com/persys-dev/compute/api/persys/v1"
	"github.com/persys-dev/compute/internal/gateway/authn"
	"github.com/persys-dev/compute/internal/gateway/httperr"
	"github.com/persys-dev/compute/internal/pki"
)

// maxIdentityBody bounds the bodies of token and user requests (a CSR is
// the largest part).
const maxIdentityBody = 64 << 10

// identityRoutes serve API tokens, user certificates and whoami. Token
// and user routes need the admin permissions (permissions.go).
func (g *gateway) identityRoutes() []route {
	admins := []pki.Role{pki.RoleAdmin}
	return []route{
		{"POST", "/v1/tokens", admins, g.createToken},
		{"GET", "/v1/tokens", admins, g.listTokens},
		{"DELETE", "/v1/tokens/{id}", admins, g.revokeToken},
		{"POST", "/v1/users/{name}/certificate", admins, g.issueUserCertificate},
		{"GET", "/v1/whoami", readers, g.whoami},
	}
}

// CreateTokenBody is the JSON body of POST /v1/tokens.
type CreateTokenBody struct {
	User       string `json:"user"`
	Role       string `json:"role"`
	TTLSeconds int64  `json:"ttlSeconds,omitempty"`
}

// IssueUserCertificateBody is the JSON body of
// POST /v1/users/{name}/certificate.
type IssueUserCertificateBody struct {
	Role string `json:"role"`
	// CSRPEM is a PEM certificate request; the key stays with the user.
	CSRPEM     string `json:"csrPem"`
	TTLSeconds int64  `json:"ttlSeconds,omitempty"`
}

// WhoAmI is the answer of GET /v1/whoami.
type WhoAmI struct {
	User    string `json:"user"`
	Role    string `json:"role"`
	Auth    string `json:"auth"`
	TokenID string `json:"tokenId,omitempty"`
}

// readJSON decodes a bounded JSON body into v, refusing unknown fields.
func (g *gateway) readJSON(w http.ResponseWriter, r *http.Request, v any) error {
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxIdentityBody))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		var tooBig *http.MaxBytesError
		switch {
		case errors.As(err, &tooBig):
			return httperr.New(http.StatusRequestEntityTooLarge, fmt.Sprintf("request body is larger than the limit of %d bytes", tooBig.Limit))
		case errors.Is(err, io.EOF):
			return httperr.New(http.StatusBadRequest, "request body is empty: send a JSON object")
		}
		return httperr.New(http.StatusBadRequest, fmt.Sprintf("request body: %v", err))
	}
	if dec.More() {
		return httperr.New(http.StatusBadRequest, "request body: more than one JSON value")
	}
	return nil
}

func validateUserRole(field, role string) error {
	switch role {
	case string(pki.RoleAdmin), string(pki.RoleOperator), string(pki.RoleViewer):
		return nil
	case "":
		return httperr.Field(field, "required: admin, operator or viewer")
	}
	return httperr.Field(field, fmt.Sprintf("must be admin, operator or viewer, got %q", role))
}

func (g *gateway) createToken(w http.ResponseWriter, r *http.Request) (int, error) {
	var body CreateTokenBody
	if err := g.readJSON(w, r, &body); err != nil {
		return 0, err
	}
	if err := pki.ValidateName("user", body.User); err != nil {
		return 0, httperr.Field("user", strings.TrimPrefix(err.Error(), "user: "))
	}
	if err := validateUserRole("role", body.Role); err != nil {
		return 0, err
	}
	if body.TTLSeconds < 0 {
		return 0, httperr.Field("ttlSeconds", fmt.Sprintf("must not be negative, got %d", body.TTLSeconds))
	}
	ctx, cancel := g.callCtx(r)
	defer cancel()
	resp, err := g.control.CreateAPIToken(ctx, &persysv1.CreateAPITokenRequest{User: body.User, Role: body.Role, TtlSeconds: body.TTLSeconds})
	if err != nil {
		return 0, err
	}
	w.Header().Set("Cache-Control", "no-store")
	return writeJSON(w, http.StatusCreated, resp)
}

func (g *gateway) listTokens(w http.ResponseWriter, r *http.Request) (int, error) {
	return answer(g, w, r, http.StatusOK, func(ctx context.Context) (proto.Message, error) {
		return g.control.ListAPITokens(ctx, &persysv1.ListAPITokensRequest{})
	})
}

func (g *gateway) revokeToken(w http.ResponseWriter, r *http.Request) (int, error) {
	id := r.PathValue("id")
	ctx, cancel := g.callCtx(r)
	defer cancel()
	resp, err := g.control.RevokeAPIToken(ctx, &persysv1.RevokeAPITokenRequest{Id: id})
	if err != nil {
		return 0, err
	}
	g.auth.Forget(id)
	return writeJSON(w, http.StatusOK, resp)
}

func (g *gateway) issueUserCertificate(w http.ResponseWriter, r *http.Request) (int, error) {
	var body IssueUserCertificateBody
	if err := g.readJSON(w, r, &body); err != nil {
		return 0, err
	}
	name := r.PathValue("name")
	if err := pki.ValidateName("name", name); err != nil {
		return 0, httperr.Field("name", strings.TrimPrefix(err.Error(), "name: "))
	}
	if err := validateUserRole("role", body.Role); err != nil {
		return 0, err
	}
	if strings.TrimSpace(body.CSRPEM) == "" {
		return 0, httperr.Field("csrPem", "required: a PEM certificate request")
	}
	if body.TTLSeconds < 0 {
		return 0, httperr.Field("ttlSeconds", fmt.Sprintf("must not be negative, got %d", body.TTLSeconds))
	}
	ctx, cancel := g.callCtx(r)
	defer cancel()
	resp, err := g.control.IssueUserCertificate(ctx, &persysv1.IssueUserCertificateRequest{
		Name: name, Role: body.Role, CsrPem: []byte(body.CSRPEM), TtlSeconds: body.TTLSeconds})
	if err != nil {
		return 0, err
	}
	return writeJSON(w, http.StatusCreated, resp)
}

func (g *gateway) whoami(w http.ResponseWriter, r *http.Request) (int, error) {
	id := authn.FromRequest(r).ID
	if id == nil {
		return 0, authn.ErrNoCredentials
	}
	b, err := json.Marshal(WhoAmI{User: id.User, Role: string(id.Role), Auth: id.Method, TokenID: id.TokenID})
	if err != nil {
		return 0, err
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(append(b, '\n'))
	return http.StatusOK, nil
}
