package bench

// The services scenario (issue 17, "Scale"): Services services of
// Replicas replicas each are created and wait until every replica is
// available, then every service rolls to a new template (maxUnavailable 1,
// maxSurge 1) until all run it and are available. Readiness is the sim
// runtime's ReadyDelay, no real probe.

import (
	"context"
	"fmt"
	"os"
	"sync"
	"sync/atomic"
	"time"

	persysv1 "github.com/persys-dev/compute/api/persys/v1"
)

// ScenarioServices is the services scenario's name.
const ScenarioServices = "services"

// Bounds of the services scenario's shape.
const (
	maxBenchServices = 100_000
	maxBenchReplicas = 1_000
)

// ServicesResult is the outcome of the services scenario.
type ServicesResult struct {
	Services int `json:"services"`
	Replicas int `json:"replicas_per_service"`
	// CreateSubmitSec is how long the ApplyService calls of the create
	// took; AvailableSec is from the first call until every replica of
	// every service was available.
	CreateSubmitSec float64 `json:"create_submit_s"`
	AvailableSec    float64 `json:"all_available_s"`
	// UpdateSubmitSec and UpdatedSec are the same for the rolling update:
	// every service at the new revision, COMPLETE, every replica available.
	UpdateSubmitSec float64 `json:"update_submit_s"`
	UpdatedSec      float64 `json:"all_updated_s"`
	Replaced        int     `json:"replaced_instances"`
	// Scheduler CPU time of each phase (with a scheduler process; else
	// the whole bench process's), and per instance.
	CreateCPUSec       float64 `json:"create_cpu_s"`
	CreateCPUPerInstMs float64 `json:"create_cpu_per_instance_ms"`
	UpdateCPUSec       float64 `json:"update_cpu_s"`
	UpdateCPUPerReplMs float64 `json:"update_cpu_per_replaced_ms"`
	WorkloadsAtEnd     int     `json:"workloads_at_end"`
	// OldAtEnd and NotReadyAtEnd count, from the workload list, replicas
	// still on the first template and replicas not RUNNING and ready.
	OldAtEnd            int       `json:"old_template_at_end"`
	NotReadyAtEnd       int       `json:"not_ready_at_end"`
	SchedulerRSSMiB     float64   `json:"scheduler_rss_mib"`
	SchedulerPeakRSSMiB float64   `json:"scheduler_peak_rss_mib"`
	Proc                ProcStats `json:"process"`
}

func (o *Options) servicesDefaults() error {
	if o.Services < 1 || o.Services > maxBenchServices {
		return fmt.Errorf("bench: services %d: must be between 1 and %d", o.Services, maxBenchServices)
	}
	if o.Replicas < 1 || o.Replicas > maxBenchReplicas {
		return fmt.Errorf("bench: replicas %d: must be between 1 and %d", o.Replicas, maxBenchReplicas)
	}
	o.Workloads = o.Services * o.Replicas
	return nil
}

// benchService is the spec of every bench service: image is its
// template's only difference between revisions.
func benchService(replicas int, image string) *persysv1.ServiceSpec {
	return &persysv1.ServiceSpec{Replicas: int32(replicas), Template: benchSpec(image),
		Update: &persysv1.ServiceUpdatePolicy{MaxUnavailable: 1, MaxSurge: 1, ProgressDeadlineSeconds: 600}}
}

// applyServices applies every service with image, o.Concurrency at a time.
func applyServices(ctx context.Context, c *Cluster, o *Options, ns []string, image string) error {
	var (
		next  atomic.Int64
		first firstError
		wg    sync.WaitGroup
	)
	for k := range min(o.Concurrency, len(ns)) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			cli := c.Control(k)
			for i := int(next.Add(1)) - 1; i < len(ns) && ctx.Err() == nil; i = int(next.Add(1)) - 1 {
				_, err := cli.ApplyService(ctx, &persysv1.ApplyServiceRequest{Name: ns[i], Spec: benchService(o.Replicas, image)})
				if err != nil {
					first.set(fmt.Errorf("bench: apply service %s: %w", ns[i], err))
				}
			}
		}()
	}
	wg.Wait()
	if err := first.get(); err != nil {
		return err
	}
	return ctx.Err()
}

// firstError keeps the first error of concurrent calls.
type firstError struct {
	mu  sync.Mutex
	err error
}

