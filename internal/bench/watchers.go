package bench

// The watchers scenario (issue 18, "Bounded"): Watchers clients watch a
// cluster of Workloads RUNNING workloads, over gRPC straight to the
// scheduler (mTLS) and/or as NDJSON streams through a real gateway
// (HTTPS, mTLS), one transport after the other. Each phase opens the
// watchers, then makes Changes label changes one at a time (or at Rate)
// and measures the delivery to every watcher, what the watchers cost the
// scheduler's (and the gateway's) memory, goroutines and CPU, and that
// every watcher saw every change exactly once, in order (watchacct.go).
// The scheduler and the gateway run in processes of their own by default
// so that their figures are theirs, not the watchers' clients'.

import (
	"context"
	"errors"
	"fmt"
	"os"
	"sync/atomic"
	"time"

	persysv1 "github.com/persys-dev/compute/api/persys/v1"
)

// ScenarioWatchers is the watchers scenario's name.
const ScenarioWatchers = "watchers"

// Watch transports of the watchers scenario.
const (
	WatchGRPC    = "grpc"
	WatchGateway = "gateway"
	WatchBoth    = "both"
)

const (
	maxBenchWatchers = 20_000
	maxBenchChanges  = 1_000_000
	// watchIdleWindow is how long a phase measures the CPU that open,
	// idle watchers cost before it makes changes.
	watchIdleWindow = 3 * time.Second
	// watchChangeTimeout bounds the wait for one change to reach every
	// watcher when they are made one at a time: a lost delivery of the
	// last change fails the run then, not after --timeout.
	watchChangeTimeout = 30 * time.Second
	// watchSettle bounds the wait for the scheduler to drop a phase's
	// streams before the next phase measures its baseline.
	watchSettle = 30 * time.Second
)

func (o *Options) watchersDefaults() error {
	if o.Watchers < 1 || o.Watchers > maxBenchWatchers {
		return fmt.Errorf("bench: watchers %d: must be between 1 and %d", o.Watchers, maxBenchWatchers)
	}
	if o.Changes < 1 || o.Changes > maxBenchChanges {
		return fmt.Errorf("bench: changes %d: must be between 1 and %d", o.Changes, maxBenchChanges)
	}
	if o.WatchConns < 0 {
		return fmt.Errorf("bench: conns %d: must not be negative (0: one per watcher)", o.WatchConns)
	}
	switch o.WatchTransport {
	case "":
		o.WatchTransport = WatchBoth
	case WatchGRPC, WatchGateway, WatchBoth:
	default:
		return fmt.Errorf("bench: transport %q: want %s, %s or %s", o.WatchTransport, WatchGRPC, WatchGateway, WatchBoth)
	}
	o.Cluster.ClientTLS = true
	// Per watcher: its client connection here, the server's end in this
	// process too when the scheduler runs here, and a spare.
	o.Cluster.ExtraFiles = 3*o.Watchers + 64
	return nil
}

func watchTransports(t string) []string {
	if t == WatchBoth {
		return []string{WatchGRPC, WatchGateway}
	}
	return []string{t}
}

// WatchersResult is the outcome of the watchers scenario: one phase per
// transport.
type WatchersResult struct {
	Watchers  int     `json:"watchers"`
	Workloads int     `json:"workloads"`
	Changes   int     `json:"changes_per_phase"`
	Rate      float64 `json:"changes_per_s,omitempty"`
	List      bool    `json:"watchers_list_first"`
	// Conns is how many clients the watchers share (0: one each).
	Conns  int          `json:"client_conns,omitempty"`
	Phases []WatchPhase `json:"phases"`
}

