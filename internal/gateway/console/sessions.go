package console

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"time"
)

// DefaultSessionTTL is how long a console session lives from login.
const DefaultSessionTTL = 30 * time.Minute

// Session is one browser login. Its token is a short-lived API token the
// scheduler issued for the caller alone; it is the cookie's value and
// nothing else of it is kept anywhere but in the scheduler's store, so
// any gateway in front of the scheduler authenticates it and a gateway
// restart ends no session.
type Session struct {
	Token   string
	TokenID string
	Expires time.Time
}

// Sessions opens and ends console sessions; the gateway implements it
// with the scheduler's CreateAPIToken and RevokeAPIToken, marked as a
// console session, under the caller's own identity.
type Sessions interface {
	// Open issues a session token for who, logged in with its API token
	// (MethodToken), living at most ttl.
	Open(ctx context.Context, who *Caller, ttl time.Duration) (Session, error)
	// Close revokes the session token with id, of the caller on ctx.
	Close(ctx context.Context, tokenID string) error
}

// csrfLabel keys the CSRF derivation, so that the value serves no other
// purpose.
const csrfLabel = "persys console csrf v1"

// CSRFToken is the CSRF token of the session whose token is tok: an HMAC
// keyed by the session token. Any gateway that sees the cookie computes
// the same value, and the value does not reveal the token.
func CSRFToken(tok string) string {
	m := hmac.New(sha256.New, []byte(tok))
	m.Write([]byte(csrfLabel))
	return base64.RawURLEncoding.EncodeToString(m.Sum(nil))
}
