package gateway

// Authentication: who is asking. A request is identified by its verified
// client certificate (role in the certificate's OU) or, when it has none,
// by an "Authorization: Bearer psy_..." API token that the scheduler
// resolves (AuthenticateToken), or else by a console session cookie made
// from such a token (console.go). A certificate wins when both are present.
// Resolved tokens are cached for Config.TokenCacheTTL (default 10 s);
// refusals are cached for at most a second, and transport failures not at
// all. Tokens are held only as their SHA-256 and never logged.

import (
	"context"
	"crypto/sha256"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	persysv1 "github.com/persys-dev/compute/api/persys/v1"
	"github.com/persys-dev/compute/api/persys/v1/persysv1grpc"
	"github.com/persys-dev/compute/internal/gateway/httperr"
	"github.com/persys-dev/compute/internal/pki"
)

// Authentication methods an Identity may carry.
const (
	AuthCertificate = "certificate"
	AuthToken       = "token"
	// AuthSession is a console session cookie made from an API token.
	AuthSession = "session"
)

const (
	defaultTokenCacheTTL = 10 * time.Second
	// refusalCacheTTL bounds how long a refused token is remembered.
	refusalCacheTTL    = time.Second
	maxTokenCacheItems = 10000
	maxBearerLen       = 256
	authCallTimeout    = 10 * time.Second
)

// Identity is the authenticated caller of one request.
type Identity struct {
	User string
	Role pki.Role
	// Method is AuthCertificate, AuthToken or AuthSession.
	Method string
	// TokenID names the API token (AuthToken and AuthSession).
	TokenID string
	// SessionID is the console session's id (AuthSession only).
	SessionID string
}

// describe names the caller for audit events and logs.
func (id *Identity) describe() string {
	if id == nil {
		return "no credentials"
	}
	switch id.Method {
	case AuthToken:
		return "api token " + id.TokenID
	case AuthSession:
		return "console session of api token " + id.TokenID
	}
	return "client certificate"
}

type authKey struct{}

// authResult is what authentication found, kept in the request context.
type authResult struct {
	id *Identity
	// err refuses the request (401) on every non-public route: a token
	// that is not valid, or a scheduler that could not be asked.
	err error
}

func authFrom(r *http.Request) authResult {
	a, _ := r.Context().Value(authKey{}).(authResult)
	return a
}

// IdentityFrom returns the caller of r as authenticated by the gateway,
// or nil when the request carries no valid credentials.
func IdentityFrom(r *http.Request) *Identity { return authFrom(r).id }

// authenticate identifies the caller of r: certificate first, then token.
func (g *gateway) authenticate(r *http.Request) authResult {
	if err := crossSiteRefusal(r); err != nil {
		return authResult{err: err}
	}
	if r.TLS != nil && len(r.TLS.VerifiedChains) > 0 {
		id, err := pki.PeerIdentity(r.TLS)
		if err != nil {
			cn := ""
			if len(r.TLS.PeerCertificates) > 0 {
				cn = r.TLS.PeerCertificates[0].Subject.CommonName
			}
			return authResult{id: &Identity{User: cn, Method: AuthCertificate},
				err: httperr.New(http.StatusForbidden, fmt.Sprintf("client certificate carries no usable identity: %v", err))}
		}
		who := &Identity{User: id.CommonName, Role: id.Role, Method: AuthCertificate}
		if g.revocations != nil && g.revocations.Revoked(r.TLS.PeerCertificates[0]) {
			return authResult{id: who, err: httperr.New(http.StatusUnauthorized, fmt.Sprintf("client certificate of %q (serial %s) is revoked", id.CommonName, id.Serial))}
		}
		return authResult{id: who}
	}
	h := r.Header.Get("Authorization")
	if h == "" {
		// A browser of the console: its session cookie (console.go).
		return g.sessionAuth(r)
	}
	scheme, tok, ok := strings.Cut(h, " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") || strings.TrimSpace(tok) == "" {
		return authResult{err: httperr.New(http.StatusUnauthorized, "Authorization header: must be \"Bearer <token>\"")}
	}
	tok = strings.TrimSpace(tok)
	if len(tok) > maxBearerLen {
		return authResult{err: httperr.New(http.StatusUnauthorized, fmt.Sprintf("Authorization header: token longer than %d bytes", maxBearerLen))}
	}
	return g.tokens.resolve(r.Context(), tok)
}

