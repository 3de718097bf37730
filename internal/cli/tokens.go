package cli

import (
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/spf13/cobra"

	persysv1 "github.com/persys-dev/compute/api/persys/v1"
)

// maxTokenTTL mirrors the scheduler's limit on a token's lifetime.
const maxTokenTTL = 365 * 24 * time.Hour

// newTokenCommand groups create, list and revoke of API tokens (admin).
func newTokenCommand(o *options) *cobra.Command {
	cmd := &cobra.Command{
		Use:     "token",
		Aliases: []string{"tokens"},
		Short:   "Create, list or revoke API tokens (admin)",
		Long: "API tokens let scripts call the gateway without a client certificate: put the token in the\n" +
			"config file's token field or in $PERSYS_TOKEN (the ca field is still needed). A token carries\n" +
			"a user name and a role (admin, operator or viewer); etcd keeps only its SHA-256.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return cmd.Help()
		},
	}
	cmd.AddCommand(newTokenCreateCommand(o), newTokenListCommand(o), newTokenRevokeCommand(o))
	return cmd
}

func validRole(role string) bool {
	switch role {
	case "admin", "operator", "viewer":
		return true
	}
	return false
}

func newTokenCreateCommand(o *options) *cobra.Command {
	var (
		user, role string
		ttl        time.Duration
	)
	cmd := &cobra.Command{
		Use:   "create --user NAME --role admin|operator|viewer [--ttl 720h]",
		Short: "Create an API token; it is printed once and cannot be shown again",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if strings.TrimSpace(user) == "" {
				return fmt.Errorf("--user: required")
			}
			if !validRole(role) {
				return fmt.Errorf("--role %q: must be admin, operator or viewer", role)
			}
			if ttl < 0 || ttl > maxTokenTTL {
				return fmt.Errorf("--ttl %s: must be between 0 (the default, 720h) and %s", ttl, maxTokenTTL)
			}
			c, err := o.client()
			if err != nil {
				return err
			}
			defer c.Close()
			resp, err := c.CreateToken(cmd.Context(), user, role, ttl)
			if err != nil {
				return err
			}
			if o.structured() {
				return printObject(o.streams.Out, o.output, resp)
			}
			info := resp.GetInfo()
			w := o.streams.Out
			fmt.Fprintf(w, "Token:   %s\n", resp.GetToken())
			fmt.Fprintf(w, "ID:      %s\n", info.GetId())
			fmt.Fprintf(w, "User:    %s\n", info.GetUser())
			fmt.Fprintf(w, "Role:    %s\n", info.GetRole())
			fmt.Fprintf(w, "Expires: %s\n", when(o.now(), info.GetExpiresAt()))
			_, err = fmt.Fprintln(w, "\nStore the token now: it is not shown again. Use it with PERSYS_TOKEN=<token> or the config's token field.")
			return err
		},
	}
	cmd.Flags().StringVar(&user, "user", "", "user the token acts as (required)")
	cmd.Flags().StringVar(&role, "role", "", "role of the token: admin, operator or viewer (required)")
	cmd.Flags().DurationVar(&ttl, "ttl", 0, "lifetime (default 720h, at most 8760h)")
	return cmd
}

func newTokenListCommand(o *options) *cobra.Command {
	return &cobra.Command{
		Use:   "list",
		Short: "List API tokens: id, user, role, expiry and state (never the token)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := o.client()
			if err != nil {
				return err
			}
			defer c.Close()
			list, err := c.ListTokens(cmd.Context())
			if err != nil {
				return err
			}
			if o.structured() {
				return printObject(o.streams.Out, o.output, list)
			}
			return printTokensTable(o.streams.Out, list.GetTokens(), o.now())
		},
	}
}

func newTokenRevokeCommand(o *options) *cobra.Command {
	return &cobra.Command{
		Use:   "revoke ID",
		Short: "Revoke an API token at once",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			id := args[0]
			if strings.HasPrefix(id, "psy_") {
				return fmt.Errorf("ID: give the token's id (see token list), not the token itself")
			}
			c, err := o.client()
			if err != nil {
				return err
			}
			defer c.Close()
			if err := c.RevokeToken(cmd.Context(), id); err != nil {
				return err
			}
			_, err = fmt.Fprintf(o.streams.Out, "token %s revoked\n", id)
			return err
		},
	}
}

func tokenState(t *persysv1.APIToken, now time.Time) string {
	switch {
	case t.GetRevoked():
		return "revoked"
	case t.GetExpiresAt() != nil && !now.Before(t.GetExpiresAt().AsTime()):
		return "expired"
	}
	return "active"
}

func printTokensTable(w io.Writer, tokens []*persysv1.APIToken, now time.Time) error {
	if len(tokens) == 0 {
		_, err := fmt.Fprintln(w, "No API tokens.")
		return err
	}
	tw := newTable(w)
	row(tw, "", "ID", "USER", "ROLE", "STATE", "EXPIRES", "AGE", "CREATED BY")
	for _, t := range tokens {
		expires := none
		if t.GetExpiresAt() != nil {
			expires = t.GetExpiresAt().AsTime().UTC().Format(time.RFC3339)
		}
		row(tw, "", t.GetId(), t.GetUser(), t.GetRole(), tokenState(t, now), expires, age(now, t.GetCreatedAt()), orNone(t.GetCreatedBy()))
	}
	return tw.Flush()
}

// printAuditTable prints audit events: who did what, with which result.
func printAuditTable(w io.Writer, events []*persysv1.Event, now time.Time) error {
	if len(events) == 0 {
		_, err := fmt.Fprintln(w, "No audit events.")
		return err
	}
	tw := newTable(w)
	row(tw, "", "AGE", "ACTOR", "ACTION", "RESULT", "DETAIL")
	for _, e := range events {
		row(tw, "", age(now, e.GetTime()), e.GetActor(), e.GetAction(), e.GetResult(), e.GetMessage())
	}
	return tw.Flush()
}
