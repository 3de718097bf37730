package scheduler_test

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"log/slog"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	"github.com/persys-dev/compute/api/persys/contract"
	persysv1 "github.com/persys-dev/compute/api/persys/v1"
	"github.com/persys-dev/compute/api/persys/v1/persysv1grpc"
	"github.com/persys-dev/compute/internal/cli"
	"github.com/persys-dev/compute/internal/client"
	"github.com/persys-dev/compute/internal/gateway"
	"github.com/persys-dev/compute/internal/identity"
	"github.com/persys-dev/compute/internal/pki"
	"github.com/persys-dev/compute/internal/scheduler"
	"github.com/persys-dev/compute/internal/store/storetest"
)

// usrBuffer is a log sink safe for concurrent writers.
type usrBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *usrBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *usrBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// usrPoll checks cond every 50 ms until it holds or timeout passes.
func usrPoll(t *testing.T, what string, timeout time.Duration, cond func() (bool, string)) {
	t.Helper()
	deadline := time.After(timeout)
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		ok, detail := cond()
		if ok {
			return
		}
		select {
		case <-deadline:
			t.Fatalf("timed out after %s waiting for %s; last seen: %s", timeout, what, detail)
		case <-tick.C:
		}
	}
}

func usrCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// usersEnv is a scheduler over embedded etcd with a real gateway in front,
// both over mTLS with certificates of one CA; the gateway admits clients
// without a certificate (API tokens), as `persys gateway` does.
type usersEnv struct {
	t        *testing.T
	bundle   *pki.Bundle
	ca       *pki.CA
	etcd     *clientv3.Client
	prefix   string
	logs     *usrBuffer
	offset   atomic.Int64 // added to the scheduler's clock
	endpoint string
	schedRPC string
	gwReg    *prometheus.Registry
	// revs is the gateway's revocation checker.
	revs *pki.RevocationSet
}

