package authn

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/persys-dev/compute/internal/gateway/console"
	"github.com/persys-dev/compute/internal/gateway/httperr"
)

// TestAuthenticate covers what needs no client certificate (the gateway's
// tests present real ones over mutual TLS): bearer headers, console
// session cookies with their CSRF token, and cross-site refusals.
func TestAuthenticate(t *testing.T) {
	sched := &tokenScheduler{answers: map[string]error{
		"psy_revoked": status.Error(codes.Unauthenticated, "api token is revoked"),
	}}
	a := New(Config{Tokens: sched, Sessions: true})
	// A session cookie carries the session's own API token.
	good, revoked := "psy_good", "psy_revoked"
	for _, tc := range []struct {
		name, method string
		header       map[string]string
		cookie       string
		wantCode     int    // 0: no refusal
		wantMethod   string // the identity's method; "" for no identity
		wantMsg      string
	}{
		{name: "no credentials", method: "GET"},
		{name: "bearer token", method: "POST", header: map[string]string{"Authorization": "Bearer psy_good"}, wantMethod: AuthToken},
		{name: "bearer scheme any case", method: "GET", header: map[string]string{"Authorization": "bearer  psy_good "}, wantMethod: AuthToken},
		{name: "not bearer", method: "GET", header: map[string]string{"Authorization": "Basic abc"}, wantCode: 401, wantMsg: "must be \"Bearer <token>\""},
		{name: "empty bearer", method: "GET", header: map[string]string{"Authorization": "Bearer  "}, wantCode: 401, wantMsg: "must be \"Bearer <token>\""},
		{name: "long bearer", method: "GET", header: map[string]string{"Authorization": "Bearer " + strings.Repeat("x", maxBearerLen+1)}, wantCode: 401, wantMsg: "longer than 256 bytes"},
		{name: "session read", method: "GET", cookie: good, wantMethod: AuthSession},
		{name: "session write with CSRF", method: "DELETE", cookie: good, header: map[string]string{console.CSRFHeader: console.CSRFToken(good)}, wantMethod: AuthSession},
		{name: "session write without CSRF", method: "POST", cookie: good, wantCode: 403, wantMethod: AuthSession, wantMsg: "CSRF token"},
		{name: "session write with another CSRF", method: "PUT", cookie: good, header: map[string]string{console.CSRFHeader: console.CSRFToken(revoked)}, wantCode: 403, wantMethod: AuthSession, wantMsg: "CSRF token"},
		{name: "not a token", method: "GET", cookie: "nosuchsession", wantCode: 401, wantMsg: "log in again"},
		{name: "session of a revoked token", method: "GET", cookie: revoked, wantCode: 401, wantMsg: "log in again"},
		{name: "session token too long", method: "GET", cookie: "psy_" + strings.Repeat("x", maxBearerLen), wantCode: 401, wantMsg: "log in again"},
		{name: "a bearer header wins over the cookie", method: "POST", cookie: good, header: map[string]string{"Authorization": "Bearer psy_good"}, wantMethod: AuthToken},
		{name: "cross-site", method: "POST", header: map[string]string{"Authorization": "Bearer psy_good", "Sec-Fetch-Site": "cross-site"}, wantCode: 403, wantMsg: "cross-site request refused"},
		{name: "same-site", method: "DELETE", cookie: good, header: map[string]string{console.CSRFHeader: console.CSRFToken(good), "Sec-Fetch-Site": "same-site"}, wantCode: 403, wantMsg: "Sec-Fetch-Site is same-site"},
		{name: "same-origin", method: "POST", header: map[string]string{"Authorization": "Bearer psy_good", "Sec-Fetch-Site": "same-origin", "Origin": "https://gw.example:8443"}, wantMethod: AuthToken},
		{name: "other origin", method: "POST", header: map[string]string{"Authorization": "Bearer psy_good", "Origin": "https://evil.example"}, wantCode: 403, wantMsg: "Origin \"https://evil.example\" is not this gateway"},
		{name: "cross-site read", method: "GET", header: map[string]string{"Authorization": "Bearer psy_good", "Sec-Fetch-Site": "cross-site"}, wantMethod: AuthToken},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := httptest.NewRequest(tc.method, "https://gw.example:8443/v1/workloads", nil)
			for k, v := range tc.header {
				r.Header.Set(k, v)
			}
			if tc.cookie != "" {
				r.AddCookie(&http.Cookie{Name: console.CookieName, Value: tc.cookie})
			}
			res := a.Authenticate(r)
			if code := httperr.CodeOf(res.Err); code != tc.wantCode || (res.Err == nil) != (tc.wantCode == 0) {
				t.Fatalf("refusal %v (code %d), want code %d", res.Err, code, tc.wantCode)
			}
			if tc.wantMsg != "" && !strings.Contains(res.Err.Error(), tc.wantMsg) {
				t.Fatalf("refusal %q, want it to say %q", res.Err, tc.wantMsg)
			}
			method := ""
			if res.ID != nil {
				method = res.ID.Method
				if res.ID.User != "ci" || res.ID.TokenID != "abc" {
					t.Fatalf("identity %+v, want ci's token abc", res.ID)
				}
			}
			if method != tc.wantMethod {
				t.Fatalf("identity %+v, want method %q", res.ID, tc.wantMethod)
			}
		})
	}
}

