package bench

import (
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
)

// Row is one line of a report's table: a figure, and the goal it is
// compared with (empty when there is none).
type Row struct {
	Metric string `json:"metric"`
	Value  string `json:"value"`
	Goal   string `json:"goal,omitempty"`
}

// Params are the knobs of a run, as the report shows them.
type Params struct {
	Nodes        int     `json:"nodes"`
	Workloads    int     `json:"workloads"`
	Rate         float64 `json:"rate,omitempty"`
	Concurrency  int     `json:"concurrency,omitempty"`
	SubmitBatch  int     `json:"submit_batch,omitempty"`
	DurationSec  float64 `json:"duration_s,omitempty"`
	ApplyDelayMs float64 `json:"apply_delay_ms"`
	// NodeCPUMillis and NodeMemoryBytes are each hollow node's capacity.
	NodeCPUMillis   int64   `json:"node_cpu_millis"`
	NodeMemoryBytes int64   `json:"node_memory_bytes"`
	ReadyDelayMs    float64 `json:"ready_delay_ms,omitempty"`
	// Services and Replicas: the services scenario's shape.
	Services int `json:"services,omitempty"`
	Replicas int `json:"replicas,omitempty"`
	// Watchers, Changes and WatchTransport: the watchers scenario's shape.
	Watchers            int     `json:"watchers,omitempty"`
	Changes             int     `json:"changes,omitempty"`
	WatchTransport      string  `json:"watch_transport,omitempty"`
	HeartbeatIntervalMs float64 `json:"heartbeat_interval_ms"`
	// HeartbeatEffectiveMs is the interval the scheduler tells agents at
	// this many nodes (it stretches HeartbeatIntervalMs in large clusters).
	HeartbeatEffectiveMs float64 `json:"heartbeat_effective_ms"`
	// GC is the scheduler process's garbage collector target: "200%", or
	// "GOGC=…" when the environment set it.
	GC               string  `json:"gc"`
	LeaseTTLSec      float64 `json:"lease_ttl_s"`
	GraceSec         float64 `json:"reschedule_grace_s"`
	SchedulerWorkers int     `json:"scheduler_workers"`
	LossFraction     float64 `json:"loss_fraction,omitempty"`
	EtcdNoFsync      bool    `json:"etcd_no_fsync,omitempty"`
	// Transport is "shared" (hollow nodes over a few plaintext loopback
	// connections) or "mtls" (each node its own mTLS connections).
	Transport string `json:"transport"`
	// MTLSConns is each mTLS node's connection count (1 or 2).
	MTLSConns int `json:"mtls_conns,omitempty"`
	// SchedulerProcess: the scheduler ran in a process of its own.
	SchedulerProcess bool `json:"scheduler_process"`
	CPUs             int  `json:"cpus"`
	// Etcd names the store: the embedded etcd or an external cluster.
	Etcd string `json:"etcd"`
}

// Report is a scenario's outcome: its parameters, how the cluster was
// set up, the scenario's own result and the table printed for it.
type Report struct {
	Scenario string     `json:"scenario"`
	Params   Params     `json:"params"`
	Setup    SetupStats `json:"setup"`
	Result   any        `json:"result"`
	Table    []Row      `json:"table"`
	// CPU is the measured phase's CPU time.
	CPU PhaseCPU `json:"cpu"`
	// SchedulerProcess is the scheduler process's own figures at the end.
	SchedulerProcess *SchedProcStats `json:"scheduler_process,omitempty"`
	// LoadBefore and LoadAfter are the machine's 1-minute load average
	// before the cluster started and after the scenario: other work on a
	// shared machine skews every figure.
	LoadBefore float64 `json:"load_avg_before"`
	LoadAfter  float64 `json:"load_avg_after"`
	// Timeline is the throughput run's placements and RUNNING count, a
	// sample every Options.TimelineEvery.
	Timeline []TimelineSample `json:"timeline,omitempty"`
	// Processes are every process's figures at the end: the bench's, the
	// scheduler's and the etcd members'.
	Processes []ProcFigures `json:"processes,omitempty"`
	// Etcd is the database's size at the end.
	Etcd *EtcdDB `json:"etcd_db,omitempty"`
	// CPUTop is what the CPU profiles of the measured phase say bounds
	// the run (with --cpuprofile or --scheduler-cpuprofile).
	CPUTop []CPUTop `json:"cpu_top,omitempty"`
}

