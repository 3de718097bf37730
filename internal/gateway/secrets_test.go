package gateway_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/persys-dev/compute/internal/client"
	"github.com/persys-dev/compute/internal/pki"
	"github.com/persys-dev/compute/internal/secrets/secretstest"
)

// secretHTTP sends one request with cfg's identity and returns the status
// and body.
func secretHTTP(t *testing.T, cfg *client.Config, method, url, body string) (int, []byte) {
	t.Helper()
	tlsCfg, err := pki.ClientTLS(pki.Files{CA: cfg.CA, Cert: cfg.Cert, Key: cfg.Key}, "")
	if err != nil {
		t.Fatal(err)
	}
	hc := &http.Client{Transport: &http.Transport{TLSClientConfig: tlsCfg}, Timeout: 30 * time.Second}
	defer hc.CloseIdleConnections()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, url, rd)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := hc.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, b
}

func TestSecretRoutes(t *testing.T) {
	env := secretstest.Start(t)
	admin := env.Config
	const (
		textValue = "plain-text-secret-value-77"
		binValue  = "binary\x00secret\xffvalue-88"
	)
	b64 := base64.StdEncoding.EncodeToString([]byte(binValue))
	body := `{"name":"db","type":"opaque","stringData":{"password":"` + textValue + `"},"data":{"blob":"` + b64 + `"}}`
	code, out := secretHTTP(t, admin, "POST", env.Endpoint+"/v1/secrets", body)
	if code != http.StatusCreated {
		t.Fatalf("POST /v1/secrets = %d %s, want 201", code, out)
	}
	code, out = secretHTTP(t, admin, "POST", env.Endpoint+"/v1/secrets", body)
	if code != http.StatusOK || !bytes.Contains(out, []byte(`"version":"2"`)) {
		t.Fatalf("second POST = %d %s, want 200 with version 2", code, out)
	}
	code, out = secretHTTP(t, admin, "PUT", env.Endpoint+"/v1/secrets/db", `{"stringData":{"password":"`+textValue+`"},"data":{"blob":"`+b64+`"}}`)
	if code != http.StatusOK || !bytes.Contains(out, []byte(`"version":"3"`)) {
		t.Fatalf("PUT /v1/secrets/db = %d %s, want 200 with version 3", code, out)
	}
	if code, out = secretHTTP(t, admin, "PUT", env.Endpoint+"/v1/secrets/db", `{"name":"other","stringData":{"k":"v"}}`); code != http.StatusBadRequest {
		t.Fatalf("PUT with another name in the body = %d %s, want 400", code, out)
	}
	// The values were stored as given (opened with the scheduler's key).
	sealed, _, err := env.Store.GetSecret(context.Background(), "db")
	if err != nil {
		t.Fatal(err)
	}
	data, err := env.Keyring.Open(sealed)
	if err != nil || string(data["password"]) != textValue || string(data["blob"]) != binValue {
		t.Fatalf("stored values differ from those sent (err %v)", err)
	}

	leaks := [][]byte{[]byte(textValue), []byte(b64), []byte(binValue)}
	for _, path := range []string{"/v1/secrets", "/v1/secrets/db"} {
		code, out := secretHTTP(t, admin, "GET", env.Endpoint+path, "")
		if code != http.StatusOK || !bytes.Contains(out, []byte(`"blob"`)) || !bytes.Contains(out, []byte(`"password"`)) {
			t.Fatalf("GET %s = %d %s, want 200 with the key names", path, code, out)
		}
		for _, l := range leaks {
			if bytes.Contains(out, l) {
				t.Fatalf("GET %s returned a secret value", path)
			}
		}
	}

	checkSecretRoles(t, env, body, leaks)
	checkSecretBadInput(t, env, textValue)
	if code, out := secretHTTP(t, admin, "POST", env.Endpoint+"/v1/secrets",
		`{"name":"big","stringData":{"k":"`+strings.Repeat("x", 2<<20)+`"}}`); code != http.StatusRequestEntityTooLarge {
		t.Fatalf("POST of 2 MiB = %d %.200s, want 413", code, out)
	}

	if code, out := secretHTTP(t, admin, "DELETE", env.Endpoint+"/v1/secrets/db", ""); code != http.StatusOK {
		t.Fatalf("DELETE = %d %s, want 200", code, out)
	}
	if code, out := secretHTTP(t, admin, "GET", env.Endpoint+"/v1/secrets/db", ""); code != http.StatusNotFound {
		t.Fatalf("GET after DELETE = %d %s, want 404", code, out)
	}
	if code, out := secretHTTP(t, admin, "DELETE", env.Endpoint+"/v1/secrets/db", ""); code != http.StatusNotFound {
		t.Fatalf("second DELETE = %d %s, want 404", code, out)
	}

	logs := env.Logs()
	for _, l := range leaks {
		if bytes.Contains(logs, l) {
			t.Fatal("a log line of the scheduler or the gateway carries a secret value")
		}
	}
	if !bytes.Contains(logs, []byte("/v1/secrets")) {
		t.Fatal("the log capture saw no secret request: is it wired?")
	}
}

