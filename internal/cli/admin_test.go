package cli

import (
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	persysv1 "github.com/persys-dev/compute/api/persys/v1"
)

func TestPrintJoinTokens(t *testing.T) {
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	later := timestamppb.New(now.Add(time.Hour))
	tokens := []*persysv1.JoinToken{
		{Id: "valid", ExpiresAt: later, MaxUses: 2, Uses: 1, Labels: map[string]string{"zone": "a", "rack": "1"}, CreatedBy: "admin"},
		{Id: "unlimited", ExpiresAt: later, Uses: 5},
		{Id: "revoked", ExpiresAt: later, Revoked: true},
		{Id: "expired", ExpiresAt: timestamppb.New(now)},
		{Id: "usedup", ExpiresAt: later, MaxUses: 1, Uses: 1},
	}
	var b strings.Builder
	if err := PrintJoinTokens(&b, tokens, now); err != nil {
		t.Fatal(err)
	}
	want := []string{
		"ID          EXPIRES                USES   STATE     LABELS          CREATED BY",
		"valid       2026-01-02T04:04:05Z   1/2    valid     rack=1,zone=a   admin",
		"unlimited   2026-01-02T04:04:05Z   5/-    valid     -               -",
		"revoked     2026-01-02T04:04:05Z   0/-    revoked   -               -",
		"expired     2026-01-02T03:04:05Z   0/-    expired   -               -",
		"usedup      2026-01-02T04:04:05Z   1/1    used up   -               -",
	}
	if got := strings.TrimRight(b.String(), "\n"); got != strings.Join(want, "\n") {
		t.Fatalf("got\n%s\nwant\n%s", got, strings.Join(want, "\n"))
	}
}

func TestPrintRevocations(t *testing.T) {
	at := timestamppb.New(time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC))
	var b strings.Builder
	err := PrintRevocations(&b, []*persysv1.Revocation{
		{Serial: "0a", RevokedAt: at, RevokedBy: "admin"},
		{NodeId: "n1", RevokedAt: at},
		{User: "bob", RevokedAt: at, RevokedBy: "admin"},
	})
	if err != nil {
		t.Fatal(err)
	}
	want := []string{
		"REVOKED     AT                     BY",
		"serial 0a   2026-01-02T03:04:05Z   admin",
		"node n1     2026-01-02T03:04:05Z   -",
		"user bob    2026-01-02T03:04:05Z   admin",
	}
	if got := strings.TrimRight(b.String(), "\n"); got != strings.Join(want, "\n") {
		t.Fatalf("got\n%s\nwant\n%s", got, strings.Join(want, "\n"))
	}
}