// WriteTable prints the report as an aligned table.
func (r *Report) WriteTable(w io.Writer) error {
	p := r.Params
	where := "scheduler in the bench process"
	if p.SchedulerProcess {
		where = "scheduler in its own process"
	}
	heartbeat := fmt.Sprintf("%gms", p.HeartbeatIntervalMs)
	if p.HeartbeatEffectiveMs > p.HeartbeatIntervalMs {
		heartbeat = fmt.Sprintf("%gms (stretched from %gms for the scheduler's heartbeat rate target)", p.HeartbeatEffectiveMs, p.HeartbeatIntervalMs)
	}
	submit := ""
	if p.SubmitBatch > 1 {
		submit = fmt.Sprintf(", %d workloads per submission", p.SubmitBatch)
	}
	if p.Etcd != "" {
		where += ", " + p.Etcd
	}
	transport := p.Transport
	if p.MTLSConns > 0 {
		transport = fmt.Sprintf("%s (%d connections per node)", p.Transport, p.MTLSConns)
	}
	fmt.Fprintf(w, "scenario %s: %d nodes of %gCPU/%.1fGiB, %d workloads%s, apply delay %gms, heartbeat %s, lease TTL %gs, grace %gs, %d workers, GC target %s, %d CPUs, %s transport, %s\n",
		r.Scenario, p.Nodes, float64(p.NodeCPUMillis)/1000, float64(p.NodeMemoryBytes)/(1<<30), p.Workloads, submit, p.ApplyDelayMs, heartbeat, p.LeaseTTLSec, p.GraceSec, p.SchedulerWorkers, p.GC, p.CPUs, transport, where)
	fmt.Fprintf(w, "machine load average (1 min): %.2f before, %.2f after\n", r.LoadBefore, r.LoadAfter)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "METRIC\tVALUE\tGOAL")
	var rows []Row
	if p.Transport == "mtls" {
		rows = append(rows, Row{Metric: "setup: certificates", Value: fmt.Sprintf("%.2fs (%d issued, %d reused)", r.Setup.Certs.Seconds, r.Setup.Certs.Issued, r.Setup.Certs.Reused)})
	}
	rows = append(rows, Row{Metric: "setup: agents registered", Value: fmt.Sprintf("%.2fs", r.Setup.AgentsSeconds)})
	rows = append(rows, r.Table...)
	for _, row := range rows {
		goal := row.Goal
		if goal == "" {
			goal = "-"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\n", row.Metric, strings.ReplaceAll(row.Value, "\t", " "), goal)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	return r.writeTail(w)
}

// writeTail prints what follows the table: the timeline, the processes,
// etcd's database and the CPU profiles' top functions.
func (r *Report) writeTail(w io.Writer) error {
	if err := writeTimeline(w, r.Timeline); err != nil {
		return err
	}
	if len(r.Processes) > 0 {
		fmt.Fprintln(w, "processes at the end:")
		tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
		fmt.Fprintln(tw, "PROCESS\tPID\tRSS MIB\tPEAK RSS MIB\tFDS\tCPU S")
		for _, p := range r.Processes {
			fmt.Fprintf(tw, "%s\t%d\t%.0f\t%.0f\t%d\t%.1f\n", p.Name, p.PID, p.RSSMiB, p.PeakRSSMiB, p.FDs, p.CPUSeconds)
		}
		if err := tw.Flush(); err != nil {
			return err
		}
	}
	if e := r.Etcd; e != nil {
		fmt.Fprintf(w, "etcd database: %s, %s in use, quota %s\n", mib(e.DBSize), mib(e.DBSizeInUse), mib(e.QuotaBytes))
	}
	for _, t := range r.CPUTop {
		if err := t.write(w); err != nil {
			return err
		}
	}
	return nil
}
