package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/persys-dev/compute/internal/bench"
)

// etcdFlags put a scenario's scheduler on an external etcd cluster of
// member processes (--etcd-members) instead of the embedded etcd.
type etcdFlags struct {
	members    int
	profileDir string
}

func (e *etcdFlags) register(f *pflag.FlagSet) {
	f.IntVar(&e.members, "etcd-members", 0, "run the scheduler on an external etcd cluster of this many members (1, 3, 5, 7), each in a process of its own, over TLS with peer and client certificate auth, real fsync unless --etcd-no-fsync (0: the embedded etcd)")
	f.StringVar(&e.profileDir, "etcd-cpuprofile-dir", "", "with --etcd-members: write each member's CPU profile of the measured phase to this folder (m0.cpu.pprof, ...)")
}

func (e *etcdFlags) validate() error {
	if e.members != 0 && !slices.Contains([]int{1, 3, 5, 7}, e.members) {
		return fmt.Errorf("--etcd-members %d: want 1, 3, 5 or 7 (0: embedded)", e.members)
	}
	if e.profileDir != "" && e.members == 0 {
		return fmt.Errorf("--etcd-cpuprofile-dir needs --etcd-members")
	}
	return nil
}

// run runs the scenario on the store the flags ask for; after writes what
// the store did (each member's share of the measured phase, database
// sizes) once the report is out.
func (e *etcdFlags) run(ctx context.Context, name string, o bench.Options) (rep *bench.Report, after func(io.Writer) error, err error) {
	if err := e.validate(); err != nil {
		return nil, nil, err
	}
	if name != bench.ScenarioThroughput {
		rep, err = bench.Run(ctx, name, o)
		return rep, nil, err
	}
	if e.members == 0 {
		rep, err = bench.Run(ctx, name, o)
		return rep, nil, err
	}
	profileDir := e.profileDir
	if profileDir != "" {
		if profileDir, err = filepath.Abs(profileDir); err != nil {
			return nil, nil, fmt.Errorf("--etcd-cpuprofile-dir: %w", err)
		}
		if err := os.MkdirAll(profileDir, 0o755); err != nil {
			return nil, nil, fmt.Errorf("--etcd-cpuprofile-dir: %w", err)
		}
	}
	etcd, err := bench.StartEtcdCluster(ctx, bench.EtcdClusterOptions{
		Members: e.members, Dir: o.Cluster.Dir, NoFsync: o.Cluster.EtcdNoFsync, QuotaBytes: o.Cluster.EtcdQuotaBytes, CPUProfileDir: profileDir, Progress: o.Progress,
	})
	if err != nil {
		return nil, nil, err
	}
	defer etcd.Close()
	o.Cluster.Etcd = etcd
	meter := etcd.Meter(profileDir != "")
	prev := o.Profile
	o.Profile = func() func() {
		stop := func() {}
		if prev != nil {
			stop = prev()
		}
		end := meter.Begin()
		return func() { stop(); end() }
	}
	rep, err = bench.Run(ctx, name, o)
	if ferr := etcd.Failed(); ferr != nil && err == nil {
		err = ferr
	}
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
	defer cancel()
	phase, perr := meter.Result(sctx)
	if perr != nil && err == nil {
		err = perr
	}
	return rep, func(w io.Writer) error {
		if phase == nil {
			return nil
		}
		return phase.WriteTable(w)
	}, err
}

// newBenchEtcdMemberCommand is the hidden command persys bench
// --etcd-members starts for each member: one etcd member, configured by
// the JSON argument, ending when its standard input closes.
func newBenchEtcdMemberCommand() *cobra.Command {
	return &cobra.Command{
		Use:    bench.EtcdMemberCommand + " CONFIG",
		Short:  "An etcd member of persys bench --etcd-members (started by it)",
		Hidden: true,
		Args:   cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return bench.RunEtcdMember(args[0], cmd.InOrStdin(), cmd.OutOrStdout())
		},
	}
}
