package main

import (
	"encoding/json"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/persys-dev/compute/internal/bench"
)

// newBurstCommand is persys bench burst: a real cluster of one (persys
// dev, this binary, in a child process) against docker run -d.
func newBurstCommand() *cobra.Command {
	o := bench.BurstOptions{}
	var jsonOut string
	cmd := &cobra.Command{
		Use:   "burst",
		Short: "Apply --workloads containers at once to a real node (persys dev on the local Docker engine) and time until all RUNNING, against as many concurrent docker run -d of the same image; --rounds times, alternating",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			exe, err := os.Executable()
			if err != nil {
				return err
			}
			o.Persys, o.Progress = exe, os.Stderr
			rep, err := bench.RunBurst(ctx, o)
			if rep != nil {
				if terr := rep.WriteTable(os.Stdout); terr != nil && err == nil {
					err = terr
				}
				if jsonOut != "" {
					data, merr := json.MarshalIndent(rep, "", "  ")
					if merr == nil {
						merr = os.WriteFile(jsonOut, append(data, '\n'), 0o644)
					}
					if merr != nil && err == nil {
						err = fmt.Errorf("--json: %w", merr)
					}
				}
			}
			return err
		},
	}
	f := cmd.Flags()
	f.IntVar(&o.Workloads, "workloads", 100, "containers per round on each side (1-1000)")
	f.IntVar(&o.Rounds, "rounds", 3, "rounds, each persys then docker (1-100)")
	f.IntVar(&o.DockerConcurrency, "docker-concurrency", 0, "bound the docker side's creates and starts in flight (0: all at once); set to the scheduler's --agent-calls-per-node (64 in persys dev) to see what that bound costs")
	f.StringVar(&o.Image, "image", "persys-hello:latest", "image both sides run; it must be on the engine (never pulled): scripts/build-images.sh builds this one")
	f.StringVar(&o.Dir, "data-dir", filepath.Join(os.TempDir(), "persys-bench"), "folder under which the dev cluster's data folder is made (and removed at the end)")
	f.DurationVar(&o.Timeout, "timeout", 5*time.Minute, "bound on each wait")
	f.StringVar(&jsonOut, "json", "", "also write the report as JSON to this file")
	return cmd
}