// A session token is asked of the scheduler on every request (a logout on
// another gateway must end it here at once); a bearer token is cached.
func TestSessionNotCached(t *testing.T) {
	sched := &tokenScheduler{}
	a := New(Config{Tokens: sched, Sessions: true})
	do := func(cookie, bearer string) {
		r := httptest.NewRequest("GET", "https://gw.example:8443/v1/workloads", nil)
		if cookie != "" {
			r.AddCookie(&http.Cookie{Name: console.CookieName, Value: cookie})
		}
		if bearer != "" {
			r.Header.Set("Authorization", "Bearer "+bearer)
		}
		if res := a.Authenticate(r); res.Err != nil || res.ID == nil {
			t.Fatalf("refused: %+v", res)
		}
	}
	do("", "psy_x")
	do("", "psy_x")
	if n := sched.count(); n != 1 {
		t.Fatalf("two bearer requests asked the scheduler %d times, want 1 (cached)", n)
	}
	do("psy_x", "")
	do("psy_x", "")
	if n := sched.count(); n != 3 {
		t.Fatalf("two session requests after a cached bearer answer: scheduler asked %d times in all, want 3", n)
	}
	// Without Sessions a cookie is not looked at.
	b := New(Config{Tokens: sched})
	r := httptest.NewRequest("GET", "https://gw.example:8443/v1/workloads", nil)
	r.AddCookie(&http.Cookie{Name: console.CookieName, Value: "psy_x"})
	if res := b.Authenticate(r); res.ID != nil || res.Err != nil {
		t.Fatalf("cookie admitted without Sessions: %+v", res)
	}
}

// TestContext: the Result the gateway keeps is the one it reads back.
func TestContext(t *testing.T) {
	r := httptest.NewRequest("GET", "/", nil)
	if res := FromRequest(r); res.ID != nil || res.Err != nil {
		t.Fatalf("a request without a Result reads %+v", res)
	}
	want := Result{ID: &Identity{User: "u", Method: AuthCertificate}}
	r = r.WithContext(NewContext(r.Context(), want))
	if got := FromRequest(r); got.ID != want.ID {
		t.Fatalf("read back %+v, want %+v", got, want)
	}
}

func TestDescribe(t *testing.T) {
	for id, want := range map[*Identity]string{
		nil:                                  "no credentials",
		{Method: AuthCertificate}:            "client certificate",
		{Method: AuthToken, TokenID: "t1"}:   "api token t1",
		{Method: AuthSession, TokenID: "t2"}: "console session token t2",
	} {
		if got := id.Describe(); got != want {
			t.Errorf("%+v: %q, want %q", id, got, want)
		}
	}
}
