package main

import (
	"fmt"
	"net"

	"github.com/spf13/cobra"

	"github.com/persys-dev/compute/internal/pki"
)

// newCABootstrapCommand returns `persys ca bootstrap`: the CA and the
// control plane's identities in one idempotent step, for installers and
// containers without a shell (deploy/compose runs it on every start).
func newCABootstrapCommand() *cobra.Command {
	var (
		dir  string
		dns  []string
		ips  []string
		node []string
	)
	cmd := &cobra.Command{
		Use:   "bootstrap",
		Short: "Create, when missing, the CA and the scheduler, gateway and admin identities (and agents' with --node) in --dir",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var parsed []net.IP
			for _, s := range ips {
				ip := net.ParseIP(s)
				if ip == nil {
					return fmt.Errorf("--ip %q: not an IP address", s)
				}
				parsed = append(parsed, ip)
			}
			b, err := pki.Bootstrap(dir, node, dns, parsed)
			if err != nil {
				return err
			}
			w := cmd.OutOrStdout()
			fmt.Fprintf(w, "ca:        %s\nscheduler: %s\ngateway:   %s\nadmin:     %s\n", b.CA, b.Scheduler.Cert, b.Gateway.Cert, b.Admin.Cert)
			for _, id := range node {
				fmt.Fprintf(w, "agent %s: %s\n", id, b.Agents[id].Cert)
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&dir, "dir", "", "directory for the CA and the identities (created 0700)")
	f.StringSliceVar(&dns, "dns", nil, "DNS names the daemons' certificates are valid for, besides localhost, scheduler and gateway")
	f.StringSliceVar(&ips, "ip", nil, "IP addresses the daemons' certificates are valid for, besides 127.0.0.1 and ::1")
	f.StringSliceVar(&node, "node", nil, "node ids to issue agent identities for (agents can join with a token instead)")
	_ = cmd.MarkFlagRequired("dir")
	return cmd
}
