package cli

import "github.com/spf13/cobra"

func newLogsCommand(o *options) *cobra.Command {
	_ = o
	return &cobra.Command{Use: "logs", Short: "not built yet", Hidden: true}
}
