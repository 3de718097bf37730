package bench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"os"
	goruntime "runtime"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	persysv1 "github.com/persys-dev/compute/api/persys/v1"
	"github.com/persys-dev/compute/api/persys/v1/persysv1grpc"
	"github.com/persys-dev/compute/internal/gctune"
	"github.com/persys-dev/compute/internal/scheduler"
)

// Scenario names accepted by Run.
const (
	ScenarioThroughput = "throughput"
	ScenarioLatency    = "latency"
	ScenarioNodeLoss   = "node-loss"
	ScenarioChurn      = "churn"
)

// Scheduler defaults, shown in reports when the options leave them zero.
const (
	schedulerLeaseTTL = 10 * time.Second
	schedulerGrace    = 10 * time.Second
)

// DefaultConcurrency is how many submitters run at once by default: enough
// that the submissions' own round trips are not what bounds a throughput
// run (16 submitted about 1,500/s at 5,000 nodes, 128 about 5,000/s).
const DefaultConcurrency = 128

// Options configure one scenario run.
type Options struct {
	Cluster ClusterOptions
	// Workloads to submit (throughput, latency, node-loss) or the pool of
	// names to churn over.
	Workloads int
	// Rate is submissions per second (latency, default 50) or operations
	// per second (churn, 0: as fast as the submitters go).
	Rate float64
	// Concurrency is the number of concurrent submitters (default
	// DefaultConcurrency).
	Concurrency int
	// SubmitBatch is how many workloads one submission carries (default
	// 1: ApplyWorkload; more: ApplyWorkloads, as persysctl apply -f does
	// with a file of many documents). Throughput, node-loss and churn's
	// pool only; latency submits one at a time.
	SubmitBatch int
	// Services and Replicas shape the services scenario (Workloads is
	// then their product).
	Services, Replicas int
	// Watchers, Changes, WatchTransport and WatchList shape the watchers
	// scenario: Watchers clients over WatchTransport (grpc, gateway or
	// both, one after the other) see Changes changes each phase; with
	// WatchList each starts with the full list instead of resuming after
	// the bench's own list; WatchConns clients are shared by the watchers
	// round robin (0: each its own). Rate is then changes per second (0:
	// one at a time, each after every watcher saw the one before).
	Watchers, Changes, WatchConns int
	WatchTransport                string
	WatchList                     bool
	// Duration of the churn (default 30s).
	Duration time.Duration
	// LossFraction of the nodes node-loss stops (default 0.1).
	LossFraction float64
	// Timeout bounds each wait for convergence (default 5m).
	Timeout time.Duration
	// IdleSample, when positive, has throughput watch the cluster at rest
	// this long after every workload runs: heartbeats and CPU per second.
	IdleSample time.Duration
	// StallAfter ends a wait for convergence early when nothing changed
	// for this long and every workload not RUNNING is pending with no
	// node that fits (default DefaultStallAfter).
	StallAfter time.Duration
	// ProgressEvery is the period of the progress line (default 3s).
	ProgressEvery time.Duration
	// TimelineEvery is the period of the throughput run's timeline of
	// placements and RUNNING workloads (default DefaultTimelineEvery).
	TimelineEvery time.Duration
	// CPUProfilePath names the bench process's CPU profile of the
	// measured phase (what Profile writes), for the report's top
	// functions; empty: none.
	CPUProfilePath string
	// Progress receives progress lines; nil is silent.
	Progress io.Writer
	// Profile, when set, is called as the measured phase starts; the
	// function it returns is called as it ends (a CPU profile, say).
	Profile func() (stop func())
	// AtEnd, when set, is called after the scenario, while the cluster
	// still runs (a heap profile, say).
	AtEnd func()
}

// scenarioDefaults checks and fills the options of one scenario only.
func (o *Options) scenarioDefaults(scenario string) error {
	switch scenario {
	case ScenarioServices:
		return o.servicesDefaults()
	case ScenarioWatchers:
		return o.watchersDefaults()
	}
	return nil
}

func (o *Options) defaults(scenario string) error {
	if err := o.scenarioDefaults(scenario); err != nil {
		return err
	}
	if o.Workloads < 1 || o.Workloads > 1_000_000 {
		return fmt.Errorf("bench: workloads %d: must be between 1 and 1000000", o.Workloads)
	}
	if o.Rate < 0 || math.IsNaN(o.Rate) || math.IsInf(o.Rate, 0) {
		return fmt.Errorf("bench: rate %v: must be a non-negative number", o.Rate)
	}
	if o.Rate == 0 && scenario == ScenarioLatency {
		o.Rate = 50
	}
	if o.Concurrency < 0 || o.Concurrency > 10000 {
		return fmt.Errorf("bench: concurrency %d: must be between 1 and 10000", o.Concurrency)
	}
	if o.Concurrency == 0 {
		o.Concurrency = DefaultConcurrency
	}
	if o.SubmitBatch < 0 || o.SubmitBatch > scheduler.MaxApplyItems {
		return fmt.Errorf("bench: submit batch %d: must be between 1 and %d", o.SubmitBatch, scheduler.MaxApplyItems)
	}
	if o.SubmitBatch == 0 {
		o.SubmitBatch = 1
	}
	if o.Duration < 0 {
		return fmt.Errorf("bench: duration %s: must not be negative", o.Duration)
	}
	if o.Duration == 0 {
		o.Duration = 30 * time.Second
	}
	if o.LossFraction < 0 || o.LossFraction >= 1 {
		return fmt.Errorf("bench: loss fraction %v: must be in [0, 1)", o.LossFraction)
	}
	if o.LossFraction == 0 {
		o.LossFraction = 0.1
	}
	if o.Timeout < 0 {
		return fmt.Errorf("bench: timeout %s: must not be negative", o.Timeout)
	}
	if o.Timeout == 0 {
		o.Timeout = 5 * time.Minute
	}
	if o.StallAfter < 0 || o.IdleSample < 0 {
		return fmt.Errorf("bench: stall-after %s, idle-sample %s: must not be negative", o.StallAfter, o.IdleSample)
	}
	if o.StallAfter == 0 {
		o.StallAfter = DefaultStallAfter
	}
	if o.ProgressEvery <= 0 {
		o.ProgressEvery = 3 * time.Second
	}
	if o.TimelineEvery < 0 {
		return fmt.Errorf("bench: timeline period %s: must not be negative", o.TimelineEvery)
	}
	if o.TimelineEvery == 0 {
		o.TimelineEvery = DefaultTimelineEvery
	}
	if o.Progress == nil {
		o.Progress = io.Discard
	}
	if o.Cluster.Progress == nil {
		o.Cluster.Progress = o.Progress
	}
	return nil
}