// WatchPhase is one transport's figures.
type WatchPhase struct {
	Transport string `json:"transport"`
	// Since is the revision the watchers resumed after (0: each listed).
	Since int64 `json:"since_revision,omitempty"`
	// OpenSec: until every watcher had its first bookmark.
	OpenSec    float64 `json:"open_s"`
	ChangesSec float64 `json:"changes_s"`
	// Delivery is every (change, watcher) pair: submit → decoded by the
	// watcher; Fanout is per change: submit → decoded by the last one.
	Delivery Dist `json:"delivery"`
	Fanout   Dist `json:"fanout"`
	ApplyRPC Dist `json:"apply_rpc"`
	// Deliveries counts the changes the watchers booked; OtherItems the
	// PUT and DELETE items without a fresh marker.
	Deliveries int64 `json:"deliveries"`
	OtherItems int64 `json:"other_items"`
	// ExactlyOnce counts the watchers that saw every change once, in
	// order, at the positions the others saw.
	ExactlyOnce  int               `json:"watchers_exactly_once"`
	FirstFailure string            `json:"first_failure,omitempty"`
	Scheduler    WatchProcFigures  `json:"scheduler"`
	Gateway      *WatchProcFigures `json:"gateway,omitempty"`
	// BenchCPUSec is this process's CPU time while the changes ran: the
	// watchers' clients, etcd and the hollow nodes.
	BenchCPUSec float64 `json:"bench_changes_cpu_s"`
}

// WatchProcFigures are one process's figures in a phase.
type WatchProcFigures struct {
	Process string    `json:"process"`
	Before  MemSample `json:"before_open"`
	Opened  MemSample `json:"opened"`
	After   MemSample `json:"after_changes"`
	// IdleCPU is its CPU seconds per second with the watchers open and
	// no change; ChangesCPUSec its CPU time while the changes ran.
	IdleCPU       float64 `json:"idle_cpu_s_per_s"`
	ChangesCPUSec float64 `json:"changes_cpu_s"`
	CPUPerDelivUs float64 `json:"cpu_per_delivery_us"`
}

// procSide is a process a phase measures: a child (the scheduler's or
// the gateway's) or, with proc nil, this one.
type procSide struct {
	name string
	proc *childProc
}

func (s procSide) mem() (MemSample, error) {
	if s.proc == nil {
		return sampleMem(), nil
	}
	return s.proc.memSample()
}

func (s procSide) cpu() float64 {
	if s.proc == nil {
		return statsOfPID(os.Getpid()).CPUSeconds
	}
	return s.proc.stats().CPUSeconds
}

func samples(sides []procSide) ([]MemSample, error) {
	out := make([]MemSample, len(sides))
	for i, s := range sides {
		var err error
		if out[i], err = s.mem(); err != nil {
			return nil, fmt.Errorf("bench: %s memory: %w", s.name, err)
		}
	}
	return out, nil
}

func cpus(sides []procSide) []float64 {
	out := make([]float64, len(sides))
	for i, s := range sides {
		out[i] = s.cpu()
	}
	return out
}

func watchers(ctx context.Context, c *Cluster, o *Options, rep *Report) error {
	ns := names("wl", o.Workloads)
	if err := createWorkloads(ctx, c, o, ns); err != nil {
		return err
	}
	// Let the creation's aftermath (status reports, events) pass before
	// the first baseline.
	sleepCtx(ctx, watchIdleWindow)
	var gw *childProc
	if o.WatchTransport != WatchGRPC {
		var err error
		if gw, err = startGatewayProc(ctx, c); err != nil {
			return err
		}
		defer gw.stop()
	}
	res := WatchersResult{Watchers: o.Watchers, Workloads: o.Workloads, Changes: o.Changes, Rate: o.Rate, List: o.WatchList, Conns: o.WatchConns}
	stopProfile := profile(c, o)
	defer stopProfile()
	var err error
	for i, t := range watchTransports(o.WatchTransport) {
		var ph WatchPhase
		// Markers go on numbering, so no phase mistakes another's.
		ph, err = watchPhase(ctx, c, o, gw, t, ns, i*o.Changes)
		res.Phases = append(res.Phases, ph)
		if err != nil {
			break
		}
	}
	stopProfile()
	rep.Result = res
	rep.Table = watchersRows(c, o, res)
	return err
}

// createWorkloads submits the workloads and waits until all run.
func createWorkloads(ctx context.Context, c *Cluster, o *Options, ns []string) error {
	var submitted atomic.Int64
	stop := progress(c, o, "watchers", func() string {
		return fmt.Sprintf("creating workloads: submitted %d/%d", submitted.Load(), len(ns))
	})
	defer stop()
	if _, _, err := submitAll(ctx, c, o, ns, "bench:v1", &submitted); err != nil {
		return err
	}
	return waitRunning(ctx, c, len(ns), o.Timeout, o.StallAfter)
}

