// Package authn owns who is asking, for every request the gateway
// answers. A request is identified by its verified client certificate
// (role in the certificate's OU) or, when it has none, by an
// "Authorization: Bearer psy_..." API token that the scheduler resolves
// (AuthenticateToken), or else by a console session cookie, which carries
// a short-lived API token of its own (package console). A certificate wins
// when both are present. State-changing
// requests that a browser says come from another site are refused, and a
// cookie session's must carry the session's CSRF token.
//
// Resolved bearer tokens are cached for Config.TokenCacheTTL (default
// 10 s), session tokens never (a logout must end the session on every
// gateway at once); refusals are cached for at most a second, and
// transport failures not at all. Tokens are held only as their SHA-256
// and never logged.
//
// The gateway calls Authenticate once per request, keeps the Result in
// the request's context (NewContext) and decides with it what the caller
// may do; authorization is not this package's.
package authn

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"time"

	"google.golang.org/grpc"

	persysv1 "github.com/persys-dev/compute/api/persys/v1"
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

// maxBearerLen bounds a bearer token worth asking the scheduler about.
const maxBearerLen = 256

// Identity is the authenticated caller of one request.
type Identity struct {
	User string
	Role pki.Role
	// Method is AuthCertificate, AuthToken or AuthSession.
	Method string
	// TokenID names the API token (AuthToken), or the session's own
	// token (AuthSession).
	TokenID string
}

// Describe names the caller for audit events and logs.
func (id *Identity) Describe() string {
	if id == nil {
		return "no credentials"
	}
	switch id.Method {
	case AuthToken:
		return "api token " + id.TokenID
	case AuthSession:
		return "console session token " + id.TokenID
	}
	return "client certificate"
}

// Result is what authentication found for one request.
type Result struct {
	// ID is the caller; nil when the request carries no credentials or
	// none that identify anyone.
	ID *Identity
	// Err refuses the request (401 or 403) on every non-public route: a
	// token that is not valid, a revoked certificate, a missing CSRF
	// token, or a scheduler that could not be asked.
	Err error
}

// ErrNoCredentials answers a request without certificate or token on a
// route that needs an identity.
var ErrNoCredentials error = httperr.New(http.StatusUnauthorized,
	"authentication required: present a client certificate of the cluster CA or an \"Authorization: Bearer <token>\" header")

type resultKey struct{}

// NewContext returns ctx carrying res.
func NewContext(ctx context.Context, res Result) context.Context {
	return context.WithValue(ctx, resultKey{}, res)
}

// FromRequest returns the Result kept in r's context (NewContext); the
// zero Result when there is none.
func FromRequest(r *http.Request) Result {
	res, _ := r.Context().Value(resultKey{}).(Result)
	return res
}

// TokenChecker resolves an API token: the scheduler's AuthenticateToken.
type TokenChecker interface {
	AuthenticateToken(ctx context.Context, in *persysv1.AuthenticateTokenRequest, opts ...grpc.CallOption) (*persysv1.AuthenticateTokenResponse, error)
}

// Config wires an Authenticator.
type Config struct {
	// Tokens resolves bearer tokens and session tokens; required.
	Tokens TokenChecker
	// TokenCacheTTL is how long a resolved API token is trusted without
	// asking again; 0 means 10s, negative disables the cache.
	TokenCacheTTL time.Duration
	// Revocations, when set, refuses revoked client certificates on every
	// request (401), also on connections opened before the revocation.
	Revocations pki.RevocationChecker
	// Sessions admits console session cookies; false ignores them.
	Sessions bool
}

// Authenticator identifies requests. Safe for concurrent use.
type Authenticator struct {
	tokens      *tokenCache
	revocations pki.RevocationChecker
	sessions    bool
}

// New returns an Authenticator; it panics when cfg.Tokens is nil, a
// programming error.
func New(cfg Config) *Authenticator {
	if cfg.Tokens == nil {
		panic("authn: Config.Tokens is nil")
	}
	return &Authenticator{
		tokens:      newTokenCache(cfg.Tokens, cfg.TokenCacheTTL),
		revocations: cfg.Revocations,
		sessions:    cfg.Sessions,
	}
}

// Forget drops every cached answer for the API token with id, after the
// gateway revoked it.
func (a *Authenticator) Forget(tokenID string) { a.tokens.forget(tokenID) }

// Authenticate identifies the caller of r: certificate first, then token,
// then session cookie.
func (a *Authenticator) Authenticate(r *http.Request) Result {
	if err := crossSiteRefusal(r); err != nil {
		return Result{Err: err}
	}
	if r.TLS != nil && len(r.TLS.VerifiedChains) > 0 {
		return a.certificate(r)
	}
	h := r.Header.Get("Authorization")
	if h == "" {
		// A browser of the console: its session cookie.
		return a.session(r)
	}
	scheme, tok, ok := strings.Cut(h, " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") || strings.TrimSpace(tok) == "" {
		return Result{Err: httperr.New(http.StatusUnauthorized, "Authorization header: must be \"Bearer <token>\"")}
	}
	tok = strings.TrimSpace(tok)
	if len(tok) > maxBearerLen {
		return Result{Err: httperr.New(http.StatusUnauthorized, fmt.Sprintf("Authorization header: token longer than %d bytes", maxBearerLen))}
	}
	return a.tokens.resolve(r.Context(), tok)
}

// certificate identifies r by its verified client certificate.
func (a *Authenticator) certificate(r *http.Request) Result {
	id, err := pki.PeerIdentity(r.TLS)
	if err != nil {
		cn := ""
		if len(r.TLS.PeerCertificates) > 0 {
			cn = r.TLS.PeerCertificates[0].Subject.CommonName
		}
		return Result{ID: &Identity{User: cn, Method: AuthCertificate},
			Err: httperr.New(http.StatusForbidden, fmt.Sprintf("client certificate carries no usable identity: %v", err))}
	}
	who := &Identity{User: id.CommonName, Role: id.Role, Method: AuthCertificate}
	if a.revocations != nil && a.revocations.Revoked(r.TLS.PeerCertificates[0]) {
		return Result{ID: who, Err: httperr.New(http.StatusUnauthorized,
			fmt.Sprintf("client certificate of %q (serial %s) is revoked", id.CommonName, id.Serial))}
	}
	return Result{ID: who}
}
