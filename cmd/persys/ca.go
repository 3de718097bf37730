package main

import (
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"time"

	"github.com/spf13/cobra"

	"github.com/persys-dev/compute/internal/pki"
)

// newCACommand returns `persys ca`: create the cluster CA, issue
// certificates from it and print its public-key hash.
func newCACommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "ca",
		Short: "Manage the cluster's built-in certificate authority",
		Args:  cobra.NoArgs,
	}
	cmd.AddCommand(newCAInitCommand(), newCAIssueCommand(), newCAHashCommand(),
		newJoinTokenCommand(), newCARevokeCommand(), newCARevocationsCommand(), newCARotateCommand())
	cmd.AddCommand(newCAIssueUserCommand(), newCABootstrapCommand())
	return cmd
}

func newCAInitCommand() *cobra.Command {
	var (
		dir      string
		cn       string
		validity time.Duration
	)
	cmd := &cobra.Command{
		Use:   "init",
		Short: "Create a new CA (ca.crt, ca.key) in --dir; refuses to replace one",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cmd.SilenceUsage = true
			if dir == "" {
				return errors.New("--dir: required")
			}
			if validity <= 0 {
				return fmt.Errorf("--validity %s: must be positive", validity)
			}
			ca, err := pki.InitCA(dir, cn, validity)
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			fmt.Fprintf(out, "created CA %q, valid until %s\n", ca.Cert.Subject.CommonName, ca.Cert.NotAfter.UTC().Format(time.RFC3339))
			fmt.Fprintf(out, "certificate: %s\n", filepath.Join(dir, pki.CACertFile))
			fmt.Fprintf(out, "key:         %s\n", filepath.Join(dir, pki.CAKeyFile))
			fmt.Fprintf(out, "hash:        %s\n", pki.HashCert(ca.Cert))
			if id, err := pki.ReadClusterID(dir); err == nil {
				fmt.Fprintf(out, "cluster id:  %s\n", id)
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&dir, "dir", "", "directory for ca.crt and ca.key (created 0700)")
	cmd.Flags().StringVar(&cn, "cn", pki.BootstrapCAName, "common name of the CA")
	cmd.Flags().DurationVar(&validity, "validity", pki.DefaultCAValidity, "lifetime of the CA certificate")
	_ = cmd.MarkFlagRequired("dir")
	return cmd
}

func newCAIssueCommand() *cobra.Command {
	var (
		dir, roleName, name, out string
		dnsNames, ipStrs         []string
		validity                 time.Duration
		force                    bool
	)
	cmd := &cobra.Command{
		Use:   "issue",
		Short: "Issue a certificate and key for --name with --role, signed by the CA in --dir",
		Long: "Issue writes OUT/NAME.crt (0644) and OUT/NAME.key (0600); OUT defaults to --dir.\n" +
			"Roles: scheduler, gateway, agent (server and client certificates; an agent's name is its node id)\n" +
			"and admin, operator, viewer (user client certificates).",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cmd.SilenceUsage = true
			if dir == "" {
				return errors.New("--dir: required")
			}
			role, err := pki.ParseRole(roleName)
			if err != nil {
				return fmt.Errorf("--role: %w", err)
			}
			if err := pki.ValidateName("--name", name); err != nil {
				return err
			}
			if validity <= 0 {
				return fmt.Errorf("--validity %s: must be positive", validity)
			}
			ips := make([]net.IP, 0, len(ipStrs))
			for _, s := range ipStrs {
				ip := net.ParseIP(s)
				if ip == nil {
					return fmt.Errorf("--ip %q: not an IP address", s)
				}
				ips = append(ips, ip)
			}
			if out == "" {
				out = dir
			}
			certPath, keyPath := filepath.Join(out, name+".crt"), filepath.Join(out, name+".key")
			if !force {
				for _, p := range []string{certPath, keyPath} {
					if _, err := os.Lstat(p); err == nil {
						return fmt.Errorf("%s: %w (use --force to replace)", p, pki.ErrExists)
					}
				}
			}
			ca, err := pki.LoadCA(dir)
			if err != nil {
				return err
			}
			certPEM, keyPEM, err := ca.Issue(pki.IssueRequest{CommonName: name, Role: role, DNSNames: dnsNames, IPs: ips, Validity: validity})
			if err != nil {
				return err
			}
			if err := pki.WriteIdentity(out, name, certPEM, keyPEM); err != nil {
				return err
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
			fmt.Fprintf(w, "issued %q (role %s, serial %s), valid until %s\n", id.CommonName, id.Role, id.Serial, certs[0].NotAfter.UTC().Format(time.RFC3339))
			fmt.Fprintf(w, "certificate: %s\n", certPath)
			fmt.Fprintf(w, "key:         %s\n", keyPath)
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&dir, "dir", "", "directory holding ca.crt and ca.key")
	f.StringVar(&roleName, "role", "", "role: scheduler, gateway, agent, admin, operator or viewer")
	f.StringVar(&name, "name", "", "common name, also the output file name (A-Z a-z 0-9 . _ -)")
	f.StringSliceVar(&dnsNames, "dns", nil, "DNS names the certificate is valid for (comma-separated or repeated)")
	f.StringSliceVar(&ipStrs, "ip", nil, "IP addresses the certificate is valid for (comma-separated or repeated)")
	f.StringVar(&out, "out", "", "output directory (default: --dir)")
	f.DurationVar(&validity, "validity", pki.DefaultLeafValidity, "lifetime of the certificate (capped at the CA's expiry)")
	f.BoolVar(&force, "force", false, "replace an existing certificate and key")
	for _, req := range []string{"dir", "role", "name"} {
		_ = cmd.MarkFlagRequired(req)
	}
	return cmd
}

func newCAHashCommand() *cobra.Command {
	var dir string
	cmd := &cobra.Command{
		Use:   "hash",
		Short: "Print the CA's public-key hash (sha256:<hex>) used to pin it when joining",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cmd.SilenceUsage = true
			if dir == "" {
				return errors.New("--dir: required")
			}
			certs, err := pki.ReadCertFile(filepath.Join(dir, pki.CACertFile))
			if err != nil {
				return err
			}
			if !certs[0].IsCA {
				return fmt.Errorf("%s: %w: certificate is not a CA", filepath.Join(dir, pki.CACertFile), pki.ErrInvalid)
			}
			fmt.Fprintln(cmd.OutOrStdout(), pki.HashCert(certs[0]))
			return nil
		},
	}
	cmd.Flags().StringVar(&dir, "dir", "", "directory holding ca.crt")
	_ = cmd.MarkFlagRequired("dir")
	return cmd
}
