package cli

import (
	"fmt"
	"io"
	"time"

	persysv1 "github.com/persys-dev/compute/api/persys/v1"
)

// The tables persys (the daemons' binary) prints for its admin commands,
// in the same table format as persysctl's.

// JoinTokenState is what a join token can still do at now: valid,
// revoked, expired or used up.
func JoinTokenState(t *persysv1.JoinToken, now time.Time) string {
	switch {
	case t.GetRevoked():
		return "revoked"
	case !now.Before(t.GetExpiresAt().AsTime()):
		return "expired"
	case t.GetMaxUses() > 0 && t.GetUses() >= t.GetMaxUses():
		return "used up"
	}
	return "valid"
}

// PrintJoinTokens prints join tokens (never their secrets), one a row.
func PrintJoinTokens(w io.Writer, tokens []*persysv1.JoinToken, now time.Time) error {
	tw := newTable(w)
	row(tw, "", "ID", "EXPIRES", "USES", "STATE", "LABELS", "CREATED BY")
	for _, t := range tokens {
		uses := fmt.Sprintf("%d/%d", t.GetUses(), t.GetMaxUses())
		if t.GetMaxUses() == 0 {
			uses = fmt.Sprintf("%d/-", t.GetUses())
		}
		row(tw, "", t.GetId(), t.GetExpiresAt().AsTime().UTC().Format(time.RFC3339), uses, JoinTokenState(t, now),
			joinMap(t.GetLabels()), t.GetCreatedBy())
	}
	return tw.Flush()
}

// RevocationSubject names what a revocation covers: a serial, a node or
// a user.
func RevocationSubject(r *persysv1.Revocation) string {
	switch {
	case r.GetSerial() != "":
		return "serial " + r.GetSerial()
	case r.GetNodeId() != "":
		return "node " + r.GetNodeId()
	}
	return "user " + r.GetUser()
}

// PrintRevocations prints revoked certificates, nodes and users, one a
// row.
func PrintRevocations(w io.Writer, revs []*persysv1.Revocation) error {
	tw := newTable(w)
	row(tw, "", "REVOKED", "AT", "BY")
	for _, r := range revs {
		row(tw, "", RevocationSubject(r), r.GetRevokedAt().AsTime().UTC().Format(time.RFC3339), r.GetRevokedBy())
	}
	return tw.Flush()
}
