package gateway_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"regexp"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/persys-dev/compute/api/persys/contract"
	persysv1 "github.com/persys-dev/compute/api/persys/v1"
	"github.com/persys-dev/compute/api/persys/v1/persysv1grpc"
)

// browserClient trusts the cluster CA, presents no certificate and
// follows no redirects: a browser's view, cookies handled by hand.
func browserClient(t *testing.T) *http.Client {
	t.Helper()
	pem, err := os.ReadFile(shared.Bundle.Admin.CA)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(pem)
	tr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr, Timeout: 30 * time.Second,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
}

type uiRequest struct {
	method, path, body   string
	cookie, csrf, bearer string
	// at is the gateway's base URL; "" means the shared gateway.
	at string
}

func uiDo(t *testing.T, c *http.Client, r uiRequest) (*http.Response, string) {
	t.Helper()
	base := r.at
	if base == "" {
		base = sharedGW.Endpoint
	}
	req, err := http.NewRequest(r.method, base+r.path, strings.NewReader(r.body))
	if err != nil {
		t.Fatal(err)
	}
	if r.cookie != "" {
		req.AddCookie(&http.Cookie{Name: "__Host-persys_session", Value: r.cookie})
	}
	if r.csrf != "" {
		req.Header.Set("X-CSRF-Token", r.csrf)
	}
	if r.bearer != "" {
		req.Header.Set("Authorization", "Bearer "+r.bearer)
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", r.method, r.path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, string(b)
}

// newToken creates an API token through the gateway (admin certificate).
func newToken(t *testing.T, user, role string) (token, id string) {
	t.Helper()
	code, body := call(t, httpClient(t, shared.Bundle.Admin), "POST", sharedGW.Endpoint+"/v1/tokens",
		[]byte(`{"user":"`+user+`","role":"`+role+`"}`))
	if code != http.StatusCreated {
		t.Fatalf("create token: %d %s", code, body)
	}
	var out struct {
		Token string `json:"token"`
		Info  struct {
			ID string `json:"id"`
		} `json:"info"`
	}
	if err := json.Unmarshal(body, &out); err != nil || out.Token == "" {
		t.Fatalf("create token: %v %s", err, body)
	}
	return out.Token, out.Info.ID
}

var csrfMeta = regexp.MustCompile(`<meta name="csrf-token" content="([^"]*)">`)

// uiLogin exchanges token for a session and returns its cookie and the
// CSRF token the workloads page carries.
func uiLogin(t *testing.T, c *http.Client, token string) (cookie, csrf string) {
	t.Helper()
	return uiLoginAt(t, c, "", token)
}

// uiLoginAt is uiLogin through the gateway at base.
func uiLoginAt(t *testing.T, c *http.Client, base, token string) (cookie, csrf string) {
	t.Helper()
	resp, body := uiDo(t, c, uiRequest{method: "POST", path: "/ui/login", bearer: token, at: base})
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("login: %d %s", resp.StatusCode, body)
	}
	for _, ck := range resp.Cookies() {
		if ck.Name == "__Host-persys_session" {
			cookie = ck.Value
			if !ck.HttpOnly || !ck.Secure || ck.SameSite != http.SameSiteStrictMode || ck.Path != "/" || ck.MaxAge <= 0 || ck.MaxAge > 1800 {
				t.Errorf("session cookie %+v: want HttpOnly, Secure, SameSite=Strict, Path=/, Max-Age ≤ 30 min", ck)
			}
		}
	}
	if cookie == "" {
		t.Fatalf("login set no session cookie: %v", resp.Header["Set-Cookie"])
	}
	resp, body = uiDo(t, c, uiRequest{method: "GET", path: "/ui/workloads", cookie: cookie, at: base})
	m := csrfMeta.FindStringSubmatch(body)
	if resp.StatusCode != http.StatusOK || m == nil || m[1] == "" {
		t.Fatalf("workloads page: %d, csrf meta %v", resp.StatusCode, m)
	}
	return cookie, m[1]
}

