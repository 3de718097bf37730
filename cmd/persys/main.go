// Command persys runs the Persys Compute daemons: scheduler, agent,
// gateway, the certificate authority's tools, and dev (all of them in one
// process on an embedded etcd).
package main

import (
	"context"
	"fmt"
	"os"

	"github.com/spf13/cobra"

	"github.com/persys-dev/compute/internal/bench"
)

func main() {
	// A bench run re-executes this binary as its scheduler process.
	bench.RunSchedulerProcessIfAsked()
	root := &cobra.Command{
		Use:           "persys",
		Short:         "Persys Compute daemons",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.AddCommand(newSchedulerCommand(), newAgentCommand(), newGatewayCommand(), newCACommand(), newDevCommand(), newBenchCommand())
	root.AddCommand(newSecretsKeyCommand(), newVersionCommand(), newBackupCommand())
	if err := root.ExecuteContext(context.Background()); err != nil {
		fmt.Fprintln(os.Stderr, "Error:", err)
		os.Exit(1)
	}
}
