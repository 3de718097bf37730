package bench

import "fmt"

// watchersRows is the watchers scenario's table: what it assumes, then
// each phase's figures.
func watchersRows(c *Cluster, o *Options, res WatchersResult) []Row {
	how := "one at a time, each after every watcher saw the one before"
	if o.Rate > 0 {
		how = fmt.Sprintf("at %g/s from one submitter", o.Rate)
	}
	rows := []Row{
		{"assumes", fmt.Sprintf("%d workloads RUNNING on %d hollow nodes", res.Workloads, len(c.Nodes)), ""},
		{"assumes", "a change sets one label of one workload (ApplyWorkload, same spec: no agent call), " + how, ""},
		{"assumes", clients(res) + ", reading as admin and decoding in the bench process", ""},
		{"assumes", "memory: live heap and RSS after a collection that returns freed pages; per watcher = (open, or after the changes, - before) / watchers", ""},
	}
	if c.proc == nil {
		rows = append(rows, Row{"warning", "the scheduler runs in the bench process: its memory, goroutine and CPU figures include the watchers' clients, etcd and the hollow nodes", ""})
	}
	for _, ph := range res.Phases {
		rows = append(rows, phaseRows(res, ph)...)
	}
	return rows
}

func phaseRows(res WatchersResult, ph WatchPhase) []Row {
	p := ph.Transport + ": "
	if ph.Transport == WatchGateway {
		p = "gateway (NDJSON over HTTPS): "
	}
	start := fmt.Sprintf("each resumed after revision %d (the bench listed once)", ph.Since)
	if res.List {
		start = fmt.Sprintf("each listed %d workloads first", res.Workloads)
	}
	want := int64(res.Watchers) * int64(res.Changes)
	rows := []Row{
		{p + "watchers open", fmt.Sprintf("%d in %.2fs, %s", res.Watchers, ph.OpenSec, start), ""},
		{p + "changes", fmt.Sprintf("%d in %.2fs", res.Changes, ph.ChangesSec), ""},
		{p + "delivery: submit → each watcher", distMs(ph.Delivery), ""},
		{p + "fan-out: submit → last watcher", distMs(ph.Fanout), ""},
		{p + "ApplyWorkload RPC of a change", distMs(ph.ApplyRPC), ""},
		{p + "exactly once, in order", fmt.Sprintf("%d/%d watchers; %d deliveries, %d other items", ph.ExactlyOnce, res.Watchers, ph.Deliveries, ph.OtherItems),
			fmt.Sprintf("%d/%d; %d", res.Watchers, res.Watchers, want)},
	}
	rows = append(rows, procRows(p, res.Watchers, ph.Scheduler)...)
	if ph.Gateway != nil {
		rows = append(rows, procRows(p, res.Watchers, *ph.Gateway)...)
	}
	rows = append(rows, Row{p + "bench process CPU during the changes (clients, etcd, hollow nodes)", fmt.Sprintf("%.2fs", ph.BenchCPUSec), ""})
	if ph.FirstFailure != "" {
		rows = append(rows, Row{p + "first failure", ph.FirstFailure, ""})
	}
	return rows
}

// procRows are one process's per-watcher costs.
func procRows(prefix string, watchers int, f WatchProcFigures) []Row {
	p := prefix + f.Process + ": "
	n := float64(watchers)
	mib := func(b int64) float64 { return float64(b) / (1 << 20) }
	live := func(m MemSample) int64 { return m.HeapAllocBytes + m.StackInuseBytes }
	per := func(a, b int64) float64 { return float64(b-a) / n / 1024 }
	return []Row{
		{p + "heap + stacks per watcher", fmt.Sprintf("%.1f KiB open, %.1f KiB after the changes (%.1f → %.1f → %.1f MiB)",
			per(live(f.Before), live(f.Opened)), per(live(f.Before), live(f.After)), mib(live(f.Before)), mib(live(f.Opened)), mib(live(f.After))), ""},
		{p + "RSS per watcher", fmt.Sprintf("%.1f KiB open, %.1f KiB after the changes (%.0f → %.0f → %.0f MiB)",
			per(f.Before.RSSBytes, f.Opened.RSSBytes), per(f.Before.RSSBytes, f.After.RSSBytes), mib(f.Before.RSSBytes), mib(f.Opened.RSSBytes), mib(f.After.RSSBytes)), ""},
		{p + "goroutines per watcher", fmt.Sprintf("%.2f (%d → %d)", float64(f.Opened.Goroutines-f.Before.Goroutines)/n, f.Before.Goroutines, f.Opened.Goroutines),
			"no goroutine per etcd key"},
		{p + "CPU per delivered change", fmt.Sprintf("%.2f µs (%.2fs in all; idle with the watchers open: %.3f CPU-s/s)", f.CPUPerDelivUs, f.ChangesCPUSec, f.IdleCPU), ""},
	}
}

// clients says how the watchers connect.
func clients(res WatchersResult) string {
	if res.Conns == 0 || res.Conns >= res.Watchers {
		return "each watcher its own client and mTLS connection"
	}
	return fmt.Sprintf("%d watchers sharing %d clients round robin (HTTP/2 opens more connections past its stream limit)", res.Watchers, res.Conns)
}

// distMs shows a distribution with its minimum, in milliseconds.
func distMs(d Dist) string {
	if d.N == 0 {
		return "-"
	}
	return fmt.Sprintf("min %.2f  p50 %.2f  p99 %.2f  max %.2f ms (n=%d)", d.Min, d.P50, d.P99, d.Max, d.N)
}