func TestConsolePagesAndLogin(t *testing.T) {
	c := browserClient(t)
	// Without credentials a page sends the browser to the login page; the
	// login page and the assets are public.
	resp, _ := uiDo(t, c, uiRequest{method: "GET", path: "/ui/nodes"})
	if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != "/ui/login?next=%2Fui%2Fnodes" {
		t.Errorf("anonymous /ui/nodes: %d to %q, want 303 to the login page", resp.StatusCode, resp.Header.Get("Location"))
	}
	resp, body := uiDo(t, c, uiRequest{method: "GET", path: "/ui/login"})
	if resp.StatusCode != http.StatusOK || !strings.Contains(body, `id="token"`) || !strings.Contains(resp.Header.Get("Content-Security-Policy"), "script-src 'self'") {
		t.Errorf("login page: %d csp %q", resp.StatusCode, resp.Header.Get("Content-Security-Policy"))
	}
	for _, p := range []string{"/ui/static/console.js", "/ui/static/console.css"} {
		if resp, _ := uiDo(t, c, uiRequest{method: "GET", path: p}); resp.StatusCode != http.StatusOK {
			t.Errorf("%s: %d", p, resp.StatusCode)
		}
	}
	if resp, _ := uiDo(t, c, uiRequest{method: "GET", path: "/ui/static/nothing.js"}); resp.StatusCode != http.StatusNotFound {
		t.Errorf("missing asset: %d, want 404", resp.StatusCode)
	}
	// Bad logins: clear errors.
	for _, tc := range []struct {
		name, bearer string
		want         int
		msg          string
	}{
		{"no token", "", http.StatusUnauthorized, "authentication required"},
		{"unknown token", "psy_notatoken", http.StatusUnauthorized, "token"},
	} {
		resp, body := uiDo(t, c, uiRequest{method: "POST", path: "/ui/login", bearer: tc.bearer})
		if resp.StatusCode != tc.want || !strings.Contains(body, tc.msg) || len(resp.Cookies()) != 0 {
			t.Errorf("%s: %d %s, want %d naming %q and no cookie", tc.name, resp.StatusCode, body, tc.want, tc.msg)
		}
	}
	code, body2 := call(t, httpClient(t, shared.Bundle.Admin), "POST", sharedGW.Endpoint+"/ui/login", nil)
	if code != http.StatusBadRequest || !strings.Contains(string(body2), "client certificate needs no login") {
		t.Errorf("login with a certificate: %d %s, want 400", code, body2)
	}
	// A certificate opens the pages without a login.
	code, body2 = call(t, httpClient(t, shared.Bundle.Admin), "GET", sharedGW.Endpoint+"/ui/workloads", nil)
	if code != http.StatusOK || !strings.Contains(string(body2), `id="apply-btn"`) {
		t.Errorf("certificate admin /ui/workloads: %d", code)
	}
}