func (f *firstError) set(err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.err == nil {
		f.err = err
	}
}

func (f *firstError) get() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.err
}

// servicesDone reads every service's progress from etcd (not through the
// scheduler, whose CPU is measured) and counts those at revision with
// every replica updated and available; a failed rollout is an error.
func servicesDone(ctx context.Context, c *Cluster, revision uint64, replicas int) (int, error) {
	all, err := c.Store.ListServiceProgress(ctx)
	if err != nil {
		return 0, err
	}
	done := 0
	for _, p := range all {
		switch p.GetPhase() {
		case persysv1.RolloutPhase_ROLLOUT_PHASE_FAILED, persysv1.RolloutPhase_ROLLOUT_PHASE_ROLLING_BACK:
			return done, fmt.Errorf("bench: service %s: rollout %s: %s", p.GetName(), p.GetPhase(), p.GetMessage())
		case persysv1.RolloutPhase_ROLLOUT_PHASE_COMPLETE:
			if p.GetRevision() == revision && int(p.GetAvailable()) == replicas && int(p.GetUpdated()) == replicas {
				done++
			}
		}
	}
	return done, nil
}

// waitServices polls until every service is done at revision.
func waitServices(ctx context.Context, c *Cluster, o *Options, revision uint64, done *atomic.Int64) error {
	ctx, cancel := context.WithTimeout(ctx, o.Timeout)
	defer cancel()
	for {
		n, err := servicesDone(ctx, c, revision, o.Replicas)
		if err != nil && ctx.Err() == nil {
			return err
		}
		done.Store(int64(n))
		if n >= o.Services {
			return nil
		}
		if err := c.failed(); err != nil {
			return err
		}
		if !sleepCtx(ctx, 100*time.Millisecond) {
			return fmt.Errorf("bench: %d of %d services at revision %d and available after %s", n, o.Services, revision, o.Timeout)
		}
	}
}

// waitWorkloads polls until the scheduler holds exactly want workloads
// (the old revision's replicas are gone).
func waitWorkloads(ctx context.Context, c *Cluster, want int, timeout time.Duration) (int, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	for {
		_, total, err := runningCount(ctx, c)
		if err == nil && total == want {
			return total, nil
		}
		if !sleepCtx(ctx, 100*time.Millisecond) {
			return total, fmt.Errorf("bench: %d workloads after %s, want %d", total, timeout, want)
		}
	}
}

// checkReplicas lists every workload and counts those whose template is
// not image and those not RUNNING and ready.
func checkReplicas(ctx context.Context, c *Cluster, image string) (old, notReady int, err error) {
	resp, err := c.Control(0).ListWorkloads(ctx, &persysv1.ListWorkloadsRequest{}, bigList)
	if err != nil {
		return 0, 0, fmt.Errorf("bench: list workloads: %w", err)
	}
	for _, v := range resp.GetWorkloads() {
		if v.GetWorkload().GetSpec().GetContainer().GetImage() != image {
			old++
		}
		if st := v.GetStatus(); st.GetState() != persysv1.ActualState_ACTUAL_STATE_RUNNING || !st.GetReady() {
			notReady++
		}
	}
	return old, notReady, nil
}

// schedulerCPU is the CPU time so far of the process that runs the
// scheduler.
func schedulerCPU(c *Cluster) float64 {
	if st, ok := c.SchedulerProcess(); ok {
		return st.CPUSeconds
	}
	return statsOfPID(os.Getpid()).CPUSeconds
}

// servicePhase runs one phase: apply every service with image, then wait
// until all are done at revision. It returns the submit time, the time
// until done and the scheduler's CPU time.
func servicePhase(ctx context.Context, c *Cluster, o *Options, ns []string, image string, revision uint64) (submit, done, cpu float64, err error) {
	var ready atomic.Int64
	stop := progress(c, o, "services", func() string {
		return fmt.Sprintf("revision %d: %d/%d services available", revision, ready.Load(), len(ns))
	})
	defer stop()
	cpu0, start := schedulerCPU(c), time.Now()
	if err := applyServices(ctx, c, o, ns, image); err != nil {
		return 0, 0, 0, err
	}
	submit = time.Since(start).Seconds()
	if err := waitServices(ctx, c, o, revision, &ready); err != nil {
		return submit, 0, 0, err
	}
	return submit, time.Since(start).Seconds(), schedulerCPU(c) - cpu0, nil
}

