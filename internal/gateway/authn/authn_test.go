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
	sessions := console.NewSessions(0, 0)
	a := New(Config{Tokens: sched, Sessions: sessions})
	good, err := sessions.Create("psy_good")
	if err != nil {
		t.Fatal(err)
	}
	revoked, err := sessions.Create("psy_revoked")
	if err != nil {
		t.Fatal(err)
	}
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
		{name: "session read", method: "GET", cookie: good.ID, wantMethod: AuthSession},
		{name: "session write with CSRF", method: "DELETE", cookie: good.ID, header: map[string]string{console.CSRFHeader: good.CSRF}, wantMethod: AuthSession},
		{name: "session write without CSRF", method: "POST", cookie: good.ID, wantCode: 403, wantMethod: AuthSession, wantMsg: "CSRF token"},
		{name: "session write with another CSRF", method: "PUT", cookie: good.ID, header: map[string]string{console.CSRFHeader: revoked.CSRF}, wantCode: 403, wantMethod: AuthSession, wantMsg: "CSRF token"},
		{name: "unknown session", method: "GET", cookie: "nosuchsession", wantCode: 401, wantMsg: "log in again"},
		{name: "session of a revoked token", method: "GET", cookie: revoked.ID, wantCode: 401, wantMsg: "revoked"},
		{name: "session ended with its token", method: "GET", cookie: revoked.ID, wantCode: 401, wantMsg: "log in again"},
		{name: "a bearer header wins over the cookie", method: "POST", cookie: good.ID, header: map[string]string{"Authorization": "Bearer psy_good"}, wantMethod: AuthToken},
		{name: "cross-site", method: "POST", header: map[string]string{"Authorization": "Bearer psy_good", "Sec-Fetch-Site": "cross-site"}, wantCode: 403, wantMsg: "cross-site request refused"},
		{name: "same-site", method: "DELETE", cookie: good.ID, header: map[string]string{console.CSRFHeader: good.CSRF, "Sec-Fetch-Site": "same-site"}, wantCode: 403, wantMsg: "Sec-Fetch-Site is same-site"},
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
				if (method == AuthSession) != (res.ID.SessionID == good.ID) {
					t.Fatalf("identity %+v: session id does not match its method", res.ID)
				}
			}
			if method != tc.wantMethod {
				t.Fatalf("identity %+v, want method %q", res.ID, tc.wantMethod)
			}
		})
	}
	if _, ok := sessions.Get(good.ID); !ok {
		t.Fatal("a session in use was ended")
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
		{Method: AuthSession, TokenID: "t2"}: "console session of api token t2",
	} {
		if got := id.Describe(); got != want {
			t.Errorf("%+v: %q, want %q", id, got, want)
		}
	}
}