func (o *Options) params() Params {
	orDefault := func(d, def time.Duration) float64 { return durationOr(d, def).Seconds() }
	workers := o.Cluster.Workers
	if workers == 0 {
		workers = scheduler.DefaultWorkers
	}
	// The TTL the last nodes to register get; the first ones start with
	// a shorter one, extended as the cluster grows.
	ttl := scheduler.LeaseTTLFor(o.Cluster.Nodes, durationOr(o.Cluster.LeaseTTL, schedulerLeaseTTL), scheduler.DefaultMaxHeartbeatRate)
	return Params{
		Nodes: o.Cluster.Nodes, Workloads: o.Workloads, Rate: o.Rate, Concurrency: o.Concurrency, SubmitBatch: o.SubmitBatch,
		ApplyDelayMs:  float64(o.Cluster.ApplyDelay) / float64(time.Millisecond),
		NodeCPUMillis: o.Cluster.NodeCPUMillis, NodeMemoryBytes: o.Cluster.NodeMemoryBytes,
		ReadyDelayMs: float64(o.Cluster.ReadyDelay) / float64(time.Millisecond),
		Services:     o.Services, Replicas: o.Replicas,
		HeartbeatIntervalMs: float64(o.Cluster.HeartbeatInterval) / float64(time.Millisecond),
		HeartbeatEffectiveMs: float64(scheduler.HeartbeatInterval(o.Cluster.Nodes, durationOr(o.Cluster.HeartbeatInterval, 2*time.Second),
			ttl, scheduler.DefaultMaxHeartbeatRate)) / float64(time.Millisecond),
		LeaseTTLSec:      ttl.Seconds(),
		GraceSec:         orDefault(o.Cluster.RescheduleGrace, schedulerGrace),
		SchedulerWorkers: workers, GC: gcTarget(o.Cluster.GCPercent, o.Cluster.BenchGCPercent), EtcdNoFsync: o.Cluster.EtcdNoFsync, CPUs: goruntime.GOMAXPROCS(0),
		Transport:        map[bool]string{true: "mtls", false: "shared"}[o.Cluster.MTLS],
		SchedulerProcess: o.Cluster.SchedulerProcess,
		Etcd:             o.Cluster.Etcd.describe(),
		MTLSConns:        map[bool]int{true: o.Cluster.MTLSConns}[o.Cluster.MTLS],
	}
}

// Run starts a hollow cluster, runs the named scenario on it and tears it
// down.
func Run(ctx context.Context, scenario string, o Options) (*Report, error) {
	var fn func(ctx context.Context, c *Cluster, o *Options, rep *Report) error
	switch scenario {
	case ScenarioThroughput:
		fn = throughput
	case ScenarioLatency:
		fn = latency
	case ScenarioNodeLoss:
		fn = nodeLoss
	case ScenarioChurn:
		fn = churn
	case ScenarioServices:
		fn = services
	case ScenarioWatchers:
		fn = watchers
	default:
		return nil, fmt.Errorf("bench: scenario %q: unknown (throughput, latency, node-loss, churn, services, watchers)", scenario)
	}
	if err := o.defaults(scenario); err != nil {
		return nil, err
	}
	load := loadAverage()
	c, err := StartCluster(ctx, o.Cluster)
	if err != nil {
		return nil, err
	}
	defer c.Close()
	rep := &Report{Scenario: scenario, Setup: c.Setup, LoadBefore: load}
	defer func() { rep.LoadAfter = loadAverage() }()
	// StartCluster filled the cluster defaults; show them.
	o.Cluster = c.opts
	rep.Params = o.params()
	switch scenario {
	case ScenarioChurn:
		rep.Params.DurationSec = o.Duration.Seconds()
	case ScenarioNodeLoss:
		rep.Params.LossFraction = o.LossFraction
	case ScenarioWatchers:
		rep.Params.Watchers, rep.Params.Changes, rep.Params.WatchTransport = o.Watchers, o.Changes, o.WatchTransport
	}
	err = fn(ctx, c, &o, rep)
	workloads := o.Workloads
	if err != nil || scenario == ScenarioChurn || scenario == ScenarioNodeLoss || scenario == ScenarioWatchers {
		workloads = 0 // not what the phase's CPU went to, or not all of them placed
	}
	rep.CPU = c.phase.cpu
	if st, ok := c.SchedulerProcess(); ok {
		rep.SchedulerProcess = &st
	}
	c.endFigures(ctx, &o, rep)
	rep.Table = append(rep.Table, c.phase.rows(c, workloads, goalFor(goalSchedulerRSS, shapeOf(scenario, &o)))...)
	if err != nil {
		return rep, err
	}
	if o.AtEnd != nil {
		o.AtEnd()
	}
	if c.opts.SchedulerHeapProfile != "" && c.proc != nil {
		if err := c.HeapProfileScheduler(); err != nil {
			fmt.Fprintln(o.Progress, "bench: scheduler heap profile:", err)
		}
	}
	return rep, c.failed()
}

// endFigures adds to the report what the processes, etcd and the CPU
// profiles show at the end of the scenario, whether it converged or not.
func (c *Cluster) endFigures(ctx context.Context, o *Options, rep *Report) {
	rep.Processes = c.processes()
	if db, err := c.etcdDB(context.WithoutCancel(ctx)); err == nil {
		rep.Etcd = &db
	} else {
		fmt.Fprintln(o.Progress, "bench: etcd database size:", err)
	}
	for _, p := range []struct{ process, path string }{{"bench", o.CPUProfilePath}, {"scheduler", c.opts.SchedulerCPUProfile}} {
		if p.path == "" {
			continue
		}
		top, err := TopOfProfile(p.path, cpuTopN)
		if err != nil {
			fmt.Fprintln(o.Progress, "bench: top of the CPU profile:", err)
			continue
		}
		top.Process = p.process
		rep.CPUTop = append(rep.CPUTop, top)
	}
}

func benchSpec(image string) *persysv1.WorkloadSpec {
	return &persysv1.WorkloadSpec{
		Type:         persysv1.WorkloadType_WORKLOAD_TYPE_CONTAINER,
		DesiredState: persysv1.DesiredState_DESIRED_STATE_RUNNING,
		Resources:    &persysv1.Resources{CpuMillis: 10, MemoryBytes: 8 << 20},
		Container:    &persysv1.ContainerSpec{Image: image, RestartPolicy: "no"},
	}
}