// watchPhase runs one transport's phase on workloads ns; its changes'
// markers start at k0.
func watchPhase(ctx context.Context, c *Cluster, o *Options, gw *childProc, transport string, ns []string, k0 int) (WatchPhase, error) {
	ph := WatchPhase{Transport: transport}
	sides := []procSide{{name: "scheduler", proc: c.proc}}
	addr := c.ClientAddr
	if transport == WatchGateway {
		sides = append(sides, procSide{name: "gateway", proc: gw})
		addr = gw.ready.Addr
	}
	start, err := watchStartOf(ctx, c, o, len(ns))
	if err != nil {
		return ph, err
	}
	ph.Since = start.since
	before, err := samples(sides)
	if err != nil {
		return ph, err
	}
	a := newAccount(o.Watchers, o.Changes, k0, ns)
	fmt.Fprintf(o.Progress, "watchers: %s: opening %d watchers\n", transport, o.Watchers)
	t0 := time.Now()
	set, err := openWatchers(ctx, transport, addr, c.bundle.Admin, o.WatchConns, start, a, o.Timeout)
	if err != nil {
		return ph, err
	}
	defer set.close()
	ph.OpenSec = time.Since(t0).Seconds()
	opened, err := samples(sides)
	if err != nil {
		return ph, err
	}
	idle0 := cpus(sides)
	sleepCtx(ctx, watchIdleWindow)
	idle1 := cpus(sides)
	fmt.Fprintf(o.Progress, "watchers: %s: %d watchers open after %.1fs; making %d changes\n", transport, o.Watchers, ph.OpenSec, o.Changes)
	cpu0, bench0 := cpus(sides), statsOfPID(os.Getpid()).CPUSeconds
	rpcs, changeErr := makeChanges(ctx, c, o, a, &ph.ChangesSec)
	cpu1, bench1 := cpus(sides), statsOfPID(os.Getpid()).CPUSeconds
	after, err := samples(sides)
	if err != nil {
		return ph, err
	}
	set.close()
	ok, checkErr := a.check()
	ph.ExactlyOnce, ph.BenchCPUSec, ph.ApplyRPC = ok, bench1-bench0, distOf(rpcs)
	ph.Deliveries, ph.OtherItems = a.deliveries()
	all, last := a.latencies()
	ph.Delivery, ph.Fanout = distOf(all), distOf(last)
	figs := make([]WatchProcFigures, len(sides))
	for i := range sides {
		figs[i] = WatchProcFigures{Process: sideLabel(sides[i]), Before: before[i], Opened: opened[i], After: after[i],
			IdleCPU: (idle1[i] - idle0[i]) / watchIdleWindow.Seconds(), ChangesCPUSec: cpu1[i] - cpu0[i]}
		if ph.Deliveries > 0 {
			figs[i].CPUPerDelivUs = 1e6 * figs[i].ChangesCPUSec / float64(ph.Deliveries)
		}
	}
	ph.Scheduler = figs[0]
	if len(figs) > 1 {
		ph.Gateway = &figs[1]
	}
	if err := errors.Join(changeErr, checkErr); err != nil {
		ph.FirstFailure = err.Error()
		return ph, err
	}
	return ph, settle(ctx, sides[0], before[0].Goroutines)
}

func sideLabel(s procSide) string {
	if s.proc != nil {
		return s.name + " process"
	}
	return "bench process (all in one)"
}

