package gateway

// The web console (package console) mounted at /ui/: its routes go through
// the same instrument → authorize chain as the REST API, with permissions
// in permissions.go. A browser is identified (package authn) by its client
// certificate or by the console session cookie. The cookie carries a
// short-lived API token that the scheduler issued at login for the caller
// alone (consoleSessions), so every gateway in front of the scheduler
// admits it, a gateway restart ends no session, and a logout on one
// gateway revokes it for all.

import (
	"context"
	"net/http"
	"net/url"
	"strings"
	"time"

	"google.golang.org/grpc/metadata"

	"github.com/persys-dev/compute/api/persys/contract"
	persysv1 "github.com/persys-dev/compute/api/persys/v1"
	"github.com/persys-dev/compute/internal/gateway/authn"
	"github.com/persys-dev/compute/internal/gateway/console"
	"github.com/persys-dev/compute/internal/gateway/httperr"
)

func (g *gateway) initConsole() {
	g.console = console.New(console.Config{Caller: g.consoleCaller, Sessions: consoleSessions{g}})
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
	c := &console.Caller{User: a.ID.User, Role: a.ID.Role, Method: a.ID.Method, TokenID: a.ID.TokenID}
	if a.ID.Method == authn.AuthSession {
		c.CSRF = console.CSRFToken(authn.SessionToken(r))
	}
	return c
}

// consoleSessions issues and revokes session tokens through the
// scheduler, as the caller the request's context names (instrument puts
// the user and role in its outgoing metadata), marked as a console
// session: the scheduler admits that for any user, for itself only.
type consoleSessions struct{ g *gateway }

func (s consoleSessions) Open(ctx context.Context, who *console.Caller, ttl time.Duration) (console.Session, error) {
	ctx = metadata.AppendToOutgoingContext(ctx, contract.MetadataTokenPurpose, contract.TokenPurposeConsoleSession,
		contract.MetadataLoginToken, who.TokenID)
	ctx, cancel := context.WithTimeout(ctx, s.g.callTimeout)
	defer cancel()
	resp, err := s.g.control.CreateAPIToken(ctx, &persysv1.CreateAPITokenRequest{User: who.User, Role: string(who.Role), TtlSeconds: int64(ttl / time.Second)})
	if err != nil {
		return console.Session{}, err
	}
	return console.Session{Token: resp.GetToken(), TokenID: resp.GetInfo().GetId(), Expires: resp.GetInfo().GetExpiresAt().AsTime()}, nil
}

func (s consoleSessions) Close(ctx context.Context, tokenID string) error {
	ctx, cancel := context.WithTimeout(metadata.AppendToOutgoingContext(ctx, contract.MetadataTokenPurpose, contract.TokenPurposeConsoleSession), s.g.callTimeout)
	defer cancel()
	_, err := s.g.control.RevokeAPIToken(ctx, &persysv1.RevokeAPITokenRequest{Id: tokenID})
	if err != nil {
		return err
	}
	s.g.auth.Forget(tokenID)
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
