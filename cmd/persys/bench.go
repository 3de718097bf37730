package main

import (
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	pprofhttp "net/http/pprof"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/persys-dev/compute/internal/bench"
	"github.com/persys-dev/compute/internal/gctune"
	"github.com/persys-dev/compute/internal/manifest"
	"github.com/persys-dev/compute/internal/scheduler"
)

func newBenchCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "bench",
		Short: "Measure the control plane on this machine (real etcd, real scheduler)",
		Long: `Measure the control plane on this machine. Every scenario but soak starts,
in this one process (with --scheduler-process the scheduler runs in a child
process of its own), an embedded etcd, one scheduler and --nodes hollow agents
(real agents on the in-memory sim runtime), all talking gRPC over loopback:
by default the hollow agents share a few plaintext connections, each call
tagged with its node's identity (the simulator's transport; no daemon can
run without mTLS); with --mtls each node gets its own certificate (cached
per node id in --data-dir/pki) and mTLS connections. A table goes
to stdout, progress lines to stderr, and --json writes the full report.`,
	}
	cmd.AddCommand(newSoakCommand(),
		newScenarioCommand(bench.ScenarioThroughput, "Submit --workloads as fast as --concurrency submitters can; placements/s and time until all RUNNING", 200, 2000),
		newScenarioCommand(bench.ScenarioLatency, "Submit --workloads at --rate per second; submit-to-RUNNING latency percentiles", 200, 500),
		newScenarioCommand(bench.ScenarioNodeLoss, "With --workloads RUNNING, stop --loss-fraction of the nodes; time until their workloads run elsewhere, duplicates", 200, 2000),
		newScenarioCommand(bench.ScenarioChurn, "Create/update/delete over --workloads names for --duration; etcd growth, heartbeats/s, RSS", 200, 1000),
		newServicesCommand(),
		newWatchersCommand(),
		newBurstCommand(),
	)
	return cmd
}

// newWatchersCommand is the watchers scenario: its flags, its shape, and
// the scheduler in a process of its own by default so that its memory,
// goroutines and CPU per watcher are its own (the gateway always runs in
// one of its own).
func newWatchersCommand() *cobra.Command {
	o := &bench.Options{Cluster: bench.ClusterOptions{Nodes: 100}, Workloads: 10000}
	cmd := scenarioCommand(bench.ScenarioWatchers, "Open --watchers watchers of --workloads RUNNING workloads over gRPC and/or the gateway's NDJSON stream, make --changes changes; delivery latency to every watcher, exactly-once accounting, scheduler and gateway memory, goroutines and CPU per watcher", o)
	f := cmd.Flags()
	f.IntVar(&o.Watchers, "watchers", 1000, "concurrent watchers, each its own client and mTLS connection unless --conns (1-20000)")
	f.IntVar(&o.Changes, "changes", 300, "changes per transport, each a label change of one workload")
	f.StringVar(&o.WatchTransport, "transport", bench.WatchBoth, "grpc (WatchWorkloads to the scheduler), gateway (GET /v1/workloads?watch=true through a gateway process) or both, one after the other")
	f.IntVar(&o.WatchConns, "conns", 0, "clients (connections) the watchers share, round robin (0: one per watcher, as separate processes would have)")
	f.BoolVar(&o.WatchList, "list", false, "have every watcher start with the full list (watchers × workloads SNAPSHOT items) instead of resuming after the bench's own list")
	for name, val := range map[string]string{"scheduler-process": "true", "submit-batch": "100"} {
		_ = f.Set(name, val)
		f.Lookup(name).DefValue = val
	}
	return cmd
}

// newServicesCommand is the services scenario: the scenario flags, its
// shape, and the scheduler in a process of its own by default so that its
// CPU time per replaced instance is its own.
func newServicesCommand() *cobra.Command {
	o := &bench.Options{Cluster: bench.ClusterOptions{Nodes: 1000}}
	cmd := scenarioCommand(bench.ScenarioServices, "Create --services × --replicas, time until all available; roll every service (maxUnavailable 1, maxSurge 1), time until all updated, scheduler CPU per replaced instance", o)
	f := cmd.Flags()
	f.IntVar(&o.Services, "services", 1000, "services to create and roll (1-100000)")
	f.IntVar(&o.Replicas, "replicas", 10, "replicas per service (1-1000)")
	f.DurationVar(&o.Cluster.ReadyDelay, "ready-delay", time.Second, "sim runtime RUNNING → ready delay (its simulated readiness check)")
	_ = f.Set("scheduler-process", "true")
	f.Lookup("scheduler-process").DefValue = "true"
	_ = f.Set("timeout", "30m")
	f.Lookup("timeout").DefValue = "30m"
	return cmd
}

