package cli

import "github.com/spf13/cobra"

func newTokenCommand(o *options) *cobra.Command {
	_ = o
	return &cobra.Command{Use: "token", Short: "not built yet", Hidden: true}
}