func TestConsoleSessionCSRFAndRoles(t *testing.T) {
	c := browserClient(t)
	adminTok, _ := newToken(t, "ui-admin", "admin")
	viewerTok, viewerID := newToken(t, "ui-viewer", "viewer")
	cookie, csrf := uiLogin(t, c, adminTok)
	m := workload("ui-session")

	// A state-changing request of a cookie session needs its CSRF token.
	for _, bad := range []string{"", "forged"} {
		resp, body := uiDo(t, c, uiRequest{method: "POST", path: "/v1/manifests", body: m, cookie: cookie, csrf: bad})
		if resp.StatusCode != http.StatusForbidden || !strings.Contains(body, "X-CSRF-Token") {
			t.Errorf("POST with CSRF %q: %d %s, want 403 naming X-CSRF-Token", bad, resp.StatusCode, body)
		}
	}
	resp, body := uiDo(t, c, uiRequest{method: "POST", path: "/v1/manifests", body: m, cookie: cookie, csrf: csrf})
	if resp.StatusCode != http.StatusOK || !strings.Contains(body, `"result":"created"`) {
		t.Fatalf("POST with the session's CSRF token: %d %s", resp.StatusCode, body)
	}
	// Reads need none.
	if resp, body := uiDo(t, c, uiRequest{method: "GET", path: "/v1/workloads/ui-session", cookie: cookie}); resp.StatusCode != http.StatusOK {
		t.Errorf("GET with the session: %d %s", resp.StatusCode, body)
	}

	// A viewer's session: no action buttons, and every action 403.
	vcookie, vcsrf := uiLogin(t, c, viewerTok)
	_, page := uiDo(t, c, uiRequest{method: "GET", path: "/ui/workloads/ui-session", cookie: vcookie})
	for _, b := range []string{`id="apply-btn"`, `id="delete-btn"`, `id="retry-btn"`, `data-write-workloads="true"`} {
		if strings.Contains(page, b) {
			t.Errorf("viewer page holds %s", b)
		}
	}
	for _, r := range []uiRequest{
		{method: "DELETE", path: "/v1/workloads/ui-session"},
		{method: "POST", path: "/v1/workloads/ui-session/retry"},
		{method: "POST", path: "/v1/manifests", body: m},
		{method: "POST", path: "/v1/nodes/node-1/cordon"},
	} {
		r.cookie, r.csrf = vcookie, vcsrf
		if resp, body := uiDo(t, c, r); resp.StatusCode != http.StatusForbidden || !strings.Contains(body, "permission denied") {
			t.Errorf("viewer %s %s: %d %s, want 403 permission denied", r.method, r.path, resp.StatusCode, body)
		}
	}

	// Revoking the token ends its sessions.
	code, rb := call(t, httpClient(t, shared.Bundle.Admin), "DELETE", sharedGW.Endpoint+"/v1/tokens/"+viewerID, nil)
	if code >= 300 {
		t.Fatalf("revoke: %d %s", code, rb)
	}
	if resp, body := uiDo(t, c, uiRequest{method: "GET", path: "/v1/workloads", cookie: vcookie}); resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("session of a revoked token: %d %s, want 401", resp.StatusCode, body)
	}

	// Logout needs the CSRF token, ends the session server-side and
	// clears the cookie.
	if resp, _ := uiDo(t, c, uiRequest{method: "POST", path: "/ui/logout", cookie: cookie}); resp.StatusCode != http.StatusForbidden {
		t.Errorf("logout without CSRF: %d, want 403", resp.StatusCode)
	}
	resp, _ = uiDo(t, c, uiRequest{method: "DELETE", path: "/v1/workloads/ui-session", cookie: cookie, csrf: csrf})
	if resp.StatusCode >= 300 {
		t.Errorf("delete: %d", resp.StatusCode)
	}
	resp, _ = uiDo(t, c, uiRequest{method: "POST", path: "/ui/logout", cookie: cookie, csrf: csrf})
	if resp.StatusCode != http.StatusOK || len(resp.Cookies()) != 1 || resp.Cookies()[0].MaxAge >= 0 {
		t.Errorf("logout: %d, cookies %v: want 200 and the cookie deleted", resp.StatusCode, resp.Cookies())
	}
	if resp, body := uiDo(t, c, uiRequest{method: "GET", path: "/v1/workloads", cookie: cookie}); resp.StatusCode != http.StatusUnauthorized || !strings.Contains(body, "log in again") {
		t.Errorf("cookie after logout: %d %s, want 401", resp.StatusCode, body)
	}
	if resp, _ := uiDo(t, c, uiRequest{method: "GET", path: "/ui/", cookie: cookie}); resp.StatusCode != http.StatusSeeOther {
		t.Errorf("page with the cookie after logout: %d, want 303 to login", resp.StatusCode)
	}
}

