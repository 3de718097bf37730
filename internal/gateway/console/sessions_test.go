package console

import "testing"

// The CSRF token is a function of the session token alone (any gateway
// derives it), differs between sessions and does not show the token.
func TestCSRFToken(t *testing.T) {
	a, b := "psy_0123456789ab_aa", "psy_0123456789ab_ab"
	if CSRFToken(a) != CSRFToken(a) {
		t.Fatal("CSRFToken is not deterministic")
	}
	if CSRFToken(a) == CSRFToken(b) {
		t.Fatal("two sessions share a CSRF token")
	}
	if got := CSRFToken(a); len(got) != 43 || got == a {
		t.Fatalf("CSRFToken(%q) = %q: want 32 bytes, base64url, not the token", a, got)
	}
}
