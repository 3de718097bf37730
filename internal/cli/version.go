package cli

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/persys-dev/compute/internal/buildinfo"
)

func newVersionCommand(o *options) *cobra.Command {
	var clientOnly bool
	cmd := &cobra.Command{
		Use:   "version",
		Short: "Show the client's build and the server's (the gateway the config names)",
		Long: "Print persysctl's version, commit, build date, Go version and platform, then the gateway's.\n" +
			"With --client, or when no config is found, only the client's; a config whose gateway cannot be\n" +
			"reached is an error (exit status 1) after the client line.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			fmt.Fprintf(o.streams.Out, "persysctl %s\n", buildinfo.Get())
			if clientOnly {
				return nil
			}
			c, err := o.client()
			if err != nil {
				// No cluster configured: the client's line is the answer.
				fmt.Fprintf(o.streams.Err, "gateway: not asked (%v)\n", err)
				return nil
			}
			defer c.Close()
			info, err := c.ServerVersion(cmd.Context())
			if err != nil {
				return fmt.Errorf("server version: %w", err)
			}
			_, err = fmt.Fprintf(o.streams.Out, "gateway %s\n", info)
			return err
		},
	}
	cmd.Flags().BoolVar(&clientOnly, "client", false, "only the client's version; do not contact the gateway")
	return cmd
}