func services(ctx context.Context, c *Cluster, o *Options, rep *Report) error {
	ns := names("svc", o.Services)
	res := ServicesResult{Services: o.Services, Replicas: o.Replicas, Replaced: o.Services * o.Replicas}
	fmt.Fprintf(o.Progress, "services: creating %d services × %d replicas\n", o.Services, o.Replicas)
	var err error
	res.CreateSubmitSec, res.AvailableSec, res.CreateCPUSec, err = servicePhase(ctx, c, o, ns, "bench:v1", 1)
	if err != nil {
		return err
	}
	res.CreateCPUPerInstMs = 1000 * res.CreateCPUSec / float64(res.Replaced)
	fmt.Fprintf(o.Progress, "services: all available after %.1fs; rolling every service to bench:v2\n", res.AvailableSec)
	stopProfile := profile(c, o)
	res.UpdateSubmitSec, res.UpdatedSec, res.UpdateCPUSec, err = servicePhase(ctx, c, o, ns, "bench:v2", 2)
	stopProfile()
	if err != nil {
		return err
	}
	res.UpdateCPUPerReplMs = 1000 * res.UpdateCPUSec / float64(res.Replaced)
	if err := servicesEnd(ctx, c, o, &res); err != nil {
		return err
	}
	rep.Result = res
	rep.Table = servicesRows(c, o, res)
	if res.OldAtEnd != 0 || res.NotReadyAtEnd != 0 {
		return fmt.Errorf("bench: at the end %d replicas run the old template and %d are not ready", res.OldAtEnd, res.NotReadyAtEnd)
	}
	return nil
}

// servicesEnd waits until only the new replicas are left, checks them
// and records the processes' memory.
func servicesEnd(ctx context.Context, c *Cluster, o *Options, res *ServicesResult) error {
	var err error
	if res.WorkloadsAtEnd, err = waitWorkloads(ctx, c, res.Replaced, o.Timeout); err != nil {
		return err
	}
	if res.OldAtEnd, res.NotReadyAtEnd, err = checkReplicas(ctx, c, "bench:v2"); err != nil {
		return err
	}
	if st, ok := c.SchedulerProcess(); ok {
		res.SchedulerRSSMiB, res.SchedulerPeakRSSMiB = st.RSSMiB, st.PeakRSSMiB
	}
	res.Proc = procStats()
	return nil
}

// servicesRows is the scenario's table, with what it assumes.
func servicesRows(c *Cluster, o *Options, res ServicesResult) []Row {
	who := "scheduler process"
	if _, ok := c.SchedulerProcess(); !ok {
		who = "bench process (scheduler, etcd and hollow nodes together)"
	}
	return []Row{
		{"assumes", fmt.Sprintf("sim runtime: RUNNING after %s, ready after %s more (simulated readiness, no probe); maxUnavailable 1, maxSurge 1, minReadySeconds 0",
			c.opts.ApplyDelay, c.opts.ReadyDelay), ""},
		{"services × replicas", fmt.Sprintf("%d × %d = %d instances", res.Services, res.Replicas, res.Replaced), ""},
		{"create: ApplyService calls", fmt.Sprintf("%.2fs", res.CreateSubmitSec), ""},
		{"create: all available after", fmt.Sprintf("%.2fs", res.AvailableSec), ""},
		{"create: CPU of the " + who, fmt.Sprintf("%.1fs, %.2f ms per instance", res.CreateCPUSec, res.CreateCPUPerInstMs), ""},
		{"update: ApplyService calls", fmt.Sprintf("%.2fs", res.UpdateSubmitSec), ""},
		{"update: all on the new revision and available after", fmt.Sprintf("%.2fs", res.UpdatedSec), ""},
		{"update: CPU of the " + who, fmt.Sprintf("%.1fs, %.2f ms per replaced instance", res.UpdateCPUSec, res.UpdateCPUPerReplMs), ""},
		{"workloads at the end (old template / not ready)", fmt.Sprintf("%d (%d / %d)", res.WorkloadsAtEnd, res.OldAtEnd, res.NotReadyAtEnd), fmt.Sprintf("%d (0 / 0)", res.Replaced)},
		{"bench process RSS (peak)", fmt.Sprintf("%.0f MiB (%.0f MiB)", res.Proc.RSSMiB, res.Proc.PeakRSSMiB), ""},
	}
}