// progress prints a line every o.ProgressEvery until the returned stop is
// called: elapsed time, the scenario's own words, and the scheduler's
// placements, queue depth, heartbeat rate and the process's RSS.
func progress(c *Cluster, o *Options, name string, extra func() string) (stop func()) {
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		start := time.Now()
		t := time.NewTicker(o.ProgressEvery)
		defer t.Stop()
		lastHB, lastAt := -1.0, start
		for {
			select {
			case <-done:
				return
			case now := <-t.C:
				g, err := gauges(c.Registry, metricPlacements, metricQueue, metricHeartbeats)
				if err != nil {
					continue
				}
				hbRate := 0.0
				if lastHB >= 0 {
					hbRate = (g[metricHeartbeats] - lastHB) / now.Sub(lastAt).Seconds()
				}
				lastHB, lastAt = g[metricHeartbeats], now
				ps := procStats()
				sched := ""
				if st, ok := c.SchedulerProcess(); ok {
					sched = fmt.Sprintf("  scheduler rss %.0f MiB", st.RSSMiB)
				}
				fmt.Fprintf(o.Progress, "%s %6.1fs  %s  placements %.0f  queue %.0f  heartbeats %.0f/s  rss %.0f MiB%s  goroutines %d\n",
					name, now.Sub(start).Seconds(), extra(), g[metricPlacements], g[metricQueue], hbRate, ps.RSSMiB, sched, ps.Goroutines)
			}
		}
	}()
	return func() { close(done); wg.Wait() }
}

// profile starts the measured phase: its CPU time, the bench's CPU
// profile (o.Profile) and the scheduler process's (o.SchedulerCPUProfile).
// The function it returns ends them; calling it again does nothing.
func profile(c *Cluster, o *Options) func() {
	stop := func() {}
	if o.Profile != nil {
		stop = o.Profile()
	}
	var stopSched func() error
	if c.opts.SchedulerCPUProfile != "" && c.proc != nil {
		var err error
		if stopSched, err = c.ProfileScheduler(); err != nil {
			fmt.Fprintln(o.Progress, "bench: scheduler CPU profile:", err)
		}
	}
	c.phase.begin(c)
	var once sync.Once
	return func() {
		once.Do(func() {
			c.phase.end(c)
			stop()
			if stopSched != nil {
				if err := stopSched(); err != nil {
					fmt.Fprintln(o.Progress, "bench: scheduler CPU profile:", err)
				}
			}
		})
	}
}

// submitAll applies names with o.Concurrency submitters as fast as the
// scheduler takes them, o.SubmitBatch per call; it returns each call's
// duration and the workloads that were not applied.
func submitAll(ctx context.Context, c *Cluster, o *Options, names []string, image string, done *atomic.Int64) ([]time.Duration, int, error) {
	batch := max(o.SubmitBatch, 1)
	durs := make([]time.Duration, (len(names)+batch-1)/batch)
	var (
		next  atomic.Int64
		errs  atomic.Int64
		mu    sync.Mutex
		first error
		wg    sync.WaitGroup
	)
	fail := func(name string, err error) {
		errs.Add(1)
		mu.Lock()
		if first == nil {
			first = fmt.Errorf("apply %s: %w", name, err)
		}
		mu.Unlock()
	}
	for k := range o.Concurrency {
		wg.Add(1)
		go func() {
			defer wg.Done()
			cli := c.Control(k)
			for ctx.Err() == nil && c.failed() == nil {
				call := int(next.Add(1)) - 1
				lo := call * batch
				if lo >= len(names) {
					return
				}
				chunk := names[lo:min(lo+batch, len(names))]
				start := time.Now()
				if batch == 1 {
					_, err := cli.ApplyWorkload(ctx, &persysv1.ApplyRequest{Name: chunk[0], Spec: benchSpec(image)})
					if err != nil {
						fail(chunk[0], err)
					}
				} else {
					items := make([]*persysv1.ApplyRequest, len(chunk))
					for i, n := range chunk {
						items[i] = &persysv1.ApplyRequest{Name: n, Spec: benchSpec(image)}
					}
					resp, err := cli.ApplyWorkloads(ctx, &persysv1.ApplyWorkloadsRequest{Items: items})
					switch {
					case err != nil:
						for _, n := range chunk {
							fail(n, err)
						}
					case len(resp.GetResults()) != len(chunk):
						for _, n := range chunk {
							fail(n, fmt.Errorf("%d results for %d items", len(resp.GetResults()), len(chunk)))
						}
					default:
						for _, r := range resp.GetResults() {
							if r.GetErrorCode() != 0 {
								fail(r.GetName(), errors.New(r.GetErrorMessage()))
							}
						}
					}
				}
				durs[call] = time.Since(start)
				if done != nil {
					done.Add(int64(len(chunk)))
				}
			}
		}()
	}
	wg.Wait()
	if err := ctx.Err(); err != nil {
		return durs, int(errs.Load()), err
	}
	return durs, int(errs.Load()), first
}

// submitRows are the report's rows on the submissions.
func submitRows(o *Options, submitted, errs int, sec, rate float64, rpc Dist) []Row {
	what, call := "submitted (ApplyWorkload)", "ApplyWorkload RPC"
	if o.SubmitBatch > 1 {
		what = fmt.Sprintf("submitted (ApplyWorkloads, %d per call)", o.SubmitBatch)
		call = "ApplyWorkloads RPC (one call)"
	}
	return []Row{
		{what, fmt.Sprintf("%d in %.2fs = %.0f/s, %d errors", submitted, sec, rate, errs), ""},
		{call, rpc.String(), ""},
	}
}

// runningCount reads how many workloads are RUNNING from the scheduler's
// persys_scheduler_workloads gauge, as a Prometheus scrape would: polled
// ten times a second, it costs the scheduler next to nothing.
func runningCount(_ context.Context, c *Cluster) (running, total int, err error) {
	mfs, err := c.Registry.Gather()
	if err != nil {
		return 0, 0, fmt.Errorf("bench: gather metrics: %w", err)
	}
	for _, mf := range mfs {
		if mf.GetName() != metricWorkloads {
			continue
		}
		for _, m := range mf.GetMetric() {
			n := int(m.GetGauge().GetValue())
			total += n
			for _, l := range m.GetLabel() {
				if l.GetName() == "state" && l.GetValue() == "RUNNING" {
					running += n
				}
			}
		}
	}
	return running, total, nil
}