// A session made through one gateway works through another that never saw
// the login (as behind one address, or after a restart), CSRF included;
// a logout on one ends it on all; revoking the token a session was made
// with ends the session.
func TestConsoleSessionAcrossGateways(t *testing.T) {
	c := browserClient(t)
	gwA := shared.StartGateway(t, nil)
	gwB := shared.StartGateway(t, nil)
	tok, tokID := newToken(t, "ui-multi", "operator")
	cookie, csrf := uiLoginAt(t, c, gwA.Endpoint, tok)
	if cookie == tok {
		t.Fatal("the session cookie is the login token itself; want a session token of its own")
	}
	// Started after the login: a gateway that restarted.
	gwC := shared.StartGateway(t, nil)
	m := workload("ui-multi")
	for _, gw := range []string{gwB.Endpoint, gwC.Endpoint} {
		resp, body := uiDo(t, c, uiRequest{method: "GET", path: "/ui/workloads", cookie: cookie, at: gw})
		if mm := csrfMeta.FindStringSubmatch(body); resp.StatusCode != http.StatusOK || mm == nil || mm[1] != csrf {
			t.Fatalf("%s: page %d, csrf %v; want 200 and the CSRF token gateway A gave", gw, resp.StatusCode, mm)
		}
		if resp, body := uiDo(t, c, uiRequest{method: "POST", path: "/v1/manifests", body: m, cookie: cookie, at: gw}); resp.StatusCode != http.StatusForbidden {
			t.Errorf("%s: POST without CSRF: %d %s, want 403", gw, resp.StatusCode, body)
		}
	}
	resp, body := uiDo(t, c, uiRequest{method: "POST", path: "/v1/manifests", body: m, cookie: cookie, csrf: csrf, at: gwB.Endpoint})
	if resp.StatusCode != http.StatusOK || !strings.Contains(body, `"result":"created"`) {
		t.Fatalf("POST through gateway B with A's session: %d %s", resp.StatusCode, body)
	}
	resp, body = uiDo(t, c, uiRequest{method: "DELETE", path: "/v1/workloads/ui-multi", cookie: cookie, csrf: csrf, at: gwC.Endpoint})
	if resp.StatusCode >= 300 {
		t.Fatalf("DELETE through gateway C: %d %s", resp.StatusCode, body)
	}
	// The session token is listed as a console session of the login token.
	code, list := call(t, httpClient(t, shared.Bundle.Admin), "GET", sharedGW.Endpoint+"/v1/tokens", nil)
	if code != http.StatusOK || !strings.Contains(string(list), `"createdBy":"console-session:`+tokID+`"`) {
		t.Errorf("token list %d %s: want a token created by console-session:%s", code, list, tokID)
	}

	// Logout on B: refused afterwards on A, B and C, at once.
	resp, _ = uiDo(t, c, uiRequest{method: "POST", path: "/ui/logout", cookie: cookie, csrf: csrf, at: gwB.Endpoint})
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("logout on B: %d", resp.StatusCode)
	}
	for _, gw := range []string{gwA.Endpoint, gwB.Endpoint, gwC.Endpoint} {
		if resp, body := uiDo(t, c, uiRequest{method: "GET", path: "/v1/workloads", cookie: cookie, at: gw}); resp.StatusCode != http.StatusUnauthorized || !strings.Contains(body, "log in again") {
			t.Errorf("%s after logout on B: %d %s, want 401", gw, resp.StatusCode, body)
		}
	}
	// The login token itself still works: a logout ends the session only.
	if resp, body := uiDo(t, c, uiRequest{method: "GET", path: "/v1/workloads", bearer: tok, at: gwA.Endpoint}); resp.StatusCode != http.StatusOK {
		t.Errorf("login token after logout: %d %s", resp.StatusCode, body)
	}

	// Revoking the login token ends the sessions made with it.
	cookie2, _ := uiLoginAt(t, c, gwA.Endpoint, tok)
	if code, rb := call(t, httpClient(t, shared.Bundle.Admin), "DELETE", sharedGW.Endpoint+"/v1/tokens/"+tokID, nil); code >= 300 {
		t.Fatalf("revoke: %d %s", code, rb)
	}
	if resp, body := uiDo(t, c, uiRequest{method: "GET", path: "/v1/workloads", cookie: cookie2, at: gwB.Endpoint}); resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("session of a revoked login token: %d %s, want 401", resp.StatusCode, body)
	}
	// A session token cannot log in again (sessions do not extend themselves).
	viewerTok, _ := newToken(t, "ui-multi-viewer", "viewer")
	vcookie, _ := uiLoginAt(t, c, gwA.Endpoint, viewerTok)
	if resp, body := uiDo(t, c, uiRequest{method: "POST", path: "/ui/login", bearer: vcookie, at: gwA.Endpoint}); resp.StatusCode != http.StatusForbidden || !strings.Contains(body, "itself a console session") {
		t.Errorf("login with a session token: %d %s, want 403", resp.StatusCode, body)
	}
}