// watchStartOf says where the watchers start: with WatchList each lists;
// otherwise the bench lists once (and checks the count) and the watchers
// resume after that list's revision, as a client that listed before.
func watchStartOf(ctx context.Context, c *Cluster, o *Options, want int) (watchStart, error) {
	if o.WatchList {
		return watchStart{list: true, listLen: want}, nil
	}
	ctx, cancel := context.WithTimeout(ctx, o.Timeout)
	defer cancel()
	st, err := c.Control(0).WatchWorkloads(ctx, &persysv1.WatchWorkloadsRequest{})
	if err != nil {
		return watchStart{}, fmt.Errorf("bench: list watch: %w", err)
	}
	n := 0
	for {
		m, err := st.Recv()
		if err != nil {
			return watchStart{}, fmt.Errorf("bench: list watch: %w", err)
		}
		switch m.GetType() {
		case persysv1.WatchEventType_WATCH_EVENT_TYPE_SNAPSHOT:
			n++
		case persysv1.WatchEventType_WATCH_EVENT_TYPE_BOOKMARK:
			if n != want {
				return watchStart{}, fmt.Errorf("bench: the list watch listed %d workloads, want %d", n, want)
			}
			return watchStart{since: m.GetRevision()}, nil
		}
	}
}

// makeChanges makes a's changes from this one goroutine, so that etcd
// commits them in order: each after every watcher saw the one before
// (o.Rate 0) or at o.Rate per second. It returns each ApplyWorkload
// call's duration and sets *sec to the time until every watcher saw
// every change.
func makeChanges(ctx context.Context, c *Cluster, o *Options, a *account, sec *float64) ([]time.Duration, error) {
	ctx, cancel := context.WithTimeout(ctx, o.Timeout)
	defer cancel()
	var tick <-chan time.Time
	if o.Rate > 0 {
		t := time.NewTicker(time.Duration(float64(time.Second) / o.Rate))
		defer t.Stop()
		tick = t.C
	}
	cli := c.Control(0)
	rpcs := make([]time.Duration, 0, a.m)
	completed := 0
	start := time.Now()
	for j := range a.m {
		if tick != nil {
			select {
			case <-tick:
			case <-a.failed:
				return rpcs, a.err()
			case <-ctx.Done():
				return rpcs, ctx.Err()
			}
		}
		name, marker := a.change(j)
		t0 := time.Now()
		a.submitted[j].Store(t0.UnixNano())
		resp, err := cli.ApplyWorkload(ctx, &persysv1.ApplyRequest{Name: name, Labels: map[string]string{changeLabel: marker}, Spec: benchSpec("bench:v1")})
		rpcs = append(rpcs, time.Since(t0))
		if err != nil {
			return rpcs, fmt.Errorf("bench: change %d of %s: %w", j, name, err)
		}
		if r := resp.GetResult(); r != "updated" {
			return rpcs, fmt.Errorf("bench: change %d of %s: result %q, want updated", j, name, r)
		}
		if tick == nil {
			cctx, ccancel := context.WithTimeout(ctx, watchChangeTimeout)
			err := awaitChanges(cctx, a, &completed, j+1)
			ccancel()
			if err != nil && ctx.Err() == nil && errors.Is(err, context.DeadlineExceeded) {
				err = fmt.Errorf("bench: change %d: %d of %d watchers saw it within %s", j, a.seen[j].Load(), len(a.watchers), watchChangeTimeout)
			}
			if err != nil {
				return rpcs, err
			}
		}
	}
	err := awaitChanges(ctx, a, &completed, a.m)
	*sec = time.Since(start).Seconds()
	return rpcs, err
}

// awaitChanges waits until want changes were seen by every watcher.
func awaitChanges(ctx context.Context, a *account, completed *int, want int) error {
	for *completed < want {
		select {
		case <-a.complete:
			*completed++
		case <-a.failed:
			return a.err()
		case <-ctx.Done():
			return fmt.Errorf("bench: %d of %d changes seen by every watcher: %w", *completed, a.m, ctx.Err())
		}
	}
	return nil
}

// settle waits until the scheduler has dropped the phase's streams (its
// goroutines are back near the baseline), so that the next phase's
// baseline is clean.
func settle(ctx context.Context, s procSide, baseline int) error {
	deadline := time.Now().Add(watchSettle)
	for {
		m, err := s.mem()
		if err != nil {
			return err
		}
		if m.Goroutines <= baseline+16 || time.Now().After(deadline) {
			return nil
		}
		if !sleepCtx(ctx, 500*time.Millisecond) {
			return ctx.Err()
		}
	}
}
