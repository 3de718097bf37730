// Command persys runs the Persys Compute daemons: scheduler, agent,
// gateway, the certificate authority's tools, and dev (all of them in one
// process on an embedded etcd).
package main

import (
	"context"
	"fmt"
	"os"

	"github.com/spf13/cobra"
)

func main() {
	root := &cobra.Command{
		Use:           "persys",
		Short:         "Persys Compute daemons",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.AddCommand(newSchedulerCommand(), newAgentCommand(), newGatewayCommand(), newCACommand(), newDevCommand(), newBenchCommand(), newBenchSchedulerProcessCommand(), newBenchGatewayProcessCommand(), newBenchEtcdMemberCommand())
	root.AddCommand(newSecretsKeyCommand(), newVersionCommand(), newBackupCommand(), newFederationCommand())
	if err := root.ExecuteContext(context.Background()); err != nil {
		fmt.Fprintln(os.Stderr, "Error:", err)
		os.Exit(1)
	}
}
