package cli

import (
	"fmt"

	"github.com/spf13/cobra"
)

func newLogsCommand(o *options) *cobra.Command {
	var tail int64
	cmd := &cobra.Command{
		Use:   "logs workload NAME",
		Short: "Print the tail of a workload's log (container output, VM serial console)",
		Args:  cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := workloadOnly("logs", args); err != nil {
				return err
			}
			if tail < 0 {
				return fmt.Errorf("--tail %d must not be negative", tail)
			}
			c, err := o.client()
			if err != nil {
				return err
			}
			defer c.Close()
			l, err := c.WorkloadLogs(cmd.Context(), args[1], tail)
			if err != nil {
				return err
			}
			if _, err := o.streams.Out.Write(l.Data); err != nil {
				return err
			}
			if l.Truncated {
				_, err = fmt.Fprintf(o.streams.Err, "(older output of workload/%s on node %s not shown; use --tail for more)\n", args[1], l.Node)
			}
			return err
		},
	}
	cmd.Flags().Int64Var(&tail, "tail", 0, "bytes from the end of the log (0: 64 KiB; at most 4 MiB)")
	return cmd
}
