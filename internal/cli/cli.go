// Package cli implements persysctl, the command line of Persys Compute: a
// cobra command tree over the gateway's REST API (internal/client). It owns
// presentation only — tables, describe views, JSON and YAML output — and
// never talks to the scheduler directly. cmd/persysctl calls Main.
package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/persys-dev/compute/internal/client"
)

// Streams are the command's standard input, output and error.
type Streams struct {
	In       io.Reader
	Out, Err io.Writer
}

// options are the global flags plus what tests replace.
type options struct {
	streams    Streams
	configPath string
	output     string
	now        func() time.Time
}

// Main runs persysctl with args (without the program name) and returns the
// process exit code: 0 on success, 1 on any error.
func Main(args []string, s Streams) int {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	return run(ctx, args, s, time.Now)
}

func run(ctx context.Context, args []string, s Streams, now func() time.Time) int {
	cmd := newRoot(&options{streams: s, now: now})
	cmd.SetArgs(args)
	err := cmd.ExecuteContext(ctx)
	if err == nil {
		return 0
	}
	printError(s.Err, err)
	return 1
}

// printError writes "Error: [REASON: ]<message>" and one line per invalid
// field.
func printError(w io.Writer, err error) {
	var ae *client.APIError
	if errors.As(err, &ae) {
		if ae.Reason != "" {
			fmt.Fprintf(w, "Error: %s: %s\n", ae.Reason, ae.Message)
		} else {
			fmt.Fprintf(w, "Error: %s\n", ae.Message)
		}
		for _, f := range ae.Fields {
			if f.Field == "" {
				fmt.Fprintf(w, "  %s\n", f.Reason)
			} else {
				fmt.Fprintf(w, "  %s: %s\n", f.Field, f.Reason)
			}
		}
		return
	}
	fmt.Fprintf(w, "Error: %s\n", err)
}

// NewRootCommand returns the persysctl command tree bound to s.
func NewRootCommand(s Streams) *cobra.Command {
	return newRoot(&options{streams: s, now: time.Now})
}

func newRoot(o *options) *cobra.Command {
	root := &cobra.Command{
		Use:   "persysctl",
		Short: "Control a Persys Compute cluster",
		Long: "persysctl talks to a Persys Compute gateway over HTTPS with your client certificate.\n\n" +
			"The config file is read from --config, else $" + client.EnvConfig + ", else ~/" + client.DefaultConfigPath + ".\n" +
			"It holds the gateway endpoint and the ca, cert and key files; `persys dev` prints one.\n" +
			"Instead of cert and key, an API token may authenticate: the config's token field or $" + client.EnvToken + ".",
		SilenceErrors: true,
		SilenceUsage:  true,
		PersistentPreRunE: func(*cobra.Command, []string) error {
			switch o.output {
			case FormatTable, FormatWide, FormatName, FormatJSON, FormatYAML:
				return nil
			}
			return fmt.Errorf("invalid --output %q: must be table, wide, name, json or yaml", o.output)
		},
	}
	root.SetIn(o.streams.In)
	root.SetOut(o.streams.Out)
	root.SetErr(o.streams.Err)
	root.CompletionOptions.HiddenDefaultCmd = false
	root.PersistentFlags().StringVar(&o.configPath, "config", "", "config file (default $"+client.EnvConfig+" or ~/"+client.DefaultConfigPath+")")
	root.PersistentFlags().StringVarP(&o.output, "output", "o", FormatTable, "output format: table, wide, name, json or yaml")
	root.AddCommand(
		newApplyCommand(o),
		newGetCommand(o),
		newDescribeCommand(o),
		newDeleteCommand(o),
		newRetryCommand(o),
		newScaleCommand(o),
		newRolloutCommand(o),
		newWorkloadCommand(o),
		newNodeCommand(o),
		newClusterCommand(o),
		newEventsCommand(o),
		newLogsCommand(o),
		newSecretCommand(o),
		newTokenCommand(o),
		newUserCommand(o),
		newVersionCommand(o),
	)
	refuseUnknownShells(root)
	return root
}

// refuseUnknownShells makes `completion SHELL` for a shell cobra writes no
// script for an error naming it; cobra's own answer is its help, exit 0,
// which a script piping it into a file takes for success.
func refuseUnknownShells(root *cobra.Command) {
	root.InitDefaultCompletionCmd()
	for _, c := range root.Commands() {
		if c.Name() != "completion" {
			continue
		}
		var shells []string
		for _, s := range c.Commands() {
			shells = append(shells, s.Name())
		}
		c.Args = cobra.ArbitraryArgs
		c.RunE = func(cmd *cobra.Command, args []string) error {
			if len(args) == 0 {
				return cmd.Help()
			}
			return fmt.Errorf("completion %q: no such shell; use one of %s", args[0], strings.Join(shells, ", "))
		}
	}
}

// structured reports whether -o asks for the whole object (JSON or YAML)
// rather than a table or names.
func (o *options) structured() bool {
	return o.output == FormatJSON || o.output == FormatYAML
}

// client loads the config and builds a gateway client.
func (o *options) client() (*client.Client, error) {
	cfg, _, err := client.LoadConfig(o.configPath)
	if err != nil {
		return nil, err
	}
	return client.New(cfg)
}

// resource kinds accepted by get, describe, delete and retry.
func kindOf(arg string) (string, error) {
	switch strings.ToLower(arg) {
	case "workload", "workloads", "wl":
		return "workload", nil
	case "node", "nodes", "no":
		return "node", nil
	case "service", "services", "svc":
		return "service", nil
	}
	return "", fmt.Errorf("unknown resource type %q: use workload, service or node", arg)
}