// waitRunning polls the scheduler until want workloads are RUNNING. It
// ends early, saying why, when nothing changes for stallAfter and every
// workload not RUNNING is pending with no node that fits.
func waitRunning(ctx context.Context, c *Cluster, want int, timeout, stallAfter time.Duration) error {
	start := time.Now()
	wctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	sw := newStallWatch(stallAfter, start)
	for {
		p, r, pend, err := progressOf(c)
		if err == nil && r >= want {
			return nil
		}
		if err == nil && sw.stalled(time.Now(), p, r, pend) && pend > 0 {
			if _, _, stuck, err := pendingWhy(wctx, c); err == nil && stuck {
				return fmt.Errorf("bench: %s", unfinishedAt(ctx, c, want, start, true))
			}
			sw.restart(time.Now())
		}
		if err := c.failed(); err != nil {
			return err
		}
		if !sleepCtx(wctx, 100*time.Millisecond) {
			return fmt.Errorf("bench: %s", unfinishedAt(ctx, c, want, start, false))
		}
	}
}

func names(prefix string, n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprintf("%s-%06d", prefix, i)
	}
	return out
}

// spread lists every workload and counts them per node, checking that all
// are RUNNING.
func spread(ctx context.Context, c *Cluster) (minPer, maxPer, notRunning int, err error) {
	resp, err := c.Control(0).ListWorkloads(ctx, &persysv1.ListWorkloadsRequest{}, bigList)
	if err != nil {
		return 0, 0, 0, fmt.Errorf("bench: list workloads: %w", err)
	}
	per := map[string]int{}
	for _, h := range c.Live() {
		per[h.ID] = 0
	}
	for _, v := range resp.GetWorkloads() {
		if v.GetStatus().GetState() != persysv1.ActualState_ACTUAL_STATE_RUNNING {
			notRunning++
		}
		per[v.GetAssignment().GetNodeId()]++
	}
	minPer = math.MaxInt
	for _, n := range per {
		minPer, maxPer = min(minPer, n), max(maxPer, n)
	}
	return minPer, maxPer, notRunning, nil
}

// ThroughputResult is the outcome of the throughput scenario.
type ThroughputResult struct {
	Submitted    int     `json:"submitted"`
	SubmitErrors int     `json:"submit_errors"`
	SubmitSec    float64 `json:"submit_s"`
	SubmitRate   float64 `json:"submits_per_s"`
	ApplyRPC     Dist    `json:"apply_rpc"`
	Placements   int     `json:"placements"`
	PlacedSec    float64 `json:"all_placed_s"`
	PlacementsPS float64 `json:"placements_per_s"`
	RunningSec   float64 `json:"all_running_s"`
	PerNodeMin   int     `json:"per_node_min"`
	PerNodeMax   int     `json:"per_node_max"`
	NotRunning   int     `json:"not_running"`
	Duplicates   int     `json:"duplicates"`
	// NodesLost counts nodes that turned NotReady during the run: with no
	// node stopped, each is a heartbeat handled too late.
	NodesLost int `json:"nodes_lost"`
	// LeaseMoves counts nodes moved to a longer lease as the cluster grew:
	// four etcd writes each (see the scheduler's LeaseExtensionRate).
	LeaseMoves int       `json:"lease_moves"`
	Proc       ProcStats `json:"process"`
	// Unfinished says how far a run that did not converge got, and why.
	Unfinished *Unfinished `json:"unfinished,omitempty"`
	// Idle is the cluster at rest afterwards (with Options.IdleSample).
	Idle *IdleResult `json:"idle,omitempty"`
	// Scheduler holds its own timing histograms (bucket bounds).
	Scheduler map[string]Histo `json:"scheduler_timings"`
	// AgentApplies are the scheduler's agent calls, timed one by one by the
	// bench (in-process scheduler only).
	AgentApplies Dist `json:"agent_applies_exact"`
}