func newScenarioCommand(name, short string, nodes, workloads int) *cobra.Command {
	return scenarioCommand(name, short, &bench.Options{Cluster: bench.ClusterOptions{Nodes: nodes}, Workloads: workloads})
}

// scenarioCommand runs one scenario with o, which its flags fill.
func scenarioCommand(name, short string, o *bench.Options) *cobra.Command {
	var jsonOut, cpuProfile, memProfile, pprofAddr, nodeCPU, nodeMemory, etcdQuota string
	var etcd etcdFlags
	cmd := &cobra.Command{
		Use:   name,
		Short: short,
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			o.Progress = os.Stderr
			if err := nodeCapacity(&o.Cluster, nodeCPU, nodeMemory); err != nil {
				return err
			}
			if err := parseEtcdQuota(&o.Cluster, etcdQuota); err != nil {
				return err
			}
			for _, p := range []*string{&o.Cluster.SchedulerCPUProfile, &o.Cluster.SchedulerHeapProfile} {
				if *p != "" {
					abs, err := filepath.Abs(*p)
					if err != nil {
						return err
					}
					*p = abs
				}
			}
			if o.Cluster.Dir == "" {
				return fmt.Errorf("--data-dir: empty")
			}
			if err := os.MkdirAll(o.Cluster.Dir, 0o700); err != nil {
				return fmt.Errorf("--data-dir: %w", err)
			}
			if pprofAddr != "" {
				ln, err := net.Listen("tcp", pprofAddr)
				if err != nil {
					return fmt.Errorf("--pprof-addr: %w", err)
				}
				defer ln.Close()
				runtime.SetMutexProfileFraction(100)
				runtime.SetBlockProfileRate(int(time.Millisecond))
				fmt.Fprintf(os.Stderr, "bench: pprof on http://%s/debug/pprof/\n", ln.Addr())
				mux := http.NewServeMux()
				mux.HandleFunc("/debug/pprof/", pprofhttp.Index)
				mux.HandleFunc("/debug/pprof/profile", pprofhttp.Profile)
				mux.HandleFunc("/debug/pprof/symbol", pprofhttp.Symbol)
				srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
				go func() { _ = srv.Serve(ln) }()
			}
			if cpuProfile != "" {
				f, err := os.Create(cpuProfile)
				if err != nil {
					return fmt.Errorf("--cpuprofile: %w", err)
				}
				defer f.Close()
				o.CPUProfilePath = cpuProfile
				o.Profile = func() func() {
					if err := pprof.StartCPUProfile(f); err != nil {
						fmt.Fprintln(os.Stderr, "cpu profile:", err)
						return func() {}
					}
					return pprof.StopCPUProfile
				}
			}
			if memProfile != "" {
				o.AtEnd = func() {
					if err := bench.WriteHeapProfile(memProfile); err != nil {
						fmt.Fprintln(os.Stderr, "heap profile:", err)
					}
				}
			}
			rep, after, err := etcd.run(ctx, name, *o)
			if rep != nil {
				if terr := rep.WriteTable(os.Stdout); terr != nil && err == nil {
					err = terr
				}
				if after != nil {
					if terr := after(os.Stdout); terr != nil && err == nil {
						err = terr
					}
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
	f.IntVar(&o.Cluster.Nodes, "nodes", o.Cluster.Nodes, "hollow agents (1-20000)")
	if name != bench.ScenarioServices {
		f.IntVar(&o.Workloads, "workloads", o.Workloads, "workloads to submit (churn: names to churn over)")
	}
	f.Float64Var(&o.Rate, "rate", 0, "submissions per second (latency, default 50), operations per second (churn, 0: unlimited) or changes per second (watchers, 0: one at a time, each after every watcher saw the one before)")
	f.IntVar(&o.Concurrency, "concurrency", bench.DefaultConcurrency, "concurrent submitters")
	f.IntVar(&o.SubmitBatch, "submit-batch", 1, "workloads per submission: 1 calls ApplyWorkload, more call ApplyWorkloads as persysctl apply -f does with many documents (throughput, node-loss, churn's pool; at most 1000)")
	f.DurationVar(&o.Duration, "duration", 30*time.Second, "how long churn runs")
	f.Float64Var(&o.LossFraction, "loss-fraction", 0.1, "share of the nodes node-loss stops")
	f.DurationVar(&o.Timeout, "timeout", 5*time.Minute, "bound on each wait for convergence")
	if name == bench.ScenarioThroughput {
		etcd.register(f)
		f.DurationVar(&o.IdleSample, "idle-sample", 0, "after every workload runs, watch the cluster at rest this long: heartbeats and CPU per second (0: skip)")
		f.DurationVar(&o.TimelineEvery, "timeline-every", bench.DefaultTimelineEvery, "period of the report's timeline of placements, placements/s and RUNNING workloads")
	}
	f.DurationVar(&o.StallAfter, "stall-after", bench.DefaultStallAfter, "end a wait for convergence early, saying why, when nothing changed for this long and every workload not RUNNING is pending with no node that fits")
	f.StringVar(&nodeCPU, "node-cpu", "4", "each hollow node's CPU capacity, as in a manifest (4, 64, 2500m); placement uses up to 80% of it and a bench workload asks 10m")
	f.StringVar(&nodeMemory, "node-memory", "8Gi", "each hollow node's memory capacity, as in a manifest (8Gi, 64Gi); placement uses up to 80% of it and a bench workload asks 8Mi")
	f.DurationVar(&o.ProgressEvery, "progress-every", 3*time.Second, "period of the progress line on stderr")
	f.DurationVar(&o.Cluster.ApplyDelay, "apply-delay", 0, "sim runtime CREATING → RUNNING delay")
	f.DurationVar(&o.Cluster.HeartbeatInterval, "heartbeat-interval", 2*time.Second, "agent heartbeat interval")
	f.DurationVar(&o.Cluster.LeaseTTL, "lease-ttl", 0, "scheduler node lease TTL (0: scheduler default 10s)")
	f.DurationVar(&o.Cluster.RescheduleGrace, "grace", 0, "scheduler reschedule grace after a node is lost (0: scheduler default 10s)")
	f.IntVar(&o.Cluster.GCPercent, "gc-percent", gctune.DefaultPercent, "garbage collector target of the process that runs the scheduler, as persys scheduler --gc-percent (a GOGC environment variable wins)")
	f.IntVar(&o.Cluster.BenchGCPercent, "bench-gc-percent", 0, "with --scheduler-process: garbage collector target of the bench process, which runs the hollow nodes and the embedded etcd, with a soft memory limit of half the machine's memory (0: the Go default, 100, and no limit; GOGC and GOMEMLIMIT environment variables win)")
	f.Var(&o.Cluster.MemoryLimit, "scheduler-memory-limit", "soft memory limit of the process that runs the scheduler, as persys scheduler --memory-limit (3584MiB, 3.5GiB; a GOMEMLIMIT environment variable wins; 0: none)")
	f.IntVar(&o.Cluster.Workers, "workers", 0, fmt.Sprintf("scheduler reconcile workers (0: scheduler default %d)", scheduler.DefaultWorkers))
	f.StringVar(&o.Cluster.Dir, "data-dir", filepath.Join(os.TempDir(), "persys-bench"), "bench data folder: certificates cached by node id, etcd in a fresh subfolder")
	f.BoolVar(&o.Cluster.MTLS, "mtls", false, "give every hollow node its own certificate (cached in --data-dir/pki), its own mTLS connections and control stream, as real agents; the bench raises RLIMIT_NOFILE to the 2 descriptors per node and end it needs; default: a shared plaintext loopback transport")
	f.IntVar(&o.Cluster.MTLSConns, "mtls-conns", 2, "with --mtls: connections per node, 2 as a real agent dials them (calls, and the control stream on its own) or 1 carrying both (half the descriptors)")
	f.BoolVar(&o.Cluster.SchedulerProcess, "scheduler-process", false, "run the scheduler in a process of its own (this binary, re-executed), so its RSS and CPU time are its own figures; the hollow nodes and the embedded etcd stay in the bench process")
	f.StringVar(&o.Cluster.SchedulerCPUProfile, "scheduler-cpuprofile", "", "with --scheduler-process: write the scheduler process's CPU profile of the measured phase to this file; the report lists its top functions")
	f.StringVar(&etcdQuota, "etcd-quota", "", "backend quota of the embedded etcd and of --etcd-members, in bytes with units (8GiB, 8Gi; default: the store's 2 GiB); a run that fills it stops and says so")
	f.StringVar(&o.Cluster.SchedulerHeapProfile, "scheduler-memprofile", "", "with --scheduler-process: write the scheduler process's heap profile at the end to this file")
	f.BoolVar(&o.Cluster.EtcdNoFsync, "etcd-no-fsync", false, "turn etcd's fsync off (unsafe; shows what the disk costs)")
	f.IntVar(&o.Cluster.CertConcurrency, "cert-concurrency", 0, "concurrent certificate issuers (0: 2 per CPU)")
	f.IntVar(&o.Cluster.StartBatch, "start-batch", 250, "agents started (and registered) per batch")
	f.StringVar(&jsonOut, "json", "", "also write the report as JSON to this file")
	f.StringVar(&cpuProfile, "cpuprofile", "", "write a CPU profile of the measured phase to this file; the report lists its top functions")
	f.StringVar(&memProfile, "memprofile", "", "write a heap profile at the end of the scenario, cluster still running (go tool pprof -sample_index=inuse_space shows who holds what)")
	f.StringVar(&pprofAddr, "pprof-addr", "", "serve net/http/pprof (with mutex and block profiles) on this loopback address, e.g. 127.0.0.1:6060")
	return cmd
}

// nodeCapacity sets the hollow nodes' capacity from the --node-cpu and
// --node-memory quantities.
func nodeCapacity(c *bench.ClusterOptions, cpu, memory string) error {
	var err error
	if c.NodeCPUMillis, err = manifest.ParseCPU(cpu); err != nil {
		return fmt.Errorf("--node-cpu %q: %w", cpu, err)
	}
	if c.NodeCPUMillis < 1 {
		return fmt.Errorf("--node-cpu %q: must be at least 1m", cpu)
	}
	if c.NodeMemoryBytes, err = manifest.ParseBytes(memory); err != nil {
		return fmt.Errorf("--node-memory %q: %w", memory, err)
	}
	if c.NodeMemoryBytes < 1 {
		return fmt.Errorf("--node-memory %q: must be at least 1 byte", memory)
	}
	return nil
}

// parseEtcdQuota sets the etcd backend quota from --etcd-quota: a byte
// quantity as in a manifest, "GiB" read as "Gi"; empty keeps the default.
func parseEtcdQuota(c *bench.ClusterOptions, s string) error {
	if s == "" {
		return nil
	}
	q := strings.TrimSuffix(s, "B")
	if !strings.HasSuffix(q, "i") {
		q = s // "8G" or bytes: as written
	}
	n, err := manifest.ParseBytes(q)
	if err != nil {
		return fmt.Errorf("--etcd-quota %q: %w", s, err)
	}
	if n < 1<<20 {
		return fmt.Errorf("--etcd-quota %q: must be at least 1MiB", s)
	}
	c.EtcdQuotaBytes = n
	return nil
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

// newBenchGatewayProcessCommand is the hidden command persys bench
// watchers starts as its gateway: only the gateway, configured by the
// JSON argument, ending when its standard input closes.
func newBenchGatewayProcessCommand() *cobra.Command {
	return &cobra.Command{
		Use:    bench.GatewayProcessCommand + " CONFIG",
		Short:  "The gateway process of persys bench watchers (started by it)",
		Hidden: true,
		Args:   cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return bench.RunGatewayProcess(args[0], cmd.InOrStdin(), cmd.OutOrStdout())
		},
	}
}

// newBenchSchedulerProcessCommand is the hidden command persys bench
// --scheduler-process starts as its child: only the scheduler, configured
// by the JSON argument, ending when its standard input closes.
func newBenchSchedulerProcessCommand() *cobra.Command {
	return &cobra.Command{
		Use:    bench.SchedulerProcessCommand + " CONFIG",
		Short:  "The scheduler process of persys bench (started by it)",
		Hidden: true,
		Args:   cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return bench.RunSchedulerProcess(args[0], cmd.InOrStdin(), cmd.OutOrStdout())
		},
	}
}