func newUsersEnv(t *testing.T) *usersEnv {
	t.Helper()
	b, err := pki.Bootstrap(t.TempDir(), nil, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	ca, err := pki.LoadCA(b.Dir)
	if err != nil {
		t.Fatal(err)
	}
	st, etcd := storetest.New(t)
	e := &usersEnv{t: t, bundle: b, ca: ca, etcd: etcd, prefix: st.Prefix(), logs: &usrBuffer{}, revs: pki.NewRevocationSet()}
	log := slog.New(slog.NewJSONHandler(e.logs, &slog.HandlerOptions{Level: slog.LevelDebug}))

	s, err := scheduler.New(scheduler.Config{
		Store:          st,
		Logger:         log.With("component", "scheduler"),
		Registry:       prometheus.NewRegistry(),
		ResyncInterval: 10 * time.Minute,
		AuditRetention: 48 * time.Hour,
		Now:            func() time.Time { return time.Now().Add(time.Duration(e.offset.Load())) },
	})
	if err != nil {
		t.Fatal(err)
	}
	s.SetIdentity(scheduler.IdentityConfig{CADir: b.Dir})
	schedTLS, err := pki.ServerTLS(b.Scheduler)
	if err != nil {
		t.Fatal(err)
	}
	sln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	e.schedRPC = sln.Addr().String()

	gwClientTLS, err := pki.ClientTLS(b.Gateway, "")
	if err != nil {
		t.Fatal(err)
	}
	conn, err := grpc.NewClient(e.schedRPC, grpc.WithTransportCredentials(credentials.NewTLS(gwClientTLS)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	e.gwReg = prometheus.NewRegistry()
	h := gateway.New(gateway.Config{
		Control:     persysv1grpc.NewControlServiceClient(conn),
		Logger:      log.With("component", "gateway"),
		Registry:    e.gwReg,
		Revocations: e.revs,
	})
	gwTLS, err := pki.ServerTLS(b.Gateway)
	if err != nil {
		t.Fatal(err)
	}
	gwTLS.ClientAuth = tls.VerifyClientCertIfGiven
	gln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	e.endpoint = "https://" + gln.Addr().String()

	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	errs := make(chan error, 3)
	run := func(f func() error) {
		wg.Add(1)
		go func() { defer wg.Done(); errs <- f() }()
	}
	run(func() error { return s.Run(ctx) })
	run(func() error { return scheduler.Serve(ctx, sln, s, schedTLS) })
	run(func() error { return gateway.Serve(ctx, gln, h, gwTLS) })
	t.Cleanup(func() {
		cancel()
		wg.Wait()
		close(errs)
		for err := range errs {
			if err != nil {
				t.Errorf("serve: %v", err)
			}
		}
	})
	usrPoll(t, "scheduler ready", 30*time.Second, func() (bool, string) {
		if err := s.Ready(); err != nil {
			return false, err.Error()
		}
		return true, ""
	})
	return e
}

// issue writes a certificate for name with role and returns its files.
func (e *usersEnv) issue(name string, role pki.Role) pki.Files {
	e.t.Helper()
	certPEM, keyPEM, err := e.ca.Issue(pki.IssueRequest{CommonName: name, Role: role})
	if err != nil {
		e.t.Fatal(err)
	}
	if err := pki.WriteIdentity(e.bundle.Dir, name, certPEM, keyPEM); err != nil {
		e.t.Fatal(err)
	}
	return pki.Files{CA: e.bundle.CA, Cert: e.bundle.Dir + "/" + name + ".crt", Key: e.bundle.Dir + "/" + name + ".key"}
}

// client returns an HTTPS client presenting f (no certificate when f is
// the zero value).
func (e *usersEnv) client(f pki.Files) *http.Client {
	e.t.Helper()
	var cfg *tls.Config
	if f.Cert == "" {
		pool := x509.NewCertPool()
		pool.AppendCertsFromPEM(e.ca.CertPEM)
		cfg = &tls.Config{MinVersion: tls.VersionTLS13, RootCAs: pool}
	} else {
		var err error
		if cfg, err = pki.ClientTLS(f, ""); err != nil {
			e.t.Fatal(err)
		}
	}
	tr := &http.Transport{TLSClientConfig: cfg}
	e.t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr, Timeout: 30 * time.Second}
}

type answer struct {
	code int
	body string
	msg  string
}

func (e *usersEnv) do(c *http.Client, token, method, path string, body string) answer {
	e.t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, e.endpoint+path, rd)
	if err != nil {
		e.t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := c.Do(req)
	if err != nil {
		e.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	a := answer{code: resp.StatusCode, body: string(b)}
	var eb gateway.ErrorBody
	if resp.StatusCode >= 400 && json.Unmarshal(b, &eb) == nil {
		a.msg = eb.Error.Message
	}
	return a
}

const usersManifest = `
apiVersion: persys/v1
kind: Workload
metadata:
  name: %s
spec:
  type: container
  container:
    image: example/web:1
  resources:
    cpu: 100m
    memory: 16Mi
`

func TestUsersTokensRolesAndAudit(t *testing.T) {
	e := newUsersEnv(t)
	admin := e.client(e.bundle.Admin)
	viewer := e.client(e.issue("vera", pki.RoleViewer))
	operator := e.client(e.issue("otto", pki.RoleOperator))
	anon := e.client(pki.Files{})

	mustCode := func(what string, a answer, code int, msg string) {
		t.Helper()
		if a.code != code || !strings.Contains(a.msg, msg) {
			t.Fatalf("%s: %d %q, want %d with %q\n%s", what, a.code, a.msg, code, msg, a.body)
		}
	}
	createToken := func(user, role string, ttl int64) (string, string) {
		t.Helper()
		a := e.do(admin, "", "POST", "/v1/tokens", fmt.Sprintf(`{"user":%q,"role":%q,"ttlSeconds":%d}`, user, role, ttl))
		mustCode("admin creates a token", a, http.StatusCreated, "")
		var resp persysv1.CreateAPITokenResponse
		if err := protoJSONUnmarshal([]byte(a.body), &resp); err != nil {
			t.Fatal(err)
		}
		id := resp.GetInfo().GetId()
		if id == "" || !strings.HasPrefix(resp.GetToken(), "psy_"+id+"_") || resp.GetInfo().GetUser() != user || resp.GetInfo().GetRole() != role {
			t.Fatalf("created token does not have the form psy_<id>_<secret>, or its info %v is wrong", resp.GetInfo())
		}
		return resp.GetToken(), id
	}

	// Roles by certificate.
	mustCode("viewer applies", e.do(viewer, "", "POST", "/v1/workloads", fmt.Sprintf(usersManifest, "web")),
		http.StatusForbidden, "permission denied: role viewer lacks workloads.write")
	mustCode("operator applies", e.do(operator, "", "POST", "/v1/workloads", fmt.Sprintf(usersManifest, "web")), http.StatusCreated, "")
	mustCode("viewer deletes", e.do(viewer, "", "DELETE", "/v1/workloads/web", ""),
		http.StatusForbidden, "permission denied: role viewer lacks workloads.write")
	mustCode("operator creates a token", e.do(operator, "", "POST", "/v1/tokens", `{"user":"ci","role":"admin"}`),
		http.StatusForbidden, "permission denied: role operator lacks tokens.write")
	mustCode("viewer reads", e.do(viewer, "", "GET", "/v1/workloads/web", ""), http.StatusOK, "")

	// No identity at all: only /healthz and /openapi.json answer.
	mustCode("anonymous health", e.do(anon, "", "GET", "/healthz", ""), http.StatusOK, "")
	mustCode("anonymous openapi", e.do(anon, "", "GET", "/openapi.json", ""), http.StatusOK, "")
	mustCode("anonymous read", e.do(anon, "", "GET", "/v1/workloads", ""), http.StatusUnauthorized, "authentication required")
	mustCode("anonymous apply", e.do(anon, "", "POST", "/v1/workloads", fmt.Sprintf(usersManifest, "anon")), http.StatusUnauthorized, "authentication required")

	// API tokens work for their role, from a client without a certificate.
	opTok, opID := createToken("ci", "operator", 3600)
	viewTok, _ := createToken("dash", "viewer", 0)
	mustCode("operator token applies", e.do(anon, opTok, "POST", "/v1/workloads", fmt.Sprintf(usersManifest, "api")), http.StatusCreated, "")
	mustCode("operator token reads", e.do(anon, opTok, "GET", "/v1/workloads/api", ""), http.StatusOK, "")
	mustCode("operator token creates a token", e.do(anon, opTok, "POST", "/v1/tokens", `{"user":"x","role":"admin"}`),
		http.StatusForbidden, "permission denied: role operator lacks tokens.write")
	mustCode("viewer token applies", e.do(anon, viewTok, "POST", "/v1/workloads", fmt.Sprintf(usersManifest, "v")),
		http.StatusForbidden, "permission denied: role viewer lacks workloads.write")
	who := e.do(anon, opTok, "GET", "/v1/whoami", "")
	if who.code != http.StatusOK || !strings.Contains(who.body, `"user":"ci"`) || !strings.Contains(who.body, `"auth":"token"`) {
		t.Fatalf("whoami with a token: %d %s", who.code, who.body)
	}
	// The workload's events name the token's user.
	evs := e.do(admin, "", "GET", "/v1/events?workload=api", "")
	if !strings.Contains(evs.body, "created by ci") {
		t.Fatalf("events of a workload applied with a token do not name its user: %s", evs.body)
	}

	// Bad tokens are 401 with a clear message.
	mustCode("malformed token", e.do(anon, "psy_nope", "GET", "/v1/workloads", ""), http.StatusUnauthorized, "api token is not valid")
	wrongSecret := opTok[:len(opTok)-4] + "0000"
	if wrongSecret == opTok {
		wrongSecret = opTok[:len(opTok)-4] + "1111"
	}
	mustCode("wrong secret", e.do(anon, wrongSecret, "GET", "/v1/workloads", ""), http.StatusUnauthorized, "api token is not valid")
	mustCode("not bearer", e.do(anon, "", "GET", "/v1/workloads", ""), http.StatusUnauthorized, "authentication required")

	// Revoked: refused at once, although the gateway had it cached.
	mustCode("admin revokes", e.do(admin, "", "DELETE", "/v1/tokens/"+opID, ""), http.StatusOK, "")
	mustCode("revoked token", e.do(anon, opTok, "POST", "/v1/workloads", fmt.Sprintf(usersManifest, "after-revoke")),
		http.StatusUnauthorized, "api token "+opID+" was revoked")
	mustCode("revoke unknown", e.do(admin, "", "DELETE", "/v1/tokens/000000000000", ""), http.StatusNotFound, "not found")

	// Expired: the scheduler's clock passes the expiry.
	expTok, expID := createToken("late", "operator", 60)
	e.offset.Store(int64(2 * time.Minute))
	mustCode("expired token", e.do(anon, expTok, "DELETE", "/v1/workloads/web", ""), http.StatusUnauthorized, "api token "+expID+" expired at")
	e.offset.Store(0)

	// Listing shows id, user, role and expiry, never a token.
	list := e.do(admin, "", "GET", "/v1/tokens", "")
	if list.code != http.StatusOK || !strings.Contains(list.body, opID) || !strings.Contains(list.body, `"user":"dash"`) ||
		!strings.Contains(list.body, `"expiresAt"`) || !strings.Contains(list.body, `"revoked":true`) {
		t.Fatalf("token list: %d %s", list.code, list.body)
	}
	checkTokenSecretsHidden(t, e, list.body, opTok, viewTok, expTok)

	// An expired user certificate is refused at the handshake.
	expired := e.expiredCert("old", pki.RoleAdmin)
	req, _ := http.NewRequest("GET", e.endpoint+"/v1/workloads", nil)
	if resp, err := (&http.Client{Transport: &http.Transport{TLSClientConfig: expired}, Timeout: 10 * time.Second}).Do(req); err == nil {
		resp.Body.Close()
		t.Fatalf("a client with an expired certificate got an answer %d", resp.StatusCode)
	}

	checkAuditTrail(t, e, admin, opID, opTok, viewTok, expTok)
}

// checkTokenSecretsHidden: the secret of none of toks is in the token
// list listBody, the logs or etcd.
func checkTokenSecretsHidden(t *testing.T, e *usersEnv, listBody string, toks ...string) {
	t.Helper()
	for _, tok := range toks {
		secret := tok[strings.LastIndex(tok, "_")+1:]
		if strings.Contains(listBody, secret) {
			t.Fatal("the token list holds a token's secret")
		}
		if strings.Contains(e.logs.String(), secret) {
			t.Fatal("the logs hold a token's secret")
		}
		// etcd holds no token in plaintext anywhere.
		raw, err := e.etcd.Get(usrCtx(t), e.prefix+"/", clientv3.WithPrefix())
		if err != nil {
			t.Fatal(err)
		}
		for _, kv := range raw.Kvs {
			if bytes.Contains(kv.Value, []byte(secret)) || bytes.Contains(kv.Key, []byte(secret)) {
				t.Fatalf("etcd key %s holds a token's secret", kv.Key)
			}
		}
	}
}

// checkAuditTrail: every change TestUsersTokensRolesAndAudit made or was
// refused is audited with who, what and the result, without a token's
// secret (toks) or a request body; reads are not audited.
func checkAuditTrail(t *testing.T, e *usersEnv, admin *http.Client, opID string, toks ...string) {
	t.Helper()
	// Every refusal of a change is in the audit log, with who, what and
	// the result; the log lists through the events API by type.
	want := []struct{ actor, action, result, via string }{
		{"vera", "POST /v1/workloads", "403 denied", "client certificate"},
		{"otto", "POST /v1/workloads", "201 allowed", "client certificate"},
		{"vera", "DELETE /v1/workloads/web", "403 denied", "client certificate"},
		{"otto", "POST /v1/tokens", "403 denied", "client certificate"},
		{"anonymous", "POST /v1/workloads", "401 denied", "no credentials"},
		{"ci", "POST /v1/workloads", "201 allowed", "api token " + opID},
		{"ci", "POST /v1/tokens", "403 denied", "api token " + opID},
		{"dash", "POST /v1/workloads", "403 denied", "api token"},
		{"admin", "DELETE /v1/tokens/" + opID, "200 allowed", "client certificate"},
		{"anonymous", "POST /v1/workloads", "401 denied", "was revoked"},
		{"anonymous", "DELETE /v1/workloads/web", "401 denied", "expired at"},
	}
	var audits []*persysv1.Event
	usrPoll(t, "audit events", 20*time.Second, func() (bool, string) {
		a := e.do(admin, "", "GET", "/v1/events?type=audit&limit=1000", "")
		if a.code != http.StatusOK {
			return false, a.body
		}
		var resp persysv1.ListEventsResponse
		if err := protoJSONUnmarshal([]byte(a.body), &resp); err != nil {
			return false, err.Error()
		}
		audits = resp.GetEvents()
		return len(audits) >= len(want), fmt.Sprintf("%d audit events", len(audits))
	})
	for _, w := range want {
		found := false
		for _, ev := range audits {
			if ev.GetType() == "Audit" && ev.GetActor() == w.actor && ev.GetAction() == w.action &&
				ev.GetResult() == w.result && strings.Contains(ev.GetMessage(), w.via) {
				found = true
				break
			}
		}
		if !found {
			t.Errorf("no audit event %+v among:\n%s", w, describeEvents(audits))
		}
	}
	for _, ev := range audits {
		for _, tok := range toks {
			if strings.Contains(ev.String(), tok[strings.LastIndex(tok, "_")+1:]) {
				t.Fatalf("audit event holds a token: %v", ev)
			}
		}
		if strings.Contains(ev.String(), "example/web") {
			t.Fatalf("audit event holds a request body: %v", ev)
		}
	}
	// Reads are not audited.
	for _, ev := range audits {
		if strings.HasPrefix(ev.GetAction(), "GET ") {
			t.Fatalf("a read was audited: %v", ev)
		}
	}
	// Ordinary listing without a type still shows ordinary events.
	if all := e.do(admin, "", "GET", "/v1/events?type=Created", ""); !strings.Contains(all.body, `"type":"Created"`) || strings.Contains(all.body, `"type":"Audit"`) {
		t.Fatalf("events of type Created: %s", all.body)
	}
}

func TestIssueUserCertificate(t *testing.T) {
	e := newUsersEnv(t)
	admin := e.client(e.bundle.Admin)
	operator := e.client(e.issue("otto", pki.RoleOperator))

	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	csrPEM, err := pki.NewCSR("dora", key)
	if err != nil {
		t.Fatal(err)
	}
	body := fmt.Sprintf(`{"role":"viewer","csrPem":%q,"ttlSeconds":3600}`, csrPEM)
	if a := e.do(operator, "", "POST", "/v1/users/dora/certificate", body); a.code != http.StatusForbidden || !strings.Contains(a.msg, "lacks users.write") {
		t.Fatalf("operator issues a certificate: %d %s", a.code, a.body)
	}
	bad := []struct{ name, path, body, field string }{
		{"bad role", "/v1/users/dora/certificate", fmt.Sprintf(`{"role":"agent","csrPem":%q}`, csrPEM), "role"},
		{"no csr", "/v1/users/dora/certificate", `{"role":"viewer"}`, "csrPem"},
		{"bad name", "/v1/users/-x/certificate", fmt.Sprintf(`{"role":"viewer","csrPem":%q}`, csrPEM), "name"},
		{"garbage csr", "/v1/users/dora/certificate", `{"role":"viewer","csrPem":"nope"}`, "csr_pem"},
		{"unknown field", "/v1/users/dora/certificate", `{"role":"viewer","csr":"x"}`, "unknown field"},
	}
	for _, tt := range bad {
		t.Run(tt.name, func(t *testing.T) {
			a := e.do(admin, "", "POST", tt.path, tt.body)
			if a.code != http.StatusBadRequest || !strings.Contains(a.msg, tt.field) {
				t.Fatalf("%d %q, want 400 naming %s", a.code, a.msg, tt.field)
			}
		})
	}
	a := e.do(admin, "", "POST", "/v1/users/dora/certificate", body)
	if a.code != http.StatusCreated {
		t.Fatalf("admin issues a certificate: %d %s", a.code, a.body)
	}
	var resp persysv1.IssueUserCertificateResponse
	if err := protoJSONUnmarshal([]byte(a.body), &resp); err != nil {
		t.Fatal(err)
	}
	cert, err := tls.X509KeyPair(resp.GetCertificatePem(), mustKeyPEM(t, key))
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(resp.GetCaBundlePem())
	dora := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{MinVersion: tls.VersionTLS13, RootCAs: pool,
		Certificates: []tls.Certificate{cert}}}, Timeout: 10 * time.Second}
	who := e.do(dora, "", "GET", "/v1/whoami", "")
	if who.code != http.StatusOK || !strings.Contains(who.body, `"user":"dora"`) || !strings.Contains(who.body, `"role":"viewer"`) {
		t.Fatalf("whoami with the issued certificate: %d %s", who.code, who.body)
	}
	if a := e.do(dora, "", "DELETE", "/v1/workloads/x", ""); a.code != http.StatusForbidden {
		t.Fatalf("the issued viewer deletes: %d %s", a.code, a.body)
	}
}

// The scheduler checks the role the gateway forwards (a second lock), and
// refuses the gateway-only calls to users.
func TestSchedulerAdminCallsCheckForwardedRole(t *testing.T) {
	e := newUsersEnv(t)
	dial := func(f pki.Files) persysv1grpc.ControlServiceClient {
		cfg, err := pki.ClientTLS(f, "")
		if err != nil {
			t.Fatal(err)
		}
		conn, err := grpc.NewClient(e.schedRPC, grpc.WithTransportCredentials(credentials.NewTLS(cfg)))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = conn.Close() })
		return persysv1grpc.NewControlServiceClient(conn)
	}
	gw := dial(e.bundle.Gateway)
	as := func(role string) context.Context {
		return metadata.NewOutgoingContext(usrCtx(t), metadata.Pairs(contract.MetadataUser, "u", contract.MetadataRole, role))
	}
	req := &persysv1.CreateAPITokenRequest{User: "ci", Role: "viewer"}
	if _, err := gw.CreateAPIToken(as("operator"), req); status.Code(err) != codes.PermissionDenied {
		t.Fatalf("gateway for an operator: %v, want PermissionDenied", err)
	}
	resp, err := gw.CreateAPIToken(as("admin"), req)
	if err != nil {
		t.Fatalf("gateway for an admin: %v", err)
	}
	if resp.GetInfo().GetCreatedBy() != "u" {
		t.Fatalf("created_by %q, want the forwarded user", resp.GetInfo().GetCreatedBy())
	}
	// ListAPITokens never carries the token.
	list, err := dial(e.bundle.Admin).ListAPITokens(usrCtx(t), &persysv1.ListAPITokensRequest{})
	if err != nil {
		t.Fatal(err)
	}
	raw, _ := proto.Marshal(list)
	if secret := resp.GetToken()[strings.LastIndex(resp.GetToken(), "_")+1:]; bytes.Contains(raw, []byte(secret)) || len(list.GetTokens()) != 1 {
		t.Fatalf("ListAPITokens: %v", list)
	}
	viewer := dial(e.issue("vera", pki.RoleViewer))
	if _, err := viewer.AuthenticateToken(usrCtx(t), &persysv1.AuthenticateTokenRequest{Token: resp.GetToken()}); status.Code(err) != codes.PermissionDenied {
		t.Fatalf("a viewer's certificate calls AuthenticateToken: %v, want PermissionDenied", err)
	}
	if _, err := viewer.RecordAudit(usrCtx(t), &persysv1.RecordAuditRequest{Event: &persysv1.Event{Actor: "x", Action: "y", Result: "z"}}); status.Code(err) != codes.PermissionDenied {
		t.Fatalf("a viewer's certificate calls RecordAudit: %v, want PermissionDenied", err)
	}
	// RecordAudit validates the event, naming the field.
	if _, err := gw.RecordAudit(usrCtx(t), &persysv1.RecordAuditRequest{Event: &persysv1.Event{Action: "y", Result: "z"}}); status.Code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), "actor") {
		t.Fatalf("RecordAudit without an actor: %v", err)
	}
	bad := []struct {
		name string
		req  *persysv1.CreateAPITokenRequest
		want string
	}{
		{"no user", &persysv1.CreateAPITokenRequest{Role: "viewer"}, "user"},
		{"daemon role", &persysv1.CreateAPITokenRequest{User: "a", Role: "gateway"}, "role"},
		{"negative ttl", &persysv1.CreateAPITokenRequest{User: "a", Role: "viewer", TtlSeconds: -1}, "ttl_seconds"},
		{"ttl over a year", &persysv1.CreateAPITokenRequest{User: "a", Role: "viewer", TtlSeconds: 400 * 86400}, "ttl_seconds"},
	}
	for _, tt := range bad {
		t.Run(tt.name, func(t *testing.T) {
			_, err := gw.CreateAPIToken(as("admin"), tt.req)
			if status.Code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("%v, want InvalidArgument naming %s", err, tt.want)
			}
		})
	}
}