func throughput(ctx context.Context, c *Cluster, o *Options, rep *Report) error {
	ns := names("tp", o.Workloads)
	var submitted atomic.Int64
	var placed, running atomic.Int64
	stopProgress := progress(c, o, "throughput", func() string {
		return fmt.Sprintf("submitted %d/%d  running %d", submitted.Load(), len(ns), running.Load())
	})
	defer stopProgress()

	stopProfile := profile(c, o)
	start := time.Now()
	// Watch placements (the durable counter) and RUNNING (the API) while
	// submitting.
	watchCtx, cancelWatch := context.WithTimeout(ctx, o.Timeout)
	defer cancelWatch()
	var placedAt, runningAt time.Time
	var unfinished *Unfinished
	tl := newTimeline(start, o.TimelineEvery)
	watchDone := make(chan error, 1)
	go func() {
		sw := newStallWatch(o.StallAfter, start)
		// The timeline ends with the run, however it ends.
		finish := func(err error) {
			tl.observe(time.Now(), int(placed.Load()), int(running.Load()), true)
			watchDone <- err
		}
		for {
			p, r, pend, err := progressOf(c)
			now := time.Now()
			if err == nil {
				placed.Store(int64(p))
				running.Store(int64(r))
				tl.observe(now, p, r, false)
				if placedAt.IsZero() && p >= len(ns) {
					placedAt = now
				}
				if r >= len(ns) {
					runningAt = now
					if placedAt.IsZero() {
						placedAt = runningAt
					}
					finish(nil)
					return
				}
				// Submissions done and nothing moves: ask the scheduler
				// whether what is left can be placed at all.
				if int(submitted.Load()) >= len(ns) && sw.stalled(now, p, r, pend) && pend > 0 {
					if _, _, stuck, err := pendingWhy(watchCtx, c); err == nil && stuck {
						unfinished = unfinishedAt(ctx, c, len(ns), start, true)
						finish(fmt.Errorf("bench: %s", unfinished))
						return
					}
					sw.restart(now)
				}
			}
			// A part that failed (etcd out of space, say) ends the run
			// now, not at the timeout.
			if err := c.failed(); err != nil {
				unfinished = unfinishedAt(ctx, c, len(ns), start, false)
				finish(err)
				return
			}
			if !sleepCtx(watchCtx, 100*time.Millisecond) {
				unfinished = unfinishedAt(ctx, c, len(ns), start, false)
				finish(fmt.Errorf("bench: %s", unfinished))
				return
			}
		}
	}()
	durs, errs, err := submitAll(ctx, c, o, ns, "bench:v1", &submitted)
	submitSec := time.Since(start).Seconds()
	if err != nil {
		cancelWatch()
		<-watchDone
		rep.Timeline = tl.samples
		stopProfile()
		rep.Table = append(rep.Table, Row{"submitted before the error", fmt.Sprintf("%d of %d in %.2fs, %d errors", submitted.Load(), len(ns), submitSec, errs), ""},
			Row{"placed, RUNNING at the error", fmt.Sprintf("%d, %d", placed.Load(), running.Load()), ""}, lostRow(c))
		if ferr := c.failed(); ferr != nil {
			return ferr // why the submissions failed
		}
		return err
	}
	werr := <-watchDone
	rep.Timeline = tl.samples
	stopProfile()
	res := ThroughputResult{Submitted: len(ns), SubmitErrors: errs, SubmitSec: submitSec,
		SubmitRate: float64(len(ns)) / submitSec, ApplyRPC: distOf(durs), Placements: int(placed.Load())}
	if werr != nil {
		// Show how far it got, and no rate: an unfinished run has none.
		res.Unfinished = unfinished
		rep.Result = res
		rep.Table = submitRows(o, res.Submitted, res.SubmitErrors, res.SubmitSec, res.SubmitRate, res.ApplyRPC)
		if unfinished != nil {
			rep.Table = append(rep.Table, Row{Metric: "unfinished", Value: unfinished.String()})
		}
		rep.Table = append(rep.Table, lostRow(c))
		return werr
	}
	res.PlacedSec, res.RunningSec = placedAt.Sub(start).Seconds(), runningAt.Sub(start).Seconds()
	res.PlacementsPS = float64(len(ns)) / res.PlacedSec
	if res.PerNodeMin, res.PerNodeMax, res.NotRunning, err = spread(ctx, c); err != nil {
		return err
	}
	if res.Duplicates, err = c.Duplicates(ctx); err != nil {
		return err
	}
	if g, err := gauges(c.Registry, metricNodeLosses, metricLeaseMoves); err == nil {
		res.NodesLost, res.LeaseMoves = int(g[metricNodeLosses]), int(g[metricLeaseMoves])
	}
	res.Proc = procStats()
	rep.Result = res
	at := shapeOf(ScenarioThroughput, o)
	rep.Table = append(submitRows(o, res.Submitted, res.SubmitErrors, res.SubmitSec, res.SubmitRate, res.ApplyRPC), []Row{
		{"placements/s", fmt.Sprintf("%.0f (all %d placed after %.2fs)", res.PlacementsPS, len(ns), res.PlacedSec), goalFor(goalPlacementRate, at)},
		{"all RUNNING after", fmt.Sprintf("%.2fs", res.RunningSec), goalFor(goalAllRunning, at)},
		{"workloads per node", fmt.Sprintf("min %d, max %d", res.PerNodeMin, res.PerNodeMax), ""},
		{"not RUNNING at the end", fmt.Sprint(res.NotRunning), "0"},
		{"duplicates", fmt.Sprint(res.Duplicates), "0"},
		{"nodes lost (a heartbeat handled late)", fmt.Sprint(res.NodesLost), "0"},
		{"node lease moves (the cluster outgrew a lease)", fmt.Sprint(res.LeaseMoves), ""},
		{"process RSS (peak)", fmt.Sprintf("%.0f MiB (%.0f MiB)", res.Proc.RSSMiB, res.Proc.PeakRSSMiB), ""},
		{"Go heap in use, goroutines", fmt.Sprintf("%.0f MiB, %d", res.Proc.HeapMiB, res.Proc.Goroutines), ""},
	}...)
	var rows []Row
	res.AgentApplies = c.agentApplies.dist()
	res.Scheduler, rows = schedulerTimings(c.Registry, res.AgentApplies)
	rep.Result = res
	rep.Table = append(rep.Table, rows...)
	if o.IdleSample > 0 {
		idle, err := idleSample(ctx, c, o.IdleSample)
		if err != nil {
			return err
		}
		res.Idle = &idle
		rep.Result = res
		_, apart := c.SchedulerProcess()
		rep.Table = append(rep.Table, idleRows(idle, len(ns), len(c.Nodes), apart)...)
	}
	return nil
}

// lostRow counts the nodes the scheduler declared lost so far.
func lostRow(c *Cluster) Row {
	v := "?"
	if g, err := gauges(c.Registry, metricNodeLosses); err == nil {
		v = fmt.Sprint(int(g[metricNodeLosses]))
	}
	return Row{"nodes lost (a heartbeat handled late)", v, "0"}
}

// LatencyResult is the outcome of the latency scenario.
type LatencyResult struct {
	Submitted    int       `json:"submitted"`
	Failed       int       `json:"failed"`
	FirstError   string    `json:"first_error,omitempty"`
	TargetRate   float64   `json:"target_rate"`
	AchievedRate float64   `json:"achieved_rate"`
	SubmitToRun  Dist      `json:"submit_to_running"`
	ApplyRPC     Dist      `json:"apply_rpc"`
	Proc         ProcStats `json:"process"`
	// Scheduler holds its own timing histograms (bucket bounds).
	Scheduler map[string]Histo `json:"scheduler_timings"`
	// AgentApplies are the scheduler's agent calls, timed one by one by the
	// bench (in-process scheduler only).
	AgentApplies Dist `json:"agent_applies_exact"`
	// Unfinished says how far a run that stalled got, and why.
	Unfinished *Unfinished `json:"unfinished,omitempty"`
}

