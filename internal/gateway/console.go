package gateway

// The web console (package console) mounted at /ui/: its routes go through
// the same instrument → authorize chain as the REST API, with permissions
// in permissions.go. A browser is identified (package authn) by its client
// certificate or by the console session cookie, which stands for an API
// token kept on the server and re-validated like a Bearer token on every
// request; the session table is shared by the console and authn.

import (
	"net/http"
	"net/url"
	"strings"

	"github.com/persys-dev/compute/internal/gateway/authn"
	"github.com/persys-dev/compute/internal/gateway/console"
	"github.com/persys-dev/compute/internal/gateway/httperr"
)

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
	a := authn.FromRequest(r)
	if a.Err != nil || a.ID == nil {
		return nil
	}
	c := &console.Caller{User: a.ID.User, Role: a.ID.Role, Method: a.ID.Method}
	if a.ID.Method == authn.AuthSession {
		if s, ok := g.sessions.Get(a.ID.SessionID); ok {
			c.SessionID, c.CSRF = s.ID, s.CSRF
		}
	}
	return c
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
