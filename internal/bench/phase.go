package bench

import (
	"fmt"
	"os"
	"sync"
	"time"
)

// PhaseCPU is the CPU time the measured phase of a scenario took, split
// between the scheduler process (when it runs apart) and this one.
type PhaseCPU struct {
	WallSeconds float64 `json:"wall_s"`
	// BenchSeconds is this process: etcd, the hollow agents, the
	// submitters and, without a scheduler process, the scheduler too.
	BenchSeconds float64 `json:"bench_cpu_s"`
	// SchedulerSeconds is the scheduler process's (0 in one process).
	SchedulerSeconds float64 `json:"scheduler_cpu_s,omitempty"`
}

// phase records the CPU time of the measured phase.
type phase struct {
	mu     sync.Mutex
	start  time.Time
	bench0 float64
	sched0 float64
	done   bool
	cpu    PhaseCPU
}

func (p *phase) begin(c *Cluster) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.start, p.done = time.Now(), false
	p.bench0 = statsOfPID(os.Getpid()).CPUSeconds
	if st, ok := c.SchedulerProcess(); ok {
		p.sched0 = st.CPUSeconds
	}
}

func (p *phase) end(c *Cluster) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.done || p.start.IsZero() {
		return
	}
	p.done = true
	p.cpu.WallSeconds = time.Since(p.start).Seconds()
	p.cpu.BenchSeconds = statsOfPID(os.Getpid()).CPUSeconds - p.bench0
	if st, ok := c.SchedulerProcess(); ok {
		p.cpu.SchedulerSeconds = st.CPUSeconds - p.sched0
	}
}

// rows shows the phase's CPU time, per workload when workloads > 0, and
// the scheduler process's memory beside rssGoal (empty: none at this size).
func (p *phase) rows(c *Cluster, workloads int, rssGoal string) []Row {
	p.mu.Lock()
	cpu, measured := p.cpu, p.done
	p.mu.Unlock()
	per := func(sec float64) string {
		if workloads <= 0 {
			return ""
		}
		return fmt.Sprintf(", %.2f ms per workload", 1000*sec/float64(workloads))
	}
	var rows []Row
	_, apart := c.SchedulerProcess()
	if measured {
		if apart {
			rows = append(rows,
				Row{Metric: "CPU, measured phase: scheduler process", Value: fmt.Sprintf("%.1fs of %.1fs%s", cpu.SchedulerSeconds, cpu.WallSeconds, per(cpu.SchedulerSeconds))},
				Row{Metric: "CPU, measured phase: bench (etcd, hollow nodes)", Value: fmt.Sprintf("%.1fs%s", cpu.BenchSeconds, per(cpu.BenchSeconds))})
		} else {
			rows = append(rows, Row{Metric: "CPU, measured phase (one process)", Value: fmt.Sprintf("%.1fs of %.1fs%s", cpu.BenchSeconds, cpu.WallSeconds, per(cpu.BenchSeconds))})
		}
	}
	if st, ok := c.SchedulerProcess(); ok {
		rows = append(rows, Row{Metric: "scheduler process RSS (peak)", Value: fmt.Sprintf("%.0f MiB (%.0f MiB)", st.RSSMiB, st.PeakRSSMiB),
			Goal: rssGoal})
	}
	return rows
}