func latency(ctx context.Context, c *Cluster, o *Options, rep *Report) error {
	ns := names("lat", o.Workloads)
	var (
		mu         sync.Mutex
		lats, rpcs []time.Duration
		failed     int
		firstErr   error
		wg         sync.WaitGroup
		launched   atomic.Int64
		finished   atomic.Int64
	)
	stopProgress := progress(c, o, "latency", func() string {
		return fmt.Sprintf("submitted %d/%d  running %d", launched.Load(), len(ns), finished.Load())
	})
	defer stopProgress()
	// runCtx ends the waits early when the run stalls with nothing left
	// that can be placed.
	runCtx, cancelRun := context.WithCancel(ctx)
	defer cancelRun()
	one := func(i int) {
		defer wg.Done()
		wctx, cancel := context.WithTimeout(runCtx, o.Timeout)
		defer cancel()
		cli := c.Control(i)
		start := time.Now()
		_, err := cli.ApplyWorkload(wctx, &persysv1.ApplyRequest{Name: ns[i], Spec: benchSpec("bench:v1")})
		rpc := time.Since(start)
		if err == nil {
			err = waitState(wctx, cli, ns[i], persysv1.ActualState_ACTUAL_STATE_RUNNING)
		}
		lat := time.Since(start)
		mu.Lock()
		defer mu.Unlock()
		if err != nil {
			failed++
			if firstErr == nil {
				firstErr = fmt.Errorf("%s: %w", ns[i], err)
			}
			return
		}
		finished.Add(1)
		lats, rpcs = append(lats, lat), append(rpcs, rpc)
	}
	stopProfile := profile(c, o)
	start := time.Now()
	stall := watchStall(ctx, c, len(ns), o.StallAfter, start, func() bool { return launched.Load() >= int64(len(ns)) }, cancelRun)
	interval := time.Duration(float64(time.Second) / o.Rate)
	var lastLaunch time.Time
	for i := range ns {
		at := start.Add(time.Duration(i) * interval)
		if d := time.Until(at); d > 0 && !sleepCtx(ctx, d) {
			break
		}
		lastLaunch = time.Now()
		wg.Add(1)
		launched.Add(1)
		go one(i)
	}
	wg.Wait()
	unfinished := stall()
	stopProfile()
	if err := ctx.Err(); err != nil {
		return err
	}
	if unfinished != nil {
		// No percentiles and no rate: they would describe only the part
		// that fit.
		rep.Result = LatencyResult{Submitted: len(ns), Failed: failed, TargetRate: o.Rate, Unfinished: unfinished}
		rep.Table = []Row{{Metric: "submissions", Value: fmt.Sprintf("%d at %.0f/s", len(ns), o.Rate)}, {Metric: "unfinished", Value: unfinished.String()}}
		return fmt.Errorf("bench: %s", unfinished)
	}
	res := LatencyResult{Submitted: len(ns), Failed: failed, TargetRate: o.Rate, SubmitToRun: distOf(lats), ApplyRPC: distOf(rpcs)}
	if firstErr != nil {
		res.FirstError = firstErr.Error()
	}
	if n := len(ns); n > 1 {
		res.AchievedRate = float64(n-1) / lastLaunch.Sub(start).Seconds()
	}
	res.Proc = procStats()
	rep.Result = res
	at := shapeOf(ScenarioLatency, o)
	rep.Table = []Row{
		{"submissions", fmt.Sprintf("%d at %.0f/s (achieved %.0f/s), %d failed", res.Submitted, res.TargetRate, res.AchievedRate, res.Failed), ""},
		{"submit → RUNNING p50", fmt.Sprintf("%.1f ms", res.SubmitToRun.P50), goalFor(goalLatencyP50, at)},
		{"submit → RUNNING p90", fmt.Sprintf("%.1f ms", res.SubmitToRun.P90), ""},
		{"submit → RUNNING p99", fmt.Sprintf("%.1f ms", res.SubmitToRun.P99), goalFor(goalLatencyP99, at)},
		{"submit → RUNNING max", fmt.Sprintf("%.1f ms", res.SubmitToRun.Max), ""},
		{"ApplyWorkload RPC", res.ApplyRPC.String(), ""},
		{"process RSS (peak)", fmt.Sprintf("%.0f MiB (%.0f MiB)", res.Proc.RSSMiB, res.Proc.PeakRSSMiB), ""},
	}
	var rows []Row
	res.AgentApplies = c.agentApplies.dist()
	res.Scheduler, rows = schedulerTimings(c.Registry, res.AgentApplies)
	rep.Result = res
	rep.Table = append(rep.Table, rows...)
	if firstErr != nil {
		return fmt.Errorf("bench: %d of %d workloads did not reach RUNNING; first: %w", failed, len(ns), firstErr)
	}
	return nil
}

// waitState follows the workload with WatchWorkload until its status is
// state.
func waitState(ctx context.Context, cli persysv1grpc.ControlServiceClient, name string, state persysv1.ActualState) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stream, err := cli.WatchWorkload(ctx, &persysv1.GetWorkloadRequest{Name: name})
	if err != nil {
		return fmt.Errorf("watch: %w", err)
	}
	for {
		v, err := stream.Recv()
		if err != nil {
			return fmt.Errorf("watch: %w", err)
		}
		if v.GetStatus().GetState() == state {
			return nil
		}
	}
}

// NodeLossResult is the outcome of the node-loss scenario.
type NodeLossResult struct {
	NodesStopped int     `json:"nodes_stopped"`
	Affected     int     `json:"affected_workloads"`
	StopSec      float64 `json:"stop_s"`
	// DetectedSec: the last affected workload shown UNKNOWN/NODE_LOST.
	DetectedSec float64 `json:"detected_s"`
	// RecoveredSec: the last affected workload RUNNING on a live node.
	RecoveredSec float64 `json:"recovered_s"`
	BoundSec     float64 `json:"bound_s"`
	Recovered    int     `json:"recovered"`
	// MaxDuplicates is the largest count of workloads reported by two live
	// sim runtimes in any sample; Duplicates the count at the end.
	MaxDuplicates int       `json:"max_duplicates"`
	Duplicates    int       `json:"duplicates"`
	NotRunning    int       `json:"not_running_at_end"`
	Proc          ProcStats `json:"process"`
}

// pickLost chooses the nodes the node-loss scenario stops, every k-th so
// that they are spread over the id range, and the workloads placed on them.
func pickLost(c *Cluster, o *Options, views []*persysv1.WorkloadView) (map[string]*Hollow, []string, error) {
	lostCount := max(1, int(math.Round(o.LossFraction*float64(len(c.Nodes)))))
	if lostCount >= len(c.Nodes) {
		return nil, nil, fmt.Errorf("bench: stopping %d of %d nodes leaves none to move to", lostCount, len(c.Nodes))
	}
	lost := map[string]*Hollow{}
	step := float64(len(c.Nodes)) / float64(lostCount)
	for i := range lostCount {
		h := c.Nodes[int(float64(i)*step)]
		lost[h.ID] = h
	}
	var affected []string
	for _, v := range views {
		if lost[v.GetAssignment().GetNodeId()] != nil {
			affected = append(affected, v.GetWorkload().GetName())
		}
	}
	return lost, affected, nil
}

