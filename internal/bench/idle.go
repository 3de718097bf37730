package bench

import (
	"context"
	"fmt"
	"os"
	"time"
)

// IdleResult is the cluster at rest after a run converged: what the
// heartbeats of the hollow agents and the scheduler's upkeep cost while
// no workload changes.
type IdleResult struct {
	Seconds float64 `json:"seconds"`
	// HeartbeatsPerSec the scheduler handled.
	HeartbeatsPerSec float64 `json:"heartbeats_per_s"`
	// BenchCPUMsPerSec is this process's CPU time per second of the
	// window: the hollow agents, etcd and the bench's progress line (and,
	// without a scheduler process, the scheduler).
	BenchCPUMsPerSec float64 `json:"bench_cpu_ms_per_s"`
	// SchedulerCPUMsPerSec is the scheduler process's (0 in one process).
	SchedulerCPUMsPerSec float64 `json:"scheduler_cpu_ms_per_s,omitempty"`
	// BenchCPUMsPerHeartbeat is BenchCPUMsPerSec over HeartbeatsPerSec:
	// an upper bound of one hollow agent's heartbeat, as etcd and the
	// bench share the figure.
	BenchCPUMsPerHeartbeat float64 `json:"bench_cpu_ms_per_heartbeat"`
}

// idleSample watches the cluster at rest for d.
func idleSample(ctx context.Context, c *Cluster, d time.Duration) (IdleResult, error) {
	g0, err := gauges(c.Registry, metricHeartbeats)
	if err != nil {
		return IdleResult{}, err
	}
	bench0 := statsOfPID(os.Getpid()).CPUSeconds
	sched0, apart := c.SchedulerProcess()
	start := time.Now()
	if !sleepCtx(ctx, d) {
		return IdleResult{}, ctx.Err()
	}
	sec := time.Since(start).Seconds()
	g1, err := gauges(c.Registry, metricHeartbeats)
	if err != nil {
		return IdleResult{}, err
	}
	r := IdleResult{Seconds: sec, HeartbeatsPerSec: (g1[metricHeartbeats] - g0[metricHeartbeats]) / sec,
		BenchCPUMsPerSec: 1000 * (statsOfPID(os.Getpid()).CPUSeconds - bench0) / sec}
	if sched1, ok := c.SchedulerProcess(); ok && apart {
		r.SchedulerCPUMsPerSec = 1000 * (sched1.CPUSeconds - sched0.CPUSeconds) / sec
	}
	if r.HeartbeatsPerSec > 0 {
		r.BenchCPUMsPerHeartbeat = r.BenchCPUMsPerSec / r.HeartbeatsPerSec
	}
	return r, nil
}

// idleRows shows an idle sample: per second, and per heartbeat.
func idleRows(r IdleResult, workloads, nodes int, apart bool) []Row {
	where := "bench process (hollow agents, etcd, scheduler)"
	if apart {
		where = "bench process (hollow agents, etcd)"
	}
	rows := []Row{
		{Metric: fmt.Sprintf("at rest for %.0fs: heartbeats handled", r.Seconds), Value: fmt.Sprintf("%.2f/s (%s, %s)", r.HeartbeatsPerSec, plural(nodes, "node"), plural(workloads, "workload"))},
		{Metric: "at rest: CPU of the " + where, Value: fmt.Sprintf("%.1f ms/s, %.1f ms per heartbeat (upper bound of an agent's heartbeat: the process does more)",
			r.BenchCPUMsPerSec, r.BenchCPUMsPerHeartbeat)},
	}
	if apart {
		rows = append(rows, Row{Metric: "at rest: CPU of the scheduler process", Value: fmt.Sprintf("%.1f ms/s", r.SchedulerCPUMsPerSec)})
	}
	return rows
}
