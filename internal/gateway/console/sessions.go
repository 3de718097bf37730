package console

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"sync"
	"time"
)

// Session limits.
const (
	// DefaultSessionTTL is how long a session lives from login.
	DefaultSessionTTL = 30 * time.Minute
	// DefaultMaxSessions bounds the session table.
	DefaultMaxSessions = 4096
	// maxSessionsPerToken bounds the sessions one API token may hold:
	// logging in again with it ends its oldest session.
	maxSessionsPerToken = 8
	// idBytes is the entropy of a session id and of a CSRF token.
	idBytes = 32
	// maxIDLen bounds a cookie value worth looking up.
	maxIDLen = 64
)

// ErrFull refuses a login while the session table is full of live sessions.
var ErrFull = errors.New("too many console sessions are open; try again later or log out elsewhere")

// Session is one browser login: the API token it was made from stays on
// the server, the browser holds only the random id.
type Session struct {
	ID      string
	Token   string
	CSRF    string
	Expires time.Time
	created time.Time
}

// Sessions is the server-side session table: a cookie is worth nothing
// once its entry is gone (logout, expiry, a revoked token). Safe for
// concurrent use.
type Sessions struct {
	ttl time.Duration
	max int
	now func() time.Time

	mu sync.Mutex
	// byID is keyed by the SHA-256 of the id, so the table holds no
	// cookie value.
	byID map[[sha256.Size]byte]Session
}

// NewSessions returns an empty table; ttl 0 and max 0 mean the defaults.
func NewSessions(ttl time.Duration, max int) *Sessions {
	if ttl <= 0 {
		ttl = DefaultSessionTTL
	}
	if max <= 0 {
		max = DefaultMaxSessions
	}
	return &Sessions{ttl: ttl, max: max, now: time.Now, byID: map[[sha256.Size]byte]Session{}}
}

// TTL is how long a new session lives.
func (s *Sessions) TTL() time.Duration { return s.ttl }

// Create opens a session for an API token already validated by the caller.
func (s *Sessions) Create(token string) (Session, error) {
	id, csrf := randomID(), randomID()
	now := s.now()
	sess := Session{ID: id, Token: token, CSRF: csrf, Expires: now.Add(s.ttl), created: now}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.sweep(now)
	s.limitToken(token)
	if len(s.byID) >= s.max {
		return Session{}, ErrFull
	}
	s.byID[sha256.Sum256([]byte(id))] = sess
	return sess, nil
}

// Get returns the live session with id; an expired one is removed.
func (s *Sessions) Get(id string) (Session, bool) {
	if id == "" || len(id) > maxIDLen {
		return Session{}, false
	}
	key := sha256.Sum256([]byte(id))
	s.mu.Lock()
	defer s.mu.Unlock()
	sess, ok := s.byID[key]
	if !ok {
		return Session{}, false
	}
	if !s.now().Before(sess.Expires) {
		delete(s.byID, key)
		return Session{}, false
	}
	return sess, true
}

// Delete ends the session with id (logout, or its token was refused).
func (s *Sessions) Delete(id string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.byID, sha256.Sum256([]byte(id)))
}

// Len is the number of sessions held, expired ones included until swept.
func (s *Sessions) Len() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.byID)
}

// sweep drops expired sessions; s.mu is held.
func (s *Sessions) sweep(now time.Time) {
	for k, v := range s.byID {
		if !now.Before(v.Expires) {
			delete(s.byID, k)
		}
	}
}

// limitToken ends the oldest sessions of token beyond the per-token
// bound, leaving room for one more; s.mu is held.
func (s *Sessions) limitToken(token string) {
	for {
		n := 0
		var oldest [sha256.Size]byte
		var at time.Time
		for k, v := range s.byID {
			if v.Token != token {
				continue
			}
			n++
			if at.IsZero() || v.created.Before(at) {
				oldest, at = k, v.created
			}
		}
		if n < maxSessionsPerToken {
			return
		}
		delete(s.byID, oldest)
	}
}

func randomID() string {
	b := make([]byte, idBytes)
	_, _ = rand.Read(b) // crypto/rand.Read never fails (Go 1.24+)
	return base64.RawURLEncoding.EncodeToString(b)
}