func nodeLoss(ctx context.Context, c *Cluster, o *Options, rep *Report) error {
	ns := names("nl", o.Workloads)
	fmt.Fprintf(o.Progress, "node-loss: placing %d workloads\n", len(ns))
	if _, _, err := submitAll(ctx, c, o, ns, "bench:v1", nil); err != nil {
		return err
	}
	if err := waitRunning(ctx, c, len(ns), o.Timeout, o.StallAfter); err != nil {
		return err
	}
	resp, err := c.Control(0).ListWorkloads(ctx, &persysv1.ListWorkloadsRequest{}, bigList)
	if err != nil {
		return fmt.Errorf("bench: list workloads: %w", err)
	}
	lost, affected, err := pickLost(c, o, resp.GetWorkloads())
	if err != nil {
		return err
	}
	lostCount := len(lost)
	ttl, grace := o.params().LeaseTTLSec, o.params().GraceSec
	res := NodeLossResult{NodesStopped: lostCount, Affected: len(affected), BoundSec: ttl + grace + 5}
	fmt.Fprintf(o.Progress, "node-loss: stopping %d nodes with %d workloads\n", lostCount, len(affected))

	// Follow every affected workload from before the loss.
	type mark struct{ detected, recovered time.Time }
	var (
		mu        sync.Mutex
		marks     = make(map[string]*mark, len(affected))
		recovered atomic.Int64
		start     time.Time
		wg        sync.WaitGroup
		firstErr  error
	)
	wctx, cancel := context.WithTimeout(ctx, o.Timeout+time.Duration((ttl+grace)*float64(time.Second)))
	defer cancel()
	for i, name := range affected {
		m := &mark{}
		marks[name] = m
		stream, err := c.Control(i).WatchWorkload(wctx, &persysv1.GetWorkloadRequest{Name: name})
		if err != nil {
			return fmt.Errorf("bench: watch %s: %w", name, err)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				v, err := stream.Recv()
				if err != nil {
					mu.Lock()
					if firstErr == nil {
						firstErr = fmt.Errorf("watch %s: %w", name, err)
					}
					mu.Unlock()
					return
				}
				st := v.GetStatus()
				now := time.Now()
				mu.Lock()
				if m.detected.IsZero() && st.GetReason() == persysv1.FailureReason_FAILURE_REASON_NODE_LOST {
					m.detected = now
				}
				node := v.GetAssignment().GetNodeId()
				if st.GetState() == persysv1.ActualState_ACTUAL_STATE_RUNNING && node != "" && lost[node] == nil &&
					st.GetNodeId() == node && !start.IsZero() {
					m.recovered = now
					mu.Unlock()
					recovered.Add(1)
					return
				}
				mu.Unlock()
			}
		}()
	}
	stopProgress := progress(c, o, "node-loss", func() string {
		return fmt.Sprintf("recovered %d/%d", recovered.Load(), len(affected))
	})
	defer stopProgress()
	// Sample duplicates while the workloads move.
	dupDone := make(chan struct{})
	var dupWG sync.WaitGroup
	dupWG.Add(1)
	go func() {
		defer dupWG.Done()
		for {
			if d, err := c.Duplicates(ctx); err == nil {
				mu.Lock()
				res.MaxDuplicates = max(res.MaxDuplicates, d)
				mu.Unlock()
			}
			select {
			case <-dupDone:
				return
			case <-time.After(500 * time.Millisecond):
			}
		}
	}()

	stopProfile := profile(c, o)
	mu.Lock()
	start = time.Now()
	mu.Unlock()
	var stopWG sync.WaitGroup
	for _, h := range lost {
		stopWG.Add(1)
		go func() { defer stopWG.Done(); h.Stop() }()
	}
	stopWG.Wait()
	res.StopSec = time.Since(start).Seconds()
	wg.Wait()
	stopProfile()
	close(dupDone)
	dupWG.Wait()

	res.Recovered = int(recovered.Load())
	for _, m := range marks {
		if !m.detected.IsZero() {
			res.DetectedSec = max(res.DetectedSec, m.detected.Sub(start).Seconds())
		}
		if !m.recovered.IsZero() {
			res.RecoveredSec = max(res.RecoveredSec, m.recovered.Sub(start).Seconds())
		}
	}
	// Let a few heartbeats pass so that a copy left behind would show.
	sleepCtx(ctx, 2*c.opts.HeartbeatInterval)
	if res.Duplicates, err = c.Duplicates(ctx); err != nil {
		return err
	}
	res.MaxDuplicates = max(res.MaxDuplicates, res.Duplicates)
	if _, _, res.NotRunning, err = spread(ctx, c); err != nil {
		return err
	}
	res.Proc = procStats()
	rep.Result = res
	rep.Table = []Row{
		{"nodes stopped", fmt.Sprintf("%d (%.2fs to stop)", res.NodesStopped, res.StopSec), ""},
		{"affected workloads", fmt.Sprint(res.Affected), ""},
		{"all seen NODE_LOST after", fmt.Sprintf("%.2fs", res.DetectedSec), fmt.Sprintf("lease TTL %gs", ttl)},
		{"all RUNNING elsewhere after", fmt.Sprintf("%.2fs (%d/%d)", res.RecoveredSec, res.Recovered, res.Affected),
			fmt.Sprintf("< lease TTL + grace + 5 s = %gs", res.BoundSec)},
		{"duplicates (max while moving / end)", fmt.Sprintf("%d / %d", res.MaxDuplicates, res.Duplicates), "0"},
		{"not RUNNING at the end", fmt.Sprint(res.NotRunning), "0"},
		{"process RSS (peak)", fmt.Sprintf("%.0f MiB (%.0f MiB)", res.Proc.RSSMiB, res.Proc.PeakRSSMiB), ""},
	}
	if firstErr != nil || res.Recovered < res.Affected {
		return fmt.Errorf("bench: %d of %d affected workloads recovered: %v", res.Recovered, res.Affected, firstErr)
	}
	return nil
}

// ChurnResult is the outcome of the churn scenario.
type ChurnResult struct {
	Seconds     float64   `json:"seconds"`
	Creates     int64     `json:"creates"`
	Updates     int64     `json:"updates"`
	Deletes     int64     `json:"deletes"`
	Refused     int64     `json:"refused_while_deleting"`
	Errors      int64     `json:"errors"`
	FirstError  string    `json:"first_error,omitempty"`
	OpsPerSec   float64   `json:"ops_per_s"`
	OpRPC       Dist      `json:"op_rpc"`
	RevStart    int64     `json:"revision_start"`
	RevEnd      int64     `json:"revision_end"`
	RevPerSec   float64   `json:"revisions_per_s"`
	DBStart     int64     `json:"db_size_start_bytes"`
	DBEnd       int64     `json:"db_size_end_bytes"`
	DBInUseEnd  int64     `json:"db_size_in_use_end_bytes"`
	Heartbeats  float64   `json:"heartbeats_per_s"`
	ExpectedHBs float64   `json:"heartbeats_expected_per_s"`
	Proc        ProcStats `json:"process"`
}

