package authn

import (
	"context"
	"crypto/sha256"
	"fmt"
	"net/http"
	"sync"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	persysv1 "github.com/persys-dev/compute/api/persys/v1"
	"github.com/persys-dev/compute/internal/gateway/httperr"
	"github.com/persys-dev/compute/internal/pki"
)

const (
	defaultTokenCacheTTL = 10 * time.Second
	// refusalCacheTTL bounds how long a refused token is remembered.
	refusalCacheTTL    = time.Second
	maxTokenCacheItems = 10000
	authCallTimeout    = 10 * time.Second
)

// tokenCache resolves bearer tokens through the scheduler and remembers
// the answers briefly, keyed by the token's SHA-256.
type tokenCache struct {
	control TokenChecker
	ttl     time.Duration
	now     func() time.Time

	mu      sync.Mutex
	entries map[[sha256.Size]byte]tokenEntry
}

type tokenEntry struct {
	res   Result
	until time.Time
}

func newTokenCache(control TokenChecker, ttl time.Duration) *tokenCache {
	if ttl == 0 {
		ttl = defaultTokenCacheTTL
	}
	return &tokenCache{control: control, ttl: ttl, now: time.Now, entries: map[[sha256.Size]byte]tokenEntry{}}
}

func (c *tokenCache) resolve(ctx context.Context, tok string) Result {
	return c.lookup(ctx, tok, true)
}

// resolveUncached asks the scheduler unless a refusal of tok is cached,
// and caches only a refusal.
func (c *tokenCache) resolveUncached(ctx context.Context, tok string) Result {
	return c.lookup(ctx, tok, false)
}

func (c *tokenCache) lookup(ctx context.Context, tok string, admitCached bool) Result {
	key := sha256.Sum256([]byte(tok))
	now := c.now()
	c.mu.Lock()
	e, ok := c.entries[key]
	c.mu.Unlock()
	if ok && now.Before(e.until) && (admitCached || e.res.Err != nil) {
		return e.res
	}
	// The lookup runs under the gateway's own identity, without the
	// caller's cancellation cutting a shared answer short.
	cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), authCallTimeout)
	defer cancel()
	resp, err := c.control.AuthenticateToken(cctx, &persysv1.AuthenticateTokenRequest{Token: tok})
	var res Result
	ttl := c.ttl
	switch {
	case err == nil:
		// Fail closed: an answer without a user role (a daemon's role
		// holds nothing here), a user or a token id identifies no one.
		role, rerr := pki.ParseRole(resp.GetRole())
		if rerr != nil || role.IsDaemon() || resp.GetUser() == "" || resp.GetTokenId() == "" {
			res = Result{Err: httperr.New(http.StatusUnauthorized,
				fmt.Sprintf("api token %q carries no usable identity (user %q, role %q)", resp.GetTokenId(), resp.GetUser(), resp.GetRole()))}
			ttl = min(ttl, refusalCacheTTL)
			break
		}
		res = Result{ID: &Identity{User: resp.GetUser(), Role: role, Method: AuthToken, TokenID: resp.GetTokenId()}}
	case status.Code(err) == codes.Unauthenticated:
		res = Result{Err: httperr.New(http.StatusUnauthorized, status.Convert(err).Message())}
		ttl = min(ttl, refusalCacheTTL)
	default:
		// The scheduler could not answer: nothing is cached.
		d := httperr.Detail(err)
		msg := "api token could not be checked: " + d.Message
		code := d.Code
		if code < 500 {
			code = http.StatusServiceUnavailable
		}
		return Result{Err: httperr.New(code, msg)}
	}
	if ttl > 0 && (admitCached || res.Err != nil) {
		c.store(key, res, now.Add(ttl), now)
	}
	return res
}

// store remembers res until until, making room when the cache is full.
func (c *tokenCache) store(key [sha256.Size]byte, res Result, until, now time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
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
	c.entries[key] = tokenEntry{res: res, until: until}
}

// forget drops every cached answer for the token with id.
func (c *tokenCache) forget(id string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for k, e := range c.entries {
		if e.res.ID != nil && e.res.ID.TokenID == id {
			delete(c.entries, k)
		}
	}
}
