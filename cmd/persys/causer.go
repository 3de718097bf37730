package main

import (
	"time"

	"github.com/spf13/cobra"

	"github.com/persys-dev/compute/internal/cli"
	"github.com/persys-dev/compute/internal/pki"
)

// defaultUserCertTTL is a user certificate's lifetime unless --ttl says.
const defaultUserCertTTL = 90 * 24 * time.Hour

// newCAIssueUserCommand returns `persys ca issue-user NAME --role R`: a
// client certificate and key for persysctl, signed locally with the CA in
// --dir, and optionally a persysctl config that uses them.
func newCAIssueUserCommand() *cobra.Command {
	var (
		dir, roleName, out, outConfig, endpoint string
		ttl                                     time.Duration
		force                                   bool
	)
	cmd := &cobra.Command{
		Use:   "issue-user NAME --role admin|operator|viewer",
		Short: "Issue a user's client certificate for persysctl, signed by the CA in --dir",
		Long: "issue-user writes OUT/NAME.crt (0644), OUT/NAME.key (0600) and OUT/NAME-ca.crt (the CA bundle the\n" +
			"gateway's certificate chains to); OUT defaults to --dir. With --out-config it also writes a persysctl\n" +
			"config (0600) naming --endpoint and those files. The role is stored in the certificate; the gateway\n" +
			"authorizes every route by it. For remote issuing without the CA key, an admin can sign a user's\n" +
			"certificate request through the gateway (POST /v1/users/NAME/certificate).",
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			cmd.SilenceUsage = true
			res, err := cli.IssueUser(cli.IssueUserOptions{Name: args[0], Role: pki.Role(roleName), Dir: dir, Out: out,
				TTL: ttl, OutConfig: outConfig, Endpoint: endpoint, Force: force})
			if err != nil {
				return err
			}
			res.Print(cmd.OutOrStdout())
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&dir, "dir", "", "directory holding ca.crt and ca.key (required)")
	f.StringVar(&roleName, "role", "", "role: admin, operator or viewer (required)")
	f.DurationVar(&ttl, "ttl", defaultUserCertTTL, "lifetime of the certificate (capped at the CA's expiry)")
	f.StringVar(&out, "out", "", "output directory (default: --dir)")
	f.StringVar(&outConfig, "out-config", "", "also write a persysctl config file here")
	f.StringVar(&endpoint, "endpoint", "https://127.0.0.1:8443", "the gateway's URL, for --out-config")
	f.BoolVar(&force, "force", false, "replace existing files")
	_ = cmd.MarkFlagRequired("role")
	_ = cmd.MarkFlagRequired("dir")
	return cmd
}
