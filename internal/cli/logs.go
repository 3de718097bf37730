package cli

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/persys-dev/compute/internal/client"
)

// logsFlags are the logs command's flags.
type logsFlags struct {
	tail    int64
	follow  bool
	since   string
	service string
}

func newLogsCommand(o *options) *cobra.Command {
	var fl logsFlags
	cmd := &cobra.Command{
		Use:   "logs workload NAME",
		Short: "Print the tail of a workload's log (container output, VM serial console); -f follows it",
		Example: `  persysctl logs workload web
  persysctl logs workload web -f --since 5m
  persysctl logs workload stack -f --service db`,
		Args: cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := workloadOnly("logs", args); err != nil {
				return err
			}
			if err := fl.check(); err != nil {
				return err
			}
			c, err := o.client()
			if err != nil {
				return err
			}
			defer c.Close()
			if fl.follow {
				// Ctrl-C ends the command's context: a clean end.
				return c.FollowLogs(cmd.Context(), args[1], client.LogFollow{TailBytes: fl.tail, Since: fl.since, Service: fl.service}, o.streams.Out)
			}
			return printLogTail(cmd, o, c, args[1], fl.tail)
		},
	}
	fl.register(cmd)
	return cmd
}

func (fl *logsFlags) register(cmd *cobra.Command) {
	cmd.Flags().Int64Var(&fl.tail, "tail", 0, "bytes from the end of the log (0: 64 KiB; at most 4 MiB)")
	cmd.Flags().BoolVarP(&fl.follow, "follow", "f", false, "stream new output until Ctrl-C or the workload's output ends")
	cmd.Flags().StringVar(&fl.since, "since", "", "with --follow: start at output since a time (RFC 3339) or this long ago (5m, 1h)")
	cmd.Flags().StringVar(&fl.service, "service", "", "with --follow: only this service of a compose workload")
}

func (fl logsFlags) check() error {
	switch {
	case fl.tail < 0:
		return fmt.Errorf("--tail %d must not be negative", fl.tail)
	case !fl.follow && fl.since != "":
		return fmt.Errorf("--since needs --follow")
	case !fl.follow && fl.service != "":
		return fmt.Errorf("--service needs --follow")
	}
	return nil
}

func printLogTail(cmd *cobra.Command, o *options, c *client.Client, name string, tail int64) error {
	l, err := c.WorkloadLogs(cmd.Context(), name, tail)
	if err != nil {
		return err
	}
	if _, err := o.streams.Out.Write(l.Data); err != nil {
		return err
	}
	if l.Truncated {
		_, err = fmt.Fprintf(o.streams.Err, "(older output of workload/%s on node %s not shown; use --tail for more)\n", name, l.Node)
	}
	return err
}