// A browser presents its certificate to any site: a state-changing request
// that comes from another site's page is refused, whatever it carries.
func TestConsoleCrossSiteRefused(t *testing.T) {
	c := httpClient(t, shared.Bundle.Admin)
	for _, h := range []struct{ name, value string }{
		{"Sec-Fetch-Site", "cross-site"},
		{"Sec-Fetch-Site", "same-site"},
		{"Origin", "https://evil.example"},
	} {
		req, _ := http.NewRequest("POST", sharedGW.Endpoint+"/v1/manifests", strings.NewReader(workload("ui-cross")))
		req.Header.Set(h.name, h.value)
		resp, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusForbidden || !strings.Contains(string(b), "cross-site request refused") {
			t.Errorf("%s: %s: %d %s, want 403", h.name, h.value, resp.StatusCode, b)
		}
	}
	// The console's own page (same origin) is admitted.
	req, _ := http.NewRequest("GET", sharedGW.Endpoint+"/v1/workloads/ui-cross", nil)
	req.Header.Set("Sec-Fetch-Site", "cross-site") // a read is never refused for it
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNotFound {
		t.Errorf("cross-site GET: %d, want 404 (admitted, nothing applied)", resp.StatusCode)
	}
	u := strings.TrimPrefix(sharedGW.Endpoint, "https://")
	req, _ = http.NewRequest("POST", sharedGW.Endpoint+"/v1/workloads/ui-cross/retry", nil)
	req.Header.Set("Sec-Fetch-Site", "same-origin")
	req.Header.Set("Origin", "https://"+u)
	resp, err = c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNotFound {
		t.Errorf("same-origin POST: %d, want 404 (admitted; no such workload)", resp.StatusCode)
	}
}

