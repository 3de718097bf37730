package main

import (
	"encoding/json"
	"fmt"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/persys-dev/compute/internal/bench"
)

func newBenchCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "bench",
		Short: "Measure the control plane on this machine (real etcd, real scheduler)",
	}
	cmd.AddCommand(newSoakCommand())
	return cmd
}

func newSoakCommand() *cobra.Command {
	o := bench.SoakOptions{}
	var jsonOut string
	cmd := &cobra.Command{
		Use:   "soak",
		Short: "Create and delete workloads N times and show that etcd stays bounded",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if o.Cycles < 1 || o.Every < 1 {
				return fmt.Errorf("--cycles and --every must be positive")
			}
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			o.Progress = os.Stderr
			rep, err := bench.Soak(ctx, o)
			if err != nil {
				return err
			}
			fmt.Printf("%8s %9s %10s %12s %14s %6s\n", "CYCLES", "ELAPSED", "REVISION", "DB_MIB", "DB_IN_USE_MIB", "KEYS")
			for _, s := range rep.Samples {
				fmt.Printf("%8d %8.1fs %10d %12.2f %14.2f %6d\n", s.Cycles, s.ElapsedSec, s.Revision,
					float64(s.DBSize)/(1<<20), float64(s.DBSizeInUse)/(1<<20), s.Keys)
			}
			fmt.Printf("keys left besides expiring events: %d\n", rep.KeysLeft)
			if jsonOut != "" {
				data, _ := json.MarshalIndent(rep, "", "  ")
				if err := os.WriteFile(jsonOut, data, 0o644); err != nil {
					return err
				}
			}
			if rep.KeysLeft != 0 {
				return fmt.Errorf("%d keys left behind", rep.KeysLeft)
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.IntVar(&o.Cycles, "cycles", 10000, "create/delete cycles")
	f.IntVar(&o.Every, "every", 1000, "sample etcd every this many cycles")
	f.StringVar(&o.CompactionRetention, "compaction-retention", "1m", "embedded etcd periodic auto-compaction retention")
	f.DurationVar(&o.EventTTL, "event-ttl", time.Minute, "event retention")
	f.StringVar(&jsonOut, "json", "", "also write the report as JSON to this file")
	return cmd
}
