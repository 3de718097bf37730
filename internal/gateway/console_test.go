package gateway_test

import (
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
}

func uiDo(t *testing.T, c *http.Client, r uiRequest) (*http.Response, string) {
	t.Helper()
	req, err := http.NewRequest(r.method, sharedGW.Endpoint+r.path, strings.NewReader(r.body))
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
	resp, body := uiDo(t, c, uiRequest{method: "POST", path: "/ui/login", bearer: token})
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
	resp, body = uiDo(t, c, uiRequest{method: "GET", path: "/ui/workloads", cookie: cookie})
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