// expiredCert returns a client TLS config presenting a certificate of the
// cluster CA that expired an hour ago.
func (e *usersEnv) expiredCert(name string, role pki.Role) *tls.Config {
	e.t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		e.t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()),
		Subject:      pkix.Name{CommonName: name, Organization: []string{"Persys Compute"}, OrganizationalUnit: []string{string(role)}},
		NotBefore:    time.Now().Add(-48 * time.Hour),
		NotAfter:     time.Now().Add(-time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, e.ca.Cert, &key.PublicKey, e.ca.Key)
	if err != nil {
		e.t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(e.ca.Cert)
	return &tls.Config{MinVersion: tls.VersionTLS13, RootCAs: pool,
		Certificates: []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: key}}}
}

func mustKeyPEM(t *testing.T, key *ecdsa.PrivateKey) []byte {
	t.Helper()
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})
}

func describeEvents(evs []*persysv1.Event) string {
	var b strings.Builder
	for _, ev := range evs {
		fmt.Fprintf(&b, "  %s | %s | %s | %s\n", ev.GetActor(), ev.GetAction(), ev.GetResult(), ev.GetMessage())
	}
	return b.String()
}

func protoJSONUnmarshal(b []byte, m proto.Message) error {
	return contract.UnmarshalJSON(protojson.UnmarshalOptions{DiscardUnknown: true}, b, m)
}

