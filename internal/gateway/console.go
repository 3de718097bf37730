package gateway

// The web console (package console) mounted at /ui/: its routes go through
// the same instrument → authorize chain as the REST API, with permissions
// in permissions.go. A browser is identified by its client certificate or
// by the console session cookie, which stands for an API token kept on
// the server and re-validated like a Bearer token on every request.

import (
	"crypto/subtle"
	"net/http"
	"net/url"
	"strconv"
	"strings"

	"github.com/persys-dev/compute/internal/gateway/console"
	"github.com/persys-dev/compute/internal/gateway/httperr"
)

// errSessionEnded answers a cookie whose session is gone.
var errSessionEnded = httperr.New(http.StatusUnauthorized, "console session expired or logged out: log in again at /ui/login")

func (g *gateway) initConsole() {
	g.sessions = console.NewSessions(0, 0)
	g.console = console.New(console.Config{Caller: g.consoleCaller, Sessions: g.sessions})
}

func (g *gateway) consoleRoutes() []route {
	if g.console == nil { // a bare gateway, as the route-table tests make
		g.initConsole()
	}
	var rs []route
	for _, cr := range g.console.Routes() {
		roles := readers
		if publicRoutes[cr.Method+" "+cr.Path] {
			roles = nil
		}
		rs = append(rs, route{cr.Method, cr.Path, roles, cr.Handler})
	}
	return rs
}

// consoleCaller tells the console who the gateway authenticated.
func (g *gateway) consoleCaller(r *http.Request) *console.Caller {
	a := authFrom(r)
	if a.err != nil || a.id == nil {
		return nil
	}
	c := &console.Caller{User: a.id.User, Role: a.id.Role, Method: a.id.Method}
	if a.id.Method == AuthSession {
		if s, ok := g.sessions.Get(a.id.SessionID); ok {
			c.SessionID, c.CSRF = s.ID, s.CSRF
		}
	}
	return c
}

// sessionAuth identifies a request by its console session cookie. The
// session's token is resolved as a Bearer token would be, so a revoked or
// expired token ends the session; a state-changing request must carry the
// session's CSRF token.
func (g *gateway) sessionAuth(r *http.Request) authResult {
	c, err := r.Cookie(console.CookieName)
	if err != nil {
		return authResult{}
	}
	sess, ok := g.sessions.Get(c.Value)
	if !ok {
		return authResult{err: errSessionEnded}
	}
	res := g.tokens.resolve(r.Context(), sess.Token)
	if res.err != nil {
		if isAuthRefusal(res.err) {
			g.sessions.Delete(sess.ID)
		}
		return res
	}
	id := *res.id
	id.Method, id.SessionID = AuthSession, sess.ID
	if mutating(r.Method) && subtle.ConstantTimeCompare([]byte(r.Header.Get(console.CSRFHeader)), []byte(sess.CSRF)) != 1 {
		return authResult{id: &id, err: httperr.New(http.StatusForbidden, console.CSRFHeader+" header: missing or not this session's CSRF token (a console session must send it on every "+r.Method+")")}
	}
	return authResult{id: &id}
}

// crossSiteRefusal refuses a state-changing request that a browser says
// comes from another site's page: a browser presents its client
// certificate to every site that asks, so without this a form elsewhere
// could act with it. Clients that are not browsers send neither header.
func crossSiteRefusal(r *http.Request) error {
	if !mutating(r.Method) {
		return nil
	}
	switch r.Header.Get("Sec-Fetch-Site") {
	case "cross-site", "same-site":
		return httperr.New(http.StatusForbidden, "cross-site request refused: Sec-Fetch-Site is "+r.Header.Get("Sec-Fetch-Site")+"; act from the console's own pages")
	}
	if o := r.Header.Get("Origin"); o != "" {
		u, err := url.Parse(o)
		if err != nil || u.Host != r.Host {
			return httperr.New(http.StatusForbidden, "cross-site request refused: Origin "+strconv.Quote(o)+" is not this gateway")
		}
	}
	return nil
}

// loginRedirect sends a browser without credentials from a console page
// to the login page instead of answering 401 JSON.
func loginRedirect(rt route, h func(http.ResponseWriter, *http.Request) (int, error)) func(http.ResponseWriter, *http.Request) (int, error) {
	if rt.method != http.MethodGet || !strings.HasPrefix(rt.path, "/ui/") {
		return h
	}
	return func(w http.ResponseWriter, r *http.Request) (int, error) {
		code, err := h(w, r)
		if httperr.CodeOf(err) == http.StatusUnauthorized {
			http.Redirect(w, r, "/ui/login?next="+url.QueryEscape(r.URL.Path), http.StatusSeeOther)
			return http.StatusSeeOther, nil
		}
		return code, err
	}
}