func churn(ctx context.Context, c *Cluster, o *Options, rep *Report) error {
	ns := names("ch", o.Workloads)
	fmt.Fprintf(o.Progress, "churn: creating the pool of %d workloads\n", len(ns))
	if _, _, err := submitAll(ctx, c, o, ns, "bench:v1", nil); err != nil {
		return err
	}
	if err := waitRunning(ctx, c, len(ns), o.Timeout, o.StallAfter); err != nil {
		return err
	}
	res := ChurnResult{ExpectedHBs: float64(len(c.Nodes)) / c.opts.HeartbeatInterval.Seconds()}
	db0, err := c.Store.DBStatus(ctx)
	if err != nil {
		return err
	}
	g0, err := gauges(c.Registry, metricHeartbeats)
	if err != nil {
		return err
	}
	var creates, updates, deletes, refused, errs atomic.Int64
	stopProgress := progress(c, o, "churn", func() string {
		return fmt.Sprintf("creates %d  updates %d  deletes %d  refused %d  errors %d",
			creates.Load(), updates.Load(), deletes.Load(), refused.Load(), errs.Load())
	})
	defer stopProgress()

	var tokens <-chan time.Time
	if o.Rate > 0 {
		t := time.NewTicker(time.Duration(float64(time.Second) / o.Rate))
		defer t.Stop()
		tokens = t.C
	}
	// The run stops taking new operations after o.Duration; operations
	// under way finish (a shared deadline would cut the last ones short
	// and count them as errors).
	cctx, cancel := context.WithTimeout(ctx, o.Duration)
	defer cancel()
	var (
		mu       sync.Mutex
		durs     []time.Duration
		firstErr error
		wg       sync.WaitGroup
	)
	stopProfile := profile(c, o)
	start := time.Now()
	for k := range o.Concurrency {
		wg.Add(1)
		go func() {
			defer wg.Done()
			// Worker k owns the names i with i mod Concurrency == k, so no
			// two bench calls race on one name.
			var own []int
			for i := k; i < len(ns); i += o.Concurrency {
				own = append(own, i)
			}
			if len(own) == 0 {
				return
			}
			present := make(map[int]bool, len(own))
			version := make(map[int]int, len(own))
			for _, i := range own {
				present[i], version[i] = true, 1
			}
			rng := rand.New(rand.NewPCG(uint64(k)+1, 0xc4))
			cli := c.Control(k)
			var mine []time.Duration
			defer func() { mu.Lock(); durs = append(durs, mine...); mu.Unlock() }()
			for cctx.Err() == nil {
				if tokens != nil {
					select {
					case <-cctx.Done():
						return
					case <-tokens:
					}
				}
				i := own[rng.IntN(len(own))]
				var err error
				t0 := time.Now()
				opCtx, opCancel := context.WithTimeout(ctx, o.Timeout)
				switch {
				case !present[i]:
					_, err = cli.ApplyWorkload(opCtx, &persysv1.ApplyRequest{Name: ns[i], Spec: benchSpec("bench:v1")})
					if err == nil {
						present[i], version[i] = true, 1
						creates.Add(1)
					}
				case rng.IntN(10) < 6:
					v := version[i] + 1
					_, err = cli.ApplyWorkload(opCtx, &persysv1.ApplyRequest{Name: ns[i], Spec: benchSpec(fmt.Sprintf("bench:v%d", v))})
					if err == nil {
						version[i] = v
						updates.Add(1)
					}
				default:
					_, err = cli.DeleteWorkload(opCtx, &persysv1.DeleteRequest{Name: ns[i]})
					if err == nil || status.Code(err) == codes.NotFound {
						present[i] = false
						deletes.Add(1)
						err = nil
					}
				}
				opCancel()
				if ctx.Err() != nil {
					return
				}
				mine = append(mine, time.Since(t0))
				switch {
				case err == nil:
				case status.Code(err) == codes.FailedPrecondition:
					// Still being deleted: create it again later.
					refused.Add(1)
				default:
					errs.Add(1)
					mu.Lock()
					if firstErr == nil {
						firstErr = fmt.Errorf("%s: %w", ns[i], err)
					}
					mu.Unlock()
				}
			}
		}()
	}
	wg.Wait()
	res.Seconds = time.Since(start).Seconds()
	stopProfile()
	if err := ctx.Err(); err != nil {
		return err
	}
	db1, err := c.Store.DBStatus(ctx)
	if err != nil {
		return err
	}
	g1, err := gauges(c.Registry, metricHeartbeats)
	if err != nil {
		return err
	}
	res.Creates, res.Updates, res.Deletes, res.Refused, res.Errors = creates.Load(), updates.Load(), deletes.Load(), refused.Load(), errs.Load()
	if firstErr != nil {
		res.FirstError = firstErr.Error()
	}
	res.OpsPerSec = float64(res.Creates+res.Updates+res.Deletes) / res.Seconds
	res.OpRPC = distOf(durs)
	res.RevStart, res.RevEnd = db0.Revision, db1.Revision
	res.RevPerSec = float64(db1.Revision-db0.Revision) / res.Seconds
	res.DBStart, res.DBEnd, res.DBInUseEnd = db0.DBSize, db1.DBSize, db1.DBSizeInUse
	res.Heartbeats = (g1[metricHeartbeats] - g0[metricHeartbeats]) / res.Seconds
	res.Proc = procStats()
	rep.Result = res
	mib := func(b int64) float64 { return float64(b) / (1 << 20) }
	rep.Table = []Row{
		{"operations", fmt.Sprintf("%.0f/s over %.1fs: %d creates, %d updates, %d deletes", res.OpsPerSec, res.Seconds, res.Creates, res.Updates, res.Deletes), ""},
		{"refused (still deleting) / errors", fmt.Sprintf("%d / %d", res.Refused, res.Errors), "- / 0"},
		{"operation RPC", res.OpRPC.String(), ""},
		{"etcd revision", fmt.Sprintf("%d → %d (%.0f/s)", res.RevStart, res.RevEnd, res.RevPerSec), ""},
		{"etcd db size (in use at end)", fmt.Sprintf("%.1f → %.1f MiB (%.1f MiB)", mib(res.DBStart), mib(res.DBEnd), mib(res.DBInUseEnd)), ""},
		{"heartbeats handled", fmt.Sprintf("%.0f/s (expected %.0f/s)", res.Heartbeats, res.ExpectedHBs), ""},
		{"process RSS (peak)", fmt.Sprintf("%.0f MiB (%.0f MiB)", res.Proc.RSSMiB, res.Proc.PeakRSSMiB), ""},
	}
	if firstErr != nil {
		return fmt.Errorf("bench: churn: %d errors; first: %w", res.Errors, firstErr)
	}
	return nil
}

// bigList lifts the client's receive limit for full workload lists: 150,000
// workloads make a list of about 50 MB.
var bigList = grpc.MaxCallRecvMsgSize(1 << 30)

// gcTarget names the scheduler process's GC target for the report, and
// the bench process's when it has its own.
func gcTarget(percent, bench int) string {
	if v, ok := os.LookupEnv("GOGC"); ok {
		return "GOGC=" + v
	}
	if percent == 0 {
		percent = gctune.DefaultPercent
	}
	if bench != 0 {
		return fmt.Sprintf("%d%% (bench process %d%%)", percent, bench)
	}
	return fmt.Sprintf("%d%%", percent)
}

// durationOr is d, or def when d is zero (left to the scheduler's default).
func durationOr(d, def time.Duration) time.Duration {
	if d == 0 {
		return def
	}
	return d
}