// persysctl authenticates with a token from its config or $PERSYS_TOKEN,
// without a certificate; token create prints the token once and list never.
func TestPersysctlWithToken(t *testing.T) {
	e := newUsersEnv(t)
	dir := t.TempDir()
	writeCfg := func(name string, c *client.Config) string {
		p := filepath.Join(dir, name)
		if err := client.WriteConfig(p, c); err != nil {
			t.Fatal(err)
		}
		return p
	}
	ctl := func(cfg string, args ...string) (string, string, error) {
		var out, errb bytes.Buffer
		cmd := cli.NewRootCommand(cli.Streams{In: strings.NewReader(""), Out: &out, Err: &errb})
		cmd.SetArgs(append([]string{"--config", cfg}, args...))
		err := cmd.ExecuteContext(usrCtx(t))
		return out.String(), errb.String(), err
	}
	adminCfg := writeCfg("admin.yaml", &client.Config{Endpoint: e.endpoint, CA: e.bundle.CA, Cert: e.bundle.Admin.Cert, Key: e.bundle.Admin.Key})

	out, _, err := ctl(adminCfg, "token", "create", "--user", "robot", "--role", "operator", "--ttl", "1h")
	if err != nil {
		t.Fatalf("token create: %v\n%s", err, out)
	}
	var tok string
	for _, line := range strings.Split(out, "\n") {
		if v, ok := strings.CutPrefix(line, "Token:"); ok {
			tok = strings.TrimSpace(v)
		}
	}
	id, ok := identity.ParseAPITokenID(tok)
	if !ok || !strings.Contains(out, "not shown again") {
		t.Fatalf("token create printed no token:\n%s", out)
	}
	secret := tok[strings.LastIndex(tok, "_")+1:]

	// The token in the config file, no certificate.
	tokCfg := writeCfg("token.yaml", &client.Config{Endpoint: e.endpoint, CA: e.bundle.CA, Token: tok})
	if _, _, err := ctl(tokCfg, "apply", "-f", writeManifest(t, dir, "robo")); err != nil {
		t.Fatalf("apply with a token: %v", err)
	}
	if out, _, err := ctl(tokCfg, "get", "workloads"); err != nil || !strings.Contains(out, "robo") {
		t.Fatalf("get workloads with a token: %v\n%s", err, out)
	}
	if _, _, err := ctl(tokCfg, "token", "list"); err == nil || !strings.Contains(err.Error(), "lacks tokens.read") {
		t.Fatalf("token list as operator: %v", err)
	}

	// $PERSYS_TOKEN replaces the config's credentials.
	t.Setenv(client.EnvToken, tok)
	if _, _, err := ctl(adminCfg, "token", "list"); err == nil || !strings.Contains(err.Error(), "lacks tokens.read") {
		t.Fatalf("token list with $PERSYS_TOKEN of an operator: %v", err)
	}
	t.Setenv(client.EnvToken, "")

	out, _, err = ctl(adminCfg, "token", "list")
	if err != nil || !strings.Contains(out, id) || !strings.Contains(out, "robot") || !strings.Contains(out, "active") || strings.Contains(out, secret) {
		t.Fatalf("token list: %v\n%s", err, out)
	}
	if out, _, err := ctl(adminCfg, "token", "revoke", id); err != nil || !strings.Contains(out, "revoked") {
		t.Fatalf("token revoke: %v\n%s", err, out)
	}
	if _, _, err := ctl(tokCfg, "get", "workloads"); err == nil || !strings.Contains(err.Error(), "was revoked") {
		t.Fatalf("get workloads with a revoked token: %v", err)
	}
	out, _, err = ctl(adminCfg, "events", "--type", "audit")
	if err != nil || !strings.Contains(out, "ACTOR") || !strings.Contains(out, "robot") || !strings.Contains(out, "DELETE /v1/tokens/"+id) {
		t.Fatalf("events --type audit: %v\n%s", err, out)
	}

	persysctlIssuesUser(t, ctl, dir, adminCfg, tokCfg)
}

