package cli

import (
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/spf13/cobra"

	"github.com/persys-dev/compute/internal/client"
	"github.com/persys-dev/compute/internal/pki"
)

// maxUserCertTTL mirrors the scheduler's limit on a user certificate.
const maxUserCertTTL = 365 * 24 * time.Hour

// newUserCommand groups user commands (admin).
func newUserCommand(o *options) *cobra.Command {
	cmd := &cobra.Command{
		Use:     "user",
		Aliases: []string{"users"},
		Short:   "Issue user certificates through the gateway (admin)",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return cmd.Help()
		},
	}
	cmd.AddCommand(newUserIssueCommand(o))
	return cmd
}

func newUserIssueCommand(o *options) *cobra.Command {
	var (
		role, out, outConfig string
		ttl                  time.Duration
		force                bool
	)
	cmd := &cobra.Command{
		Use:   "issue NAME --role admin|operator|viewer [--ttl 2160h] [--out DIR] [--out-config FILE]",
		Short: "Make a key here, have the cluster CA sign it for NAME with a role, and write the files",
		Long: "issue makes a new P-256 key on this machine, sends only a certificate request through the gateway\n" +
			"(the scheduler signs it with the cluster CA; it needs --ca-dir), and writes OUT/NAME.key (0600),\n" +
			"OUT/NAME.crt and OUT/NAME-ca.crt; OUT defaults to the current directory. With --out-config it also\n" +
			"writes a persysctl config for the new user, with this config's endpoint.",
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			name := args[0]
			if err := pki.ValidateName("NAME", name); err != nil {
				return err
			}
			if !validRole(role) {
				return fmt.Errorf("--role %q: must be admin, operator or viewer", role)
			}
			if ttl < 0 || ttl > maxUserCertTTL {
				return fmt.Errorf("--ttl %s: must be between 0 (the default, 2160h) and %s", ttl, maxUserCertTTL)
			}
			if out == "" {
				out = "."
			}
			certPath, keyPath, caPath := filepath.Join(out, name+".crt"), filepath.Join(out, name+".key"), filepath.Join(out, name+"-ca.crt")
			if !force {
				check := []string{certPath, keyPath, caPath}
				if outConfig != "" {
					check = append(check, outConfig)
				}
				for _, p := range check {
					if _, err := os.Lstat(p); err == nil {
						return fmt.Errorf("%s exists (use --force to replace)", p)
					}
				}
			}
			cfg, _, err := client.LoadConfig(o.configPath)
			if err != nil {
				return err
			}
			c, err := client.New(cfg)
			if err != nil {
				return err
			}
			defer c.Close()
			key, err := pki.NewKey()
			if err != nil {
				return err
			}
			csrPEM, err := pki.NewCSR(name, key)
			if err != nil {
				return err
			}
			resp, err := c.IssueUserCertificate(cmd.Context(), name, role, csrPEM, ttl)
			if err != nil {
				return err
			}
			keyPEM, err := pki.EncodeKey(key)
			if err != nil {
				return err
			}
			if err := pki.WriteIdentity(out, name, resp.GetCertificatePem(), keyPEM); err != nil {
				return err
			}
			clear(keyPEM)
			if err := os.WriteFile(caPath, resp.GetCaBundlePem(), 0o644); err != nil {
				return fmt.Errorf("write %s: %w", caPath, err)
			}
			certs, err := pki.ReadCertFile(certPath)
			if err != nil {
				return err
			}
			w := o.streams.Out
			fmt.Fprintf(w, "issued user %q (role %s), valid until %s\n", name, role, certs[0].NotAfter.UTC().Format(time.RFC3339))
			fmt.Fprintf(w, "certificate: %s\nkey:         %s\nca bundle:   %s\n", certPath, keyPath, caPath)
			if outConfig == "" {
				return nil
			}
			abs := func(p string) string {
				if a, err := filepath.Abs(p); err == nil {
					return a
				}
				return p
			}
			if err := client.WriteConfig(outConfig, &client.Config{Endpoint: cfg.Endpoint, CA: abs(caPath), Cert: abs(certPath), Key: abs(keyPath)}); err != nil {
				return err
			}
			_, err = fmt.Fprintf(w, "config:      %s\n", outConfig)
			return err
		},
	}
	cmd.Flags().StringVar(&role, "role", "", "role: admin, operator or viewer (required)")
	cmd.Flags().DurationVar(&ttl, "ttl", 0, "lifetime (default 2160h, at most 8760h)")
	cmd.Flags().StringVar(&out, "out", "", "directory for the files (default: the current directory)")
	cmd.Flags().StringVar(&outConfig, "out-config", "", "also write a persysctl config for the user here")
	cmd.Flags().BoolVar(&force, "force", false, "replace existing files")
	return cmd
}
