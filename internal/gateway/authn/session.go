package authn

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
var errSessionEnded = httperr.New(http.StatusUnauthorized,
	"console session expired or logged out: log in again at /ui/login")

// Mutating reports whether method changes state: such a request of a
// cookie session must carry its CSRF token, is refused cross-site, and
// the gateway audits it.
func Mutating(method string) bool {
	switch method {
	case http.MethodPost, http.MethodPut, http.MethodPatch, http.MethodDelete:
		return true
	}
	return false
}

// session identifies a request by its console session cookie, whose
// value is the session's API token. The scheduler is asked every time,
// never the cache: a logout on any gateway revokes the token, and the
// session must end on every gateway at once. A state-changing request
// must carry the session's CSRF token, derived from the token.
func (a *Authenticator) session(r *http.Request) Result {
	if !a.sessions {
		return Result{}
	}
	c, err := r.Cookie(console.CookieName)
	if err != nil {
		return Result{}
	}
	tok := c.Value
	if tok == "" || len(tok) > maxBearerLen || !strings.HasPrefix(tok, "psy_") {
		return Result{Err: errSessionEnded}
	}
	res := a.tokens.resolveUncached(r.Context(), tok)
	if res.Err != nil {
		if isRefusal(res.Err) {
			return Result{Err: errSessionEnded}
		}
		return res
	}
	id := *res.ID
	id.Method = AuthSession
	if Mutating(r.Method) && subtle.ConstantTimeCompare([]byte(r.Header.Get(console.CSRFHeader)), []byte(console.CSRFToken(tok))) != 1 {
		return Result{ID: &id, Err: httperr.New(http.StatusForbidden,
			console.CSRFHeader+" header: missing or not this session's CSRF token (a console session must send it on every "+r.Method+")")}
	}
	return Result{ID: &id}
}

// SessionToken is the session token r's cookie carries ("" when none);
// only for a request Authenticate identified as AuthSession.
func SessionToken(r *http.Request) string {
	c, err := r.Cookie(console.CookieName)
	if err != nil {
		return ""
	}
	return c.Value
}

// isRefusal reports whether err is a 401 or 403 of this package's.
func isRefusal(err error) bool {
	c := httperr.CodeOf(err)
	return c == http.StatusUnauthorized || c == http.StatusForbidden
}

// crossSiteRefusal refuses a state-changing request that a browser says
// comes from another site's page: a browser presents its client
// certificate to every site that asks, so without this a form elsewhere
// could act with it. Clients that are not browsers send neither header.
func crossSiteRefusal(r *http.Request) error {
	if !Mutating(r.Method) {
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
