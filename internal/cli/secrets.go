package cli

import "github.com/spf13/cobra"

func newSecretCommand(o *options) *cobra.Command {
	_ = o
	return &cobra.Command{Use: "secret", Short: "not built yet", Hidden: true}
}
