package main

import (
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"time"

	"github.com/spf13/cobra"

	"github.com/persys-dev/compute/internal/client"
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
			name := args[0]
			if err := pki.ValidateName("NAME", name); err != nil {
				return err
			}
			role := pki.Role(roleName)
			if role != pki.RoleAdmin && role != pki.RoleOperator && role != pki.RoleViewer {
				return fmt.Errorf("--role %q: must be admin, operator or viewer", roleName)
			}
			if dir == "" {
				return errors.New("--dir: required (the folder with ca.crt and ca.key)")
			}
			if ttl <= 0 || ttl > 10*365*24*time.Hour {
				return fmt.Errorf("--ttl %s: must be positive and at most 87600h", ttl)
			}
			if outConfig != "" {
				u, err := url.Parse(endpoint)
				if err != nil || u.Scheme != "https" || u.Host == "" {
					return fmt.Errorf("--endpoint %q: must be an https:// URL with a host", endpoint)
				}
			}
			if out == "" {
				out = dir
			}
			certPath, keyPath := filepath.Join(out, name+".crt"), filepath.Join(out, name+".key")
			caPath := filepath.Join(out, name+"-ca.crt")
			check := []string{certPath, keyPath, caPath}
			if outConfig != "" {
				check = append(check, outConfig)
			}
			if !force {
				for _, p := range check {
					if _, err := os.Lstat(p); err == nil {
						return fmt.Errorf("%s: %w (use --force to replace)", p, pki.ErrExists)
					}
				}
			}
			ca, err := pki.LoadCA(dir)
			if err != nil {
				return err
			}
			bundle, _, err := pki.LoadBundle(dir, time.Now())
			if err != nil {
				return err
			}
			certPEM, keyPEM, err := ca.Issue(pki.IssueRequest{CommonName: name, Role: role, Validity: ttl})
			if err != nil {
				return err
			}
			if err := os.MkdirAll(out, 0o700); err != nil {
				return fmt.Errorf("--out %s: %w", out, err)
			}
			if err := pki.WriteIdentity(out, name, certPEM, keyPEM); err != nil {
				return err
			}
			if err := os.WriteFile(caPath, bundle, 0o644); err != nil {
				return fmt.Errorf("write %s: %w", caPath, err)
			}
			certs, err := pki.ReadCertFile(certPath)
			if err != nil {
				return err
			}
			id, err := pki.IdentityFromCert(certs[0])
			if err != nil {
				return err
			}
			w := cmd.OutOrStdout()
			fmt.Fprintf(w, "issued user %q (role %s, serial %s), valid until %s\n", id.CommonName, id.Role, id.Serial,
				certs[0].NotAfter.UTC().Format(time.RFC3339))
			fmt.Fprintf(w, "certificate: %s\n", certPath)
			fmt.Fprintf(w, "key:         %s\n", keyPath)
			fmt.Fprintf(w, "ca bundle:   %s\n", caPath)
			if outConfig == "" {
				return nil
			}
			abs := func(p string) string {
				if a, err := filepath.Abs(p); err == nil {
					return a
				}
				return p
			}
			cfg := &client.Config{Endpoint: endpoint, CA: abs(caPath), Cert: abs(certPath), Key: abs(keyPath)}
			if err := client.WriteConfig(outConfig, cfg); err != nil {
				return err
			}
			fmt.Fprintf(w, "config:      %s (use: persysctl --config %s, or %s=%s)\n", outConfig, outConfig, client.EnvConfig, outConfig)
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