// checkSecretRoles checks that viewers and operators may not read, write or
// delete secrets, and hear no value in the refusal.
func checkSecretRoles(t *testing.T, env *secretstest.Env, body string, leaks [][]byte) {
	t.Helper()
	for _, role := range []pki.Role{pki.RoleViewer, pki.RoleOperator} {
		cfg := env.IssueUser(t, "user-"+string(role), role)
		for _, rq := range []struct{ method, path, body string }{
			{"GET", "/v1/secrets", ""},
			{"GET", "/v1/secrets/db", ""},
			{"POST", "/v1/secrets", body},
			{"PUT", "/v1/secrets/db", body},
			{"DELETE", "/v1/secrets/db", ""},
		} {
			code, out := secretHTTP(t, cfg, rq.method, env.Endpoint+rq.path, rq.body)
			if code != http.StatusForbidden {
				t.Errorf("%s %s as %s = %d %s, want 403", rq.method, rq.path, role, code, out)
			}
			for _, l := range leaks {
				if bytes.Contains(out, l) {
					t.Fatalf("%s %s as %s returned a secret value", rq.method, rq.path, role)
				}
			}
		}
	}

}

// checkSecretBadInput checks that bad input is a 400 naming the field,
// without the value.
func checkSecretBadInput(t *testing.T, env *secretstest.Env, textValue string) {
	t.Helper()
	admin := env.Config
	for _, tc := range []struct{ name, body, field string }{
		{"bad base64", `{"name":"x","data":{"k":"%%%not-base64-` + textValue + `"}}`, "data.k"},
		{"bad name", `{"name":"Bad_Name","stringData":{"k":"v"}}`, "name"},
		{"bad type", `{"name":"x","type":"tls","stringData":{"k":"v"}}`, "type"},
		{"missing registry keys", `{"name":"x","type":"registry","stringData":{"server":"r.local"}}`, "data"},
		{"key in both", `{"name":"x","data":{"k":"dg=="},"stringData":{"k":"v"}}`, "stringData.k"},
		{"no data", `{"name":"x"}`, "data"},
		{"unknown field", `{"name":"x","values":{"k":"v"}}`, ""},
		{"not json", `name: x`, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, out := secretHTTP(t, admin, "POST", env.Endpoint+"/v1/secrets", tc.body)
			if code != http.StatusBadRequest {
				t.Fatalf("POST = %d %s, want 400", code, out)
			}
			if tc.field != "" && !bytes.Contains(out, []byte(`"field":"`+tc.field+`"`)) {
				t.Fatalf("POST = %s, want field %q named", out, tc.field)
			}
			if bytes.Contains(out, []byte(textValue)) {
				t.Fatal("the error quotes a value")
			}
		})
	}
}