// tokenCache resolves bearer tokens through the scheduler and remembers
// the answers briefly, keyed by the token's SHA-256.
type tokenCache struct {
	control persysv1grpc.ControlServiceClient
	ttl     time.Duration
	now     func() time.Time

	mu      sync.Mutex
	entries map[[sha256.Size]byte]tokenEntry
}

type tokenEntry struct {
	res   authResult
	until time.Time
}

func newTokenCache(control persysv1grpc.ControlServiceClient, ttl time.Duration) *tokenCache {
	if ttl == 0 {
		ttl = defaultTokenCacheTTL
	}
	return &tokenCache{control: control, ttl: ttl, now: time.Now, entries: map[[sha256.Size]byte]tokenEntry{}}
}

func (c *tokenCache) resolve(ctx context.Context, tok string) authResult {
	key := sha256.Sum256([]byte(tok))
	now := c.now()
	c.mu.Lock()
	e, ok := c.entries[key]
	c.mu.Unlock()
	if ok && now.Before(e.until) {
		return e.res
	}
	// The lookup runs under the gateway's own identity, without the
	// caller's cancellation cutting a shared answer short.
	cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), authCallTimeout)
	defer cancel()
	resp, err := c.control.AuthenticateToken(cctx, &persysv1.AuthenticateTokenRequest{Token: tok})
	var res authResult
	ttl := c.ttl
	switch {
	case err == nil:
		// Fail closed: an answer without a user role (a daemon's role
		// holds nothing here), a user or a token id identifies no one.
		role, rerr := pki.ParseRole(resp.GetRole())
		if rerr != nil || role.IsDaemon() || resp.GetUser() == "" || resp.GetTokenId() == "" {
			res = authResult{err: httperr.New(http.StatusUnauthorized, fmt.Sprintf("api token %q carries no usable identity (user %q, role %q)", resp.GetTokenId(), resp.GetUser(), resp.GetRole()))}
			ttl = min(ttl, refusalCacheTTL)
			break
		}
		res = authResult{id: &Identity{User: resp.GetUser(), Role: role, Method: AuthToken, TokenID: resp.GetTokenId()}}
	case status.Code(err) == codes.Unauthenticated:
		res = authResult{err: httperr.New(http.StatusUnauthorized, status.Convert(err).Message())}
		ttl = min(ttl, refusalCacheTTL)
	default:
		// The scheduler could not answer: nothing is cached.
		d := httperr.Detail(err)
		msg := "api token could not be checked: " + d.Message
		code := d.Code
		if code < 500 {
			code = http.StatusServiceUnavailable
		}
		return authResult{err: httperr.New(code, msg)}
	}
	if ttl > 0 {
		c.mu.Lock()
		if len(c.entries) >= maxTokenCacheItems {
			for k, e := range c.entries {
				if !now.Before(e.until) {
					delete(c.entries, k)
				}
			}
			if len(c.entries) >= maxTokenCacheItems {
				clear(c.entries)
			}
		}
		c.entries[key] = tokenEntry{res: res, until: now.Add(ttl)}
		c.mu.Unlock()
	}
	return res
}

// forget drops every cached answer for the token with id (after this
// gateway revoked it).
func (c *tokenCache) forget(id string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for k, e := range c.entries {
		if e.res.id != nil && e.res.id.TokenID == id {
			delete(c.entries, k)
		}
	}
}

// errNoCredentials answers a request without certificate or token.
var errNoCredentials = httperr.New(http.StatusUnauthorized, "authentication required: present a client certificate of the cluster CA or an \"Authorization: Bearer <token>\" header")

// isAuthRefusal reports whether err is the gateway's own 401 or 403.
func isAuthRefusal(err error) bool {
	c := httperr.CodeOf(err)
	return c == http.StatusUnauthorized || c == http.StatusForbidden
}
