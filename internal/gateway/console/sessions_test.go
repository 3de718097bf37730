package console

import (
	"errors"
	"strings"
	"testing"
	"time"
)

func TestSessions(t *testing.T) {
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	s := NewSessions(30*time.Minute, 3)
	s.now = func() time.Time { return now }

	a, err := s.Create("psy_a")
	if err != nil {
		t.Fatal(err)
	}
	if len(a.ID) < 40 || len(a.CSRF) < 40 || a.ID == a.CSRF {
		t.Fatalf("id %q csrf %q: want two distinct random values of 32 bytes", a.ID, a.CSRF)
	}
	if got, ok := s.Get(a.ID); !ok || got.Token != "psy_a" || got.CSRF != a.CSRF {
		t.Fatalf("Get: %+v %v", got, ok)
	}
	for _, id := range []string{"", "nope", strings.Repeat("x", 1000)} {
		if _, ok := s.Get(id); ok {
			t.Errorf("Get(%.10q) found a session", id)
		}
	}

	// Bounded: a full table of live sessions refuses a login.
	if _, err := s.Create("psy_b"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Create("psy_c"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Create("psy_d"); !errors.Is(err, ErrFull) {
		t.Fatalf("fourth session in a table of 3: %v, want ErrFull", err)
	}

	// Logout deletes server-side.
	s.Delete(a.ID)
	if _, ok := s.Get(a.ID); ok {
		t.Fatal("session found after Delete")
	}

	// Expiry: gone at its deadline, and swept to make room.
	b, _ := s.Create("psy_e")
	now = now.Add(30 * time.Minute)
	if _, ok := s.Get(b.ID); ok {
		t.Fatal("session alive at its expiry")
	}
	if _, err := s.Create("psy_f"); err != nil {
		t.Fatalf("create after every session expired: %v", err)
	}
	if n := s.Len(); n != 1 {
		t.Fatalf("%d sessions after the sweep, want 1", n)
	}
}

func TestSessionsPerTokenBound(t *testing.T) {
	s := NewSessions(0, 0)
	clock := time.Now()
	s.now = func() time.Time { clock = clock.Add(time.Second); return clock }
	var first Session
	for i := range maxSessionsPerToken + 3 {
		sess, err := s.Create("psy_same")
		if err != nil {
			t.Fatal(err)
		}
		if i == 0 {
			first = sess
		}
	}
	if n := s.Len(); n != maxSessionsPerToken {
		t.Fatalf("%d sessions of one token, want at most %d", n, maxSessionsPerToken)
	}
	if _, ok := s.Get(first.ID); ok {
		t.Fatal("the token's oldest session survived")
	}
}
