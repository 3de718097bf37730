package authn

import (
	"context"
	"net/http"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	persysv1 "github.com/persys-dev/compute/api/persys/v1"
	"github.com/persys-dev/compute/internal/gateway/httperr"
)

// tokenScheduler answers AuthenticateToken from a table and counts calls;
// the cache logic needs nothing else of the scheduler.
type tokenScheduler struct {
	mu      sync.Mutex
	calls   int
	answers map[string]error
	// resps, when set for a token, is the answer instead of ci/operator.
	resps map[string]*persysv1.AuthenticateTokenResponse
}

func (s *tokenScheduler) AuthenticateToken(_ context.Context, in *persysv1.AuthenticateTokenRequest, _ ...grpc.CallOption) (*persysv1.AuthenticateTokenResponse, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.calls++
	if err := s.answers[in.GetToken()]; err != nil {
		return nil, err
	}
	if r := s.resps[in.GetToken()]; r != nil {
		return r, nil
	}
	return &persysv1.AuthenticateTokenResponse{User: "ci", Role: "operator", TokenId: "abc"}, nil
}

func (s *tokenScheduler) count() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.calls
}

func TestTokenCache(t *testing.T) {
	sched := &tokenScheduler{answers: map[string]error{
		"bad":  status.Error(codes.Unauthenticated, "api token is not valid"),
		"down": status.Error(codes.Unavailable, "no scheduler"),
	}}
	now := time.Unix(1000, 0)
	c := newTokenCache(sched, 0)
	c.now = func() time.Time { return now }
	ctx := context.Background()

	steps := []struct {
		name      string
		advance   time.Duration
		token     string
		wantCode  int // 0: identified
		wantCalls int
		forget    string
	}{
		{"first use asks", 0, "good", 0, 1, ""},
		{"cached", 5 * time.Second, "good", 0, 1, ""},
		{"cache time over", 6 * time.Second, "good", 0, 2, ""},
		{"refusal asks", 0, "bad", http.StatusUnauthorized, 3, ""},
		{"refusal cached briefly", 500 * time.Millisecond, "bad", http.StatusUnauthorized, 3, ""},
		{"refusal forgotten after a second", time.Second, "bad", http.StatusUnauthorized, 4, ""},
		{"scheduler down is 503", 0, "down", http.StatusServiceUnavailable, 5, ""},
		{"failures are not cached", 0, "down", http.StatusServiceUnavailable, 6, ""},
		{"revoked here: forgotten", 0, "good", 0, 7, "abc"},
	}
	for _, st := range steps {
		now = now.Add(st.advance)
		if st.forget != "" {
			c.forget(st.forget)
		}
		res := c.resolve(ctx, st.token)
		code := 0
		if res.Err != nil {
			code = httperr.Detail(res.Err).Code
		}
		if code != st.wantCode || sched.count() != st.wantCalls {
			t.Fatalf("%s: code %d after %d calls, want %d after %d", st.name, code, sched.count(), st.wantCode, st.wantCalls)
		}
		if code == 0 && (res.ID.User != "ci" || res.ID.Method != AuthToken || res.ID.TokenID != "abc") {
			t.Fatalf("%s: identity %+v", st.name, res.ID)
		}
	}

	// A negative TTL turns the cache off.
	off := newTokenCache(sched, -1)
	before := sched.count()
	off.resolve(ctx, "good")
	off.resolve(ctx, "good")
	if sched.count() != before+2 {
		t.Fatalf("cache off: %d calls, want 2", sched.count()-before)
	}
}

// An answer that names no user, no token id or no user role identifies
// no one: the request is refused, never run with an empty identity.
func TestTokenAnswerWithoutIdentityRefused(t *testing.T) {
	sched := &tokenScheduler{resps: map[string]*persysv1.AuthenticateTokenResponse{
		"no-role":     {User: "ci", TokenId: "t1"},
		"daemon-role": {User: "ci", Role: "scheduler", TokenId: "t2"},
		"odd-role":    {User: "ci", Role: "root", TokenId: "t3"},
		"no-user":     {Role: "admin", TokenId: "t4"},
		"no-id":       {User: "ci", Role: "admin"},
		"good":        {User: "ci", Role: "viewer", TokenId: "t5"},
	}}
	c := newTokenCache(sched, 0)
	for tok, want := range map[string]int{"no-role": 401, "daemon-role": 401, "odd-role": 401, "no-user": 401, "no-id": 401, "good": 0} {
		res := c.resolve(context.Background(), tok)
		code := 0
		if res.Err != nil {
			code = httperr.Detail(res.Err).Code
		}
		if code != want || (want != 0) != (res.ID == nil) {
			t.Errorf("%s: code %d identity %+v, want code %d", tok, code, res.ID, want)
		}
	}
}