// persysctlRun runs persysctl with a config file and returns its output,
// its error output and its error.
type persysctlRun func(cfg string, args ...string) (string, string, error)

// persysctlIssuesUser: user issue makes the key here, the CA signs through
// the gateway, and the written config works with the new identity's role;
// tokCfg's revoked token issues nothing.
func persysctlIssuesUser(t *testing.T, ctl persysctlRun, dir, adminCfg, tokCfg string) {
	t.Helper()
	doraCfg := filepath.Join(dir, "dora.yaml")
	out, _, err := ctl(adminCfg, "user", "issue", "dora", "--role", "viewer", "--ttl", "24h", "--out", filepath.Join(dir, "dora"), "--out-config", doraCfg)
	if err != nil || !strings.Contains(out, `issued user "dora" (role viewer)`) {
		t.Fatalf("user issue: %v\n%s", err, out)
	}
	if out, _, err := ctl(doraCfg, "get", "workloads"); err != nil || !strings.Contains(out, "robo") {
		t.Fatalf("get workloads as the issued user: %v\n%s", err, out)
	}
	if _, _, err := ctl(doraCfg, "delete", "workload", "robo"); err == nil || !strings.Contains(err.Error(), "lacks workloads.write") {
		t.Fatalf("delete as the issued viewer: %v", err)
	}
	if _, _, err := ctl(tokCfg, "user", "issue", "mallory", "--role", "admin", "--out", filepath.Join(dir, "m")); err == nil {
		t.Fatal("a revoked token issued a user certificate")
	}
}

