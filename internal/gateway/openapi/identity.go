package openapi

import (
	"reflect"

	"google.golang.org/protobuf/reflect/protoreflect"

	persysv1 "github.com/persys-dev/compute/api/persys/v1"
)

// addIdentity documents the identity routes and the events' type
// filter.
func addIdentity(paths, schemas obj, bodies Bodies) {
	admin := func(r obj) obj {
		r["401"] = errResponse("No valid identity: no client certificate and no valid API token.")
		r["403"] = errResponse("The caller's role lacks the permission (admin).")
		return r
	}
	paths["/v1/tokens"] = obj{
		"post": op("createAPIToken", "Create an API token for a user with a role (admin; permission tokens.write). The token is in the answer once and never again; only its SHA-256 is stored.", nil,
			obj{"required": true, "content": jsonContent(ref("CreateTokenBody"))},
			withErrors(admin(obj{"201": response("The token (shown once) and its info.", ref("CreateAPITokenResponse"))}), 400, 413)),
		"get": op("listAPITokens", "List API tokens: id, user, role, expiry, revoked; never the token (admin; permission tokens.read).", nil, nil,
			withErrors(admin(obj{"200": response("The tokens.", ref("ListAPITokensResponse"))}))),
	}
	paths["/v1/tokens/{id}"] = obj{
		"delete": op("revokeAPIToken", "Revoke an API token at once (admin; permission tokens.write). Other gateways may accept it for up to their token cache time (10 s).",
			[]obj{pathParam("id", "Token id (the part after psy_).")}, nil,
			withErrors(admin(obj{"200": response("Revoked.", ref("RevokeAPITokenResponse"))}), 400, 404)),
	}
	paths["/v1/users/{name}/certificate"] = obj{
		"post": op("issueUserCertificate", "Sign a user's certificate request with a role (admin; permission users.write). The key never leaves the user.",
			[]obj{pathParam("name", "User name (the certificate's common name).")},
			obj{"required": true, "content": jsonContent(ref("IssueUserCertificateBody"))},
			withErrors(admin(obj{"201": response("The certificate and the CA bundle.", ref("IssueUserCertificateResponse"))}), 400, 413)),
	}
	paths["/v1/whoami"] = obj{
		"get": op("whoami", "The caller's identity as the gateway sees it.", nil, nil,
			withErrors(obj{"200": response("The caller.", ref("WhoAmI"))})),
	}
	if ev, ok := paths["/v1/events"].(obj); ok {
		if get, ok := ev["get"].(obj); ok {
			params, _ := get["parameters"].([]obj)
			get["parameters"] = append(params, queryParam("type", "Only events of this type, compared without regard to case (Audit: the audit log).", obj{"type": "string", "example": "Audit"}))
		}
	}
	for _, m := range []protoreflect.ProtoMessage{
		&persysv1.CreateAPITokenResponse{}, &persysv1.ListAPITokensResponse{}, &persysv1.RevokeAPITokenResponse{},
		&persysv1.IssueUserCertificateResponse{},
	} {
		addMessageSchema(schemas, m.ProtoReflect().Descriptor())
	}
	schemas["CreateTokenBody"] = goSchema(reflect.TypeOf(bodies.CreateToken))
	schemas["IssueUserCertificateBody"] = goSchema(reflect.TypeOf(bodies.IssueUserCertificate))
	schemas["WhoAmI"] = goSchema(reflect.TypeOf(bodies.WhoAmI))
}
