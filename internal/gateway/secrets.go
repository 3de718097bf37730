package gateway

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"sort"

	"google.golang.org/protobuf/proto"

	persysv1 "github.com/persys-dev/compute/api/persys/v1"
	"github.com/persys-dev/compute/internal/gateway/httperr"
	"github.com/persys-dev/compute/internal/pki"
	"github.com/persys-dev/compute/internal/secrets"
)

// Only admins manage secrets; no route ever answers with a value.
var admins = []pki.Role{pki.RoleAdmin}

// maxSecretBody bounds a secret's request body: the values' limit in
// base64 plus room for names and JSON.
const maxSecretBody = secrets.MaxDataSize/3*4 + 64<<10

// SecretRequest is the body of POST /v1/secrets. Values are given either
// base64-encoded in data or as UTF-8 text in stringData (as Kubernetes
// does); a key may appear in only one of them.
type SecretRequest struct {
	Name       string            `json:"name"`
	Type       string            `json:"type,omitempty"`
	Data       map[string]string `json:"data,omitempty"`
	StringData map[string]string `json:"stringData,omitempty"`
	// AllowRoles and AllowUsers name who besides admins may reference the
	// secret from a workload (the scheduler validates them).
	AllowRoles []string `json:"allowRoles,omitempty"`
	AllowUsers []string `json:"allowUsers,omitempty"`
}

func (g *gateway) secretRoutes() []route {
	return []route{
		{"POST", "/v1/secrets", admins, g.putSecret},
		{"GET", "/v1/secrets", admins, g.listSecrets},
		{"GET", "/v1/secrets/{name}", admins, g.getSecret},
		{"PUT", "/v1/secrets/{name}", admins, g.putSecret},
		{"DELETE", "/v1/secrets/{name}", admins, g.deleteSecret},
	}
}

// parseSecretRequest decodes and checks a POST /v1/secrets body, or a
// PUT /v1/secrets/{name} body (pathName set: the body's name may be left
// out, and must match when given). Errors name the field and never quote a
// value.
func parseSecretRequest(body []byte, pathName string) (*persysv1.PutSecretRequest, error) {
	var req SecretRequest
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil {
		var syn *json.SyntaxError
		var typ *json.UnmarshalTypeError
		switch {
		case errors.As(err, &typ):
			return nil, httperr.Field(typ.Field, "has the wrong JSON type, want "+typ.Type.String())
		case errors.As(err, &syn):
			return nil, httperr.New(http.StatusBadRequest, fmt.Sprintf("body is not valid JSON (at byte %d)", syn.Offset))
		}
		// Unknown fields: the decoder names the key, not a value.
		return nil, httperr.New(http.StatusBadRequest, "body: "+err.Error())
	}
	if dec.More() {
		return nil, httperr.New(http.StatusBadRequest, "body: one JSON object expected, found more")
	}
	if pathName != "" {
		if req.Name != "" && req.Name != pathName {
			return nil, httperr.Field("name", fmt.Sprintf("%q differs from the path's %q", req.Name, pathName))
		}
		req.Name = pathName
	}
	if err := secrets.ValidateName(req.Name); err != nil {
		return nil, httperr.Field("name", reasonOf(err))
	}
	typ, err := secrets.ParseType(req.Type)
	if err != nil {
		return nil, httperr.Field("type", "must be opaque, registry or git")
	}
	data := make(map[string][]byte, len(req.Data)+len(req.StringData))
	keys := make([]string, 0, len(req.Data))
	for k := range req.Data {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		v, err := base64.StdEncoding.DecodeString(req.Data[k])
		if err != nil {
			return nil, httperr.Field("data."+k, "not valid base64 (use stringData for text)")
		}
		data[k] = v
	}
	for k, v := range req.StringData {
		if _, dup := data[k]; dup {
			return nil, httperr.Field("stringData."+k, "also given in data")
		}
		data[k] = []byte(v)
	}
	if err := secrets.Validate(req.Name, typ, data); err != nil {
		return nil, httperr.Field("data", reasonOf(err))
	}
	return &persysv1.PutSecretRequest{Name: req.Name, Type: typ, Data: data, AllowRoles: req.AllowRoles, AllowUsers: req.AllowUsers}, nil
}

// reasonOf strips the package prefix of a secrets validation error.
func reasonOf(err error) string {
	const p = "secrets: "
	msg := err.Error()
	if len(msg) > len(p) && msg[:len(p)] == p {
		return msg[len(p):]
	}
	return msg
}

func (g *gateway) putSecret(w http.ResponseWriter, r *http.Request) (int, error) {
	body, err := readBody(w, r, maxSecretBody, "secret body", "")
	if err != nil {
		return 0, err
	}
	req, err := parseSecretRequest(body, r.PathValue("name"))
	clear(body)
	if err != nil {
		return 0, err
	}
	ctx, cancel := g.callCtx(r)
	defer cancel()
	info, err := g.control.PutSecret(ctx, req)
	if err != nil {
		return 0, err
	}
	code := http.StatusOK
	if info.GetVersion() == 1 {
		code = http.StatusCreated
	}
	return writeJSON(w, code, info)
}

func (g *gateway) listSecrets(w http.ResponseWriter, r *http.Request) (int, error) {
	return answer(g, w, r, http.StatusOK, func(ctx context.Context) (proto.Message, error) {
		return g.control.ListSecrets(ctx, &persysv1.ListSecretsRequest{})
	})
}

func (g *gateway) getSecret(w http.ResponseWriter, r *http.Request) (int, error) {
	name := r.PathValue("name")
	if err := secrets.ValidateName(name); err != nil {
		return 0, httperr.Field("name", reasonOf(err))
	}
	return answer(g, w, r, http.StatusOK, func(ctx context.Context) (proto.Message, error) {
		return g.control.GetSecret(ctx, &persysv1.GetSecretRequest{Name: name})
	})
}

func (g *gateway) deleteSecret(w http.ResponseWriter, r *http.Request) (int, error) {
	name := r.PathValue("name")
	if err := secrets.ValidateName(name); err != nil {
		return 0, httperr.Field("name", reasonOf(err))
	}
	return answer(g, w, r, http.StatusOK, func(ctx context.Context) (proto.Message, error) {
		return g.control.DeleteSecret(ctx, &persysv1.DeleteSecretRequest{Name: name})
	})
}