// The scheduler's rules for console session tokens, asked directly as the
// gateway forwarding a user: a session only for the caller itself, with
// its own role, from its own live API token, for a short time; a logout
// revokes only a console session of the caller's own.
func TestConsoleSessionRulesOfScheduler(t *testing.T) {
	ctl := persysv1grpc.NewControlServiceClient(shared.Conn(t, shared.Addrs[0]))
	_, aliceID := newToken(t, "rules-alice", "viewer")
	_, bobID := newToken(t, "rules-bob", "operator")
	as := func(user, role string, kv ...string) context.Context {
		md := metadata.Pairs(contract.MetadataUser, user, contract.MetadataRole, role,
			contract.MetadataTokenPurpose, contract.TokenPurposeConsoleSession)
		for i := 0; i+1 < len(kv); i += 2 {
			md.Append(kv[i], kv[i+1])
		}
		ctx, cancel := context.WithTimeout(metadata.NewOutgoingContext(context.Background(), md), 30*time.Second)
		t.Cleanup(cancel)
		return ctx
	}
	login := func(id string) []string { return []string{contract.MetadataLoginToken, id} }
	// A valid session of alice's, to revoke below.
	ok, err := ctl.CreateAPIToken(as("rules-alice", "viewer", login(aliceID)...), &persysv1.CreateAPITokenRequest{User: "rules-alice", Role: "viewer", TtlSeconds: 600})
	if err != nil {
		t.Fatalf("alice's session: %v", err)
	}
	for _, tc := range []struct {
		name       string
		ctx        context.Context
		user, role string
		ttl        int64
		code       codes.Code
		msg        string
	}{
		{"for another user", as("rules-alice", "viewer", login(aliceID)...), "rules-bob", "viewer", 600, codes.PermissionDenied, "user:"},
		{"a wider role", as("rules-alice", "viewer", login(aliceID)...), "rules-alice", "admin", 600, codes.PermissionDenied, "role:"},
		{"no login token", as("rules-alice", "viewer"), "rules-alice", "viewer", 600, codes.PermissionDenied, "none was named"},
		{"another user's login token", as("rules-alice", "viewer", login(bobID)...), "rules-alice", "viewer", 600, codes.PermissionDenied, "not a valid token"},
		{"a session as login token", as("rules-alice", "viewer", login(ok.GetInfo().GetId())...), "rules-alice", "viewer", 600, codes.PermissionDenied, "itself a console session"},
		{"longer than an hour", as("rules-alice", "viewer", login(aliceID)...), "rules-alice", "viewer", 3601, codes.InvalidArgument, "ttl_seconds"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ctl.CreateAPIToken(tc.ctx, &persysv1.CreateAPITokenRequest{User: tc.user, Role: tc.role, TtlSeconds: tc.ttl})
			if status.Code(err) != tc.code || !strings.Contains(status.Convert(err).Message(), tc.msg) {
				t.Fatalf("err %v, want %s saying %q", err, tc.code, tc.msg)
			}
		})
	}
	// A session never outlives the token it was made from.
	code, body := call(t, httpClient(t, shared.Bundle.Admin), "POST", sharedGW.Endpoint+"/v1/tokens", []byte(`{"user":"rules-alice","role":"viewer","ttlSeconds":120}`))
	var short struct {
		Info struct {
			ID        string    `json:"id"`
			ExpiresAt time.Time `json:"expiresAt"`
		} `json:"info"`
	}
	if err := json.Unmarshal(body, &short); code != http.StatusCreated || err != nil {
		t.Fatalf("short token: %d %s %v", code, body, err)
	}
	sess, err := ctl.CreateAPIToken(as("rules-alice", "viewer", login(short.Info.ID)...), &persysv1.CreateAPITokenRequest{User: "rules-alice", Role: "viewer", TtlSeconds: 1800})
	if err != nil {
		t.Fatal(err)
	}
	if got := sess.GetInfo().GetExpiresAt().AsTime(); got.After(short.Info.ExpiresAt) {
		t.Errorf("session expires %s, after its login token (%s)", got, short.Info.ExpiresAt)
	}
	// Without the console mark, a viewer creates no token at all.
	md := metadata.Pairs(contract.MetadataUser, "rules-alice", contract.MetadataRole, "viewer")
	if _, err := ctl.CreateAPIToken(metadata.NewOutgoingContext(t.Context(), md), &persysv1.CreateAPITokenRequest{User: "rules-alice", Role: "viewer"}); status.Code(err) != codes.PermissionDenied {
		t.Errorf("unmarked token of a viewer: %v, want PermissionDenied", err)
	}
	// Logout: bob cannot end alice's session, nor alice revoke her own
	// login token through it; alice ends her session.
	if _, err := ctl.RevokeAPIToken(as("rules-bob", "operator"), &persysv1.RevokeAPITokenRequest{Id: ok.GetInfo().GetId()}); status.Code(err) != codes.PermissionDenied {
		t.Errorf("bob revoking alice's session: %v, want PermissionDenied", err)
	}
	if _, err := ctl.RevokeAPIToken(as("rules-alice", "viewer"), &persysv1.RevokeAPITokenRequest{Id: aliceID}); status.Code(err) != codes.PermissionDenied || !strings.Contains(err.Error(), "not a console session") {
		t.Errorf("alice revoking her login token as a logout: %v, want PermissionDenied", err)
	}
	if _, err := ctl.RevokeAPIToken(as("rules-alice", "viewer"), &persysv1.RevokeAPITokenRequest{Id: ok.GetInfo().GetId()}); err != nil {
		t.Errorf("alice ending her session: %v", err)
	}
}