func writeManifest(t *testing.T, dir, name string) string {
	t.Helper()
	p := filepath.Join(dir, name+".yaml")
	if err := os.WriteFile(p, []byte(fmt.Sprintf(usersManifest, name)), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// A revoked user certificate is refused on every request, also on a
// connection opened before the revocation, and the refusal is audited.
func TestRevokedUserCertificateRefused(t *testing.T) {
	e := newUsersEnv(t)
	vera := e.client(e.issue("vera", pki.RoleOperator))
	if a := e.do(vera, "", "GET", "/v1/workloads", ""); a.code != http.StatusOK {
		t.Fatalf("before the revocation: %d %s", a.code, a.body)
	}
	e.revs.Add(pki.Revocation{User: "vera", At: time.Now().Add(time.Minute)})
	a := e.do(vera, "", "POST", "/v1/workloads", fmt.Sprintf(usersManifest, "late"))
	if a.code != http.StatusUnauthorized || !strings.Contains(a.msg, "is revoked") {
		t.Fatalf("after the revocation: %d %q", a.code, a.msg)
	}
	admin := e.client(e.bundle.Admin)
	usrPoll(t, "audit of the refusal", 20*time.Second, func() (bool, string) {
		l := e.do(admin, "", "GET", "/v1/events?type=Audit", "")
		return strings.Contains(l.body, `"actor":"vera"`) && strings.Contains(l.body, "401 denied"), l.body
	})
}
