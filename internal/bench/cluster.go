package bench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	goruntime "runtime"
	"sync"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"

	persysv1 "github.com/persys-dev/compute/api/persys/v1"
	"github.com/persys-dev/compute/api/persys/v1/persysv1grpc"
	"github.com/persys-dev/compute/internal/agent"
	"github.com/persys-dev/compute/internal/gctune"
	"github.com/persys-dev/compute/internal/pki"
	"github.com/persys-dev/compute/internal/runtime"
	"github.com/persys-dev/compute/internal/runtime/sim"
	"github.com/persys-dev/compute/internal/scheduler"
	"github.com/persys-dev/compute/internal/store"
)

// ClusterOptions configure a hollow cluster: embedded etcd, one scheduler
// and Nodes agents on the sim runtime, all in this process, talking gRPC
// over loopback TCP: over the shared plaintext transport (simnet.go) by
// default, or each node over its own mTLS connections with MTLS.
type ClusterOptions struct {
	// MTLS gives every hollow node its own certificate and mTLS
	// connections to the scheduler (one for calls, one for the control
	// stream), as real agents have. Each connection holds a descriptor at
	// both ends; the bench raises RLIMIT_NOFILE to what the node count
	// needs (fileNeeds) in its own process and in the scheduler's.
	MTLS bool
	// MTLSConns is each mTLS node's connection count: 2 (the default) as
	// a real agent dials them (agent.DialSchedulers: calls, and the
	// control stream on its own), or 1 carrying both, which halves the
	// descriptors where the limit cannot be raised.
	MTLSConns int
	// SchedulerProcess runs the scheduler in a child process (this binary,
	// re-executed): its resident memory and CPU time are then its own, not
	// shared with etcd and the hollow agents, which stay in this process.
	SchedulerProcess bool
	// SchedulerCPUProfile and SchedulerHeapProfile are absolute paths for
	// the scheduler process's CPU profile of a scenario's measured phase
	// and its heap at the end (with SchedulerProcess; empty: none).
	SchedulerCPUProfile, SchedulerHeapProfile string
	// Nodes is the number of hollow agents (required, 1 to 20,000).
	Nodes int
	// ApplyDelay is the sim runtime's CREATING → RUNNING delay.
	ApplyDelay time.Duration
	// ReadyDelay is the sim runtime's RUNNING → ready delay (its simulated
	// readiness check; 0: ready as soon as RUNNING).
	ReadyDelay time.Duration
	// HeartbeatInterval of the agents (the scheduler tells them; default 2s).
	HeartbeatInterval time.Duration
	// LeaseTTL and RescheduleGrace of the scheduler (0: its defaults).
	LeaseTTL, RescheduleGrace time.Duration
	// Workers is the scheduler's reconcile worker count (0: its default).
	Workers int
	// GCPercent is the garbage collector target of the process that runs
	// the scheduler (0: gctune.DefaultPercent, as persys scheduler); a
	// GOGC environment variable wins. With SchedulerProcess it is set in
	// the scheduler's process, and the bench process keeps its own.
	GCPercent int
	// BenchGCPercent is, with SchedulerProcess, the garbage collector
	// target of the bench process, which stands in for the nodes and etcd
	// (0: the Go default, 100). Its collector cost is the simulation's,
	// not the scheduler's, and takes CPU from the scheduler on a small
	// machine; a higher target trades the bench process's memory for it.
	BenchGCPercent int
	// MemoryLimit is the soft memory limit of the process that runs the
	// scheduler (0: none), as persys scheduler --memory-limit; a
	// GOMEMLIMIT environment variable wins.
	MemoryLimit gctune.MemoryLimit
	// NodeCPUMillis and NodeMemoryBytes are each hollow node's capacity
	// (default 4000 mCPU, 8 GiB).
	NodeCPUMillis, NodeMemoryBytes int64
	// Dir is the bench's data folder: certificates are cached in Dir/pki
	// by node id; etcd gets a fresh folder under Dir that Close removes.
	Dir string
	// EtcdNoFsync turns etcd's fsync off (to see what the disk costs).
	EtcdNoFsync bool
	// EtcdQuotaBytes is the embedded etcd's backend quota (0: the
	// store's default, store.DefaultQuotaBackendBytes). A run that fills
	// it stops with an error that says so.
	EtcdQuotaBytes int64
	// Etcd, when set, is the store instead of an embedded etcd: an
	// external cluster (StartEtcdCluster) that the in-process scheduler
	// reaches as persys scheduler --etcd-endpoints does.
	Etcd *EtcdCluster
	// CertConcurrency bounds concurrent certificate issuance (default 2×CPUs).
	CertConcurrency int
	// StartBatch agents are started at a time, each batch registered
	// before the next starts (default 250).
	StartBatch int
	// Progress receives a line per started batch; nil is silent.
	Progress io.Writer
	// ClientTLS has the scheduler serve its ControlService over mTLS on
	// a loopback listener of its own (Cluster.ClientAddr), as persys
	// scheduler does, for API clients: watchers, a gateway. The
	// identities are those of Dir/pki.
	ClientTLS bool
	// ExtraFiles is how many more descriptors the run needs besides the
	// cluster's own (its clients' connections).
	ExtraFiles int
}

// defaults checks the options and fills in what was left zero, one group
// at a time.
func (o *ClusterOptions) defaults() error {
	for _, step := range []func() error{o.checkShape, o.checkProfiles, o.timingDefaults, o.capacityDefaults, o.setupDefaults} {
		if err := step(); err != nil {
			return err
		}
	}
	return nil
}

// checkShape checks the cluster's size against the transport.
func (o *ClusterOptions) checkShape() error {
	if o.Nodes < 1 || o.Nodes > 20000 {
		return fmt.Errorf("bench: nodes %d: must be between 1 and 20000", o.Nodes)
	}
	if o.MTLSConns == 0 {
		o.MTLSConns = 2
	}
	if o.MTLSConns != 1 && o.MTLSConns != 2 {
		return fmt.Errorf("bench: mTLS connections per node %d: want 1 or 2", o.MTLSConns)
	}
	if o.Etcd != nil && o.SchedulerProcess {
		return errors.New("bench: an external etcd serves the in-process scheduler only; drop --scheduler-process")
	}
	if o.Dir == "" {
		return errors.New("bench: data dir: empty")
	}
	if o.EtcdQuotaBytes < 0 {
		return fmt.Errorf("bench: etcd quota %d bytes: must not be negative", o.EtcdQuotaBytes)
	}
	return nil
}

// checkProfiles checks the scheduler process's profile files.
func (o *ClusterOptions) checkProfiles() error {
	if !o.SchedulerProcess && (o.SchedulerCPUProfile != "" || o.SchedulerHeapProfile != "") {
		return errors.New("bench: scheduler profiles need a scheduler process (--scheduler-process)")
	}
	for _, p := range []string{o.SchedulerCPUProfile, o.SchedulerHeapProfile} {
		if p != "" && !filepath.IsAbs(p) {
			return fmt.Errorf("bench: scheduler profile %q: want an absolute path", p)
		}
	}
	return nil
}

// timingDefaults checks and fills the durations and the scheduler's
// tuning.
func (o *ClusterOptions) timingDefaults() error {
	if o.ApplyDelay < 0 {
		return fmt.Errorf("bench: apply delay %s: must not be negative", o.ApplyDelay)
	}
	if o.ReadyDelay < 0 {
		return fmt.Errorf("bench: ready delay %s: must not be negative", o.ReadyDelay)
	}
	if o.HeartbeatInterval < 0 || o.LeaseTTL < 0 || o.RescheduleGrace < 0 {
		return errors.New("bench: heartbeat interval, lease TTL and reschedule grace must not be negative")
	}
	if o.HeartbeatInterval == 0 {
		o.HeartbeatInterval = agent.DefaultHeartbeatInterval
	}
	if o.LeaseTTL != 0 && o.LeaseTTL < 2*time.Second {
		return fmt.Errorf("bench: lease TTL %s: must be at least 2s (etcd's minimum lease)", o.LeaseTTL)
	}
	if o.GCPercent == 0 {
		o.GCPercent = gctune.DefaultPercent
	}
	if err := gctune.Validate("bench: gc percent", o.GCPercent); err != nil {
		return err
	}
	if o.BenchGCPercent != 0 {
		if !o.SchedulerProcess {
			return fmt.Errorf("bench: bench gc percent: only with the scheduler in a process of its own (the bench process runs it otherwise, with gc percent)")
		}
		if err := gctune.Validate("bench: bench gc percent", o.BenchGCPercent); err != nil {
			return err
		}
	}
	if o.Workers < 0 {
		return fmt.Errorf("bench: scheduler workers %d: must not be negative", o.Workers)
	}
	return nil
}

// capacityDefaults checks and fills each hollow node's capacity.
func (o *ClusterOptions) capacityDefaults() error {
	if o.NodeCPUMillis < 0 {
		return fmt.Errorf("bench: node CPU %dm: must not be negative", o.NodeCPUMillis)
	}
	if o.NodeMemoryBytes < 0 {
		return fmt.Errorf("bench: node memory %d bytes: must not be negative", o.NodeMemoryBytes)
	}
	if o.NodeCPUMillis == 0 {
		o.NodeCPUMillis = 4000
	}
	if o.NodeMemoryBytes == 0 {
		o.NodeMemoryBytes = 8 << 30
	}
	return nil
}

// setupDefaults checks and fills how the cluster is started.
func (o *ClusterOptions) setupDefaults() error {
	if o.CertConcurrency == 0 {
		o.CertConcurrency = 2 * goruntime.GOMAXPROCS(0)
	}
	if o.CertConcurrency < 1 {
		return fmt.Errorf("bench: cert concurrency %d: must be positive", o.CertConcurrency)
	}
	if o.StartBatch == 0 {
		o.StartBatch = 250
	}
	if o.StartBatch < 1 {
		return fmt.Errorf("bench: start batch %d: must be positive", o.StartBatch)
	}
	if o.Progress == nil {
		o.Progress = io.Discard
	}
	return nil
}

// SetupStats times the parts of starting a hollow cluster.
type SetupStats struct {
	Certs         CertStats `json:"certs"`
	EtcdSeconds   float64   `json:"etcd_start_s"`
	AgentsSeconds float64   `json:"agents_registered_s"`
	// FileLimit is the RLIMIT_NOFILE soft limit in force.
	FileLimit uint64 `json:"file_limit"`
}

// Cluster is a running hollow cluster.
type Cluster struct {
	opts  ClusterOptions
	Setup SetupStats
	// Registry holds the scheduler's metrics: its own registry in this
	// process, or a scrape of the scheduler process.
	Registry prometheus.Gatherer
	Store    *store.Store
	Sched    *scheduler.Scheduler // nil with SchedulerProcess
	Addr     string
	// ClientAddr is the scheduler's mTLS listener (with ClientTLS).
	ClientAddr string
	Nodes      []*Hollow

	bundle *pki.Bundle // the identities, with MTLS or ClientTLS

	etcdDir string
	etcdTLS *store.EmbeddedTLS
	emb     *store.Embedded
	proc    *childProc // with SchedulerProcess
	phase   phase
	cancel  context.CancelFunc
	// stopAlarms ends watchAlarms.
	stopAlarms context.CancelFunc
	bg         sync.WaitGroup
	admin      []*grpc.ClientConn
	clients    []persysv1grpc.ControlServiceClient

	// agentApplies are the scheduler's ApplyWorkload calls to the hollow
	// agents, timed one by one (in-process scheduler, shared transport).
	agentApplies durSamples
	// toSched is the shared transport's few connections to the
	// scheduler (nil with MTLS).
	toSched *connSet
	errMu   sync.Mutex
	bgErr   error
}

// Hollow is one hollow node: a real agent on the sim runtime.
type Hollow struct {
	ID      string
	Addr    string
	Runtime *sim.Runtime
	Agent   *agent.Agent

	scheds *agent.Schedulers // with mTLS, 2 connections
	conn   *grpc.ClientConn  // with mTLS, 1 connection
	cancel context.CancelFunc
	done   sync.WaitGroup
	mu     sync.Mutex
	down   bool
}

// Down reports whether the node was stopped.
func (h *Hollow) Down() bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.down
}

// Stop ends the agent's Run (its control stream closes) as a lost node
// would: the sim runtime keeps what it ran, which no one sees any more.
func (h *Hollow) Stop() {
	h.mu.Lock()
	if h.down {
		h.mu.Unlock()
		return
	}
	h.down = true
	h.mu.Unlock()
	h.cancel()
	h.done.Wait()
	if h.scheds != nil {
		_ = h.scheds.Close()
	}
	if h.conn != nil {
		_ = h.conn.Close()
	}
}

// NodeID returns the id of hollow node i (0-based).
func NodeID(i int) string { return fmt.Sprintf("hollow-%05d", i) }

// StartCluster issues (or reuses) the certificates, starts etcd, the
// scheduler on 127.0.0.1:0 and the hollow agents, each on its own
// 127.0.0.1:0 listener, and returns once every agent has registered.
func StartCluster(ctx context.Context, o ClusterOptions) (c *Cluster, err error) {
	if err := o.defaults(); err != nil {
		return nil, err
	}
	c = &Cluster{opts: o}
	defer func() {
		if err != nil {
			c.Close()
			c = nil
		}
	}()
	ids := make([]string, o.Nodes)
	for i := range ids {
		ids[i] = NodeID(i)
	}
	var bundle *pki.Bundle
	if o.MTLS {
		fmt.Fprintf(o.Progress, "bench: certificates for %d nodes in %s\n", o.Nodes, filepath.Join(o.Dir, "pki"))
		var cst CertStats
		bundle, cst, err = Certificates(ctx, filepath.Join(o.Dir, "pki"), ids, o.CertConcurrency)
		c.Setup.Certs = cst
		if err != nil {
			return c, err
		}
		fmt.Fprintf(o.Progress, "bench: certificates: %d issued, %d reused in %.1fs\n", cst.Issued, cst.Reused, cst.Seconds)
	}
	if o.ClientTLS && bundle == nil {
		// Absolute: the scheduler process reads the files too.
		dir, err := filepath.Abs(filepath.Join(o.Dir, "pki"))
		if err != nil {
			return c, fmt.Errorf("bench: data dir: %w", err)
		}
		if bundle, err = pki.Bootstrap(dir, nil, nil, nil); err != nil {
			return c, fmt.Errorf("bench: certificates: %w", err)
		}
	}
	c.bundle = bundle
	want, _ := o.fileNeeds()
	if c.Setup.FileLimit, err = raiseFileLimit(want); err != nil {
		return c, o.fileLimitError(err)
	}

	start := time.Now()
	cli, err := o.Etcd.connect()
	if err != nil {
		return c, err
	}
	if cli == nil {
		if c.etcdDir, err = os.MkdirTemp(o.Dir, "etcd-"); err != nil {
			return c, fmt.Errorf("bench: etcd dir: %w", err)
		}
		if c.etcdTLS, err = embeddedTLS(c.etcdDir, bundle); err != nil {
			return c, err
		}
		if c.emb, err = store.StartEmbedded(store.EmbeddedOptions{Dir: c.etcdDir, TLS: c.etcdTLS, UnsafeNoFsync: o.EtcdNoFsync,
			QuotaBackendBytes: o.EtcdQuotaBytes}); err != nil {
			return c, err
		}
		cli = c.emb.LocalClient()
	}
	c.Setup.EtcdSeconds = time.Since(start).Seconds()
	quiet := slog.New(slog.DiscardHandler)
	c.Store = store.New(cli, store.Options{Logger: quiet})
	alarmCtx, stopAlarms := context.WithCancel(context.Background())
	c.stopAlarms = stopAlarms
	c.watchAlarms(alarmCtx)

	if o.SchedulerProcess {
		if o.BenchGCPercent != 0 {
			gctune.Apply(o.BenchGCPercent)
			// A high target must not run the machine out of memory: past
			// half of it, the bench process collects as it must.
			var si syscall.Sysinfo_t
			if syscall.Sysinfo(&si) == nil {
				gctune.ApplyMemoryLimit(gctune.MemoryLimit(uint64(si.Totalram) * uint64(si.Unit) / 2))
			}
		}
		err = c.startSchedProc(ctx)
	} else {
		// This process runs the scheduler: give it the scheduler's GC
		// target (persys scheduler sets the same).
		gctune.Apply(o.GCPercent)
		gctune.ApplyMemoryLimit(o.MemoryLimit)
		err = c.startScheduler(ctx, bundle)
	}
	if err != nil {
		return c, err
	}

	if err := c.dialAdmin(bundle); err != nil {
		return c, err
	}

	start = time.Now()
	for at := 0; at < len(ids); at += o.StartBatch {
		end := min(at+o.StartBatch, len(ids))
		for _, id := range ids[at:end] {
			h, err := c.startHollow(id, bundle)
			if err != nil {
				return c, err
			}
			c.Nodes = append(c.Nodes, h)
		}
		for _, h := range c.Nodes[at:end] {
			for h.Agent.Ready() != nil {
				if err := c.failed(); err != nil {
					return c, err
				}
				if !sleepCtx(ctx, 5*time.Millisecond) {
					return c, ctx.Err()
				}
			}
		}
		fmt.Fprintf(o.Progress, "bench: %d/%d agents registered (%.1fs)\n", end, len(ids), time.Since(start).Seconds())
	}
	c.Setup.AgentsSeconds = time.Since(start).Seconds()
	return c, nil
}

// startScheduler runs the scheduler in this process.
func (c *Cluster) startScheduler(ctx context.Context, bundle *pki.Bundle) error {
	o := c.opts
	reg := prometheus.NewRegistry()
	c.Registry = reg
	var serve func(ctx context.Context, ln net.Listener) error
	if o.MTLS {
		schedServer, err := pki.ServerTLS(bundle.Scheduler)
		if err != nil {
			return err
		}
		serve = func(ctx context.Context, ln net.Listener) error {
			return scheduler.Serve(ctx, ln, c.Sched, schedServer)
		}
	} else {
		serve = func(ctx context.Context, ln net.Listener) error {
			return scheduler.ServeWith(ctx, ln, c.Sched, sharedServerOptions(pki.RoleAgent, pki.RoleAdmin)...)
		}
	}
	var err error
	c.Sched, err = scheduler.New(scheduler.Config{
		Store: c.Store, Logger: slog.New(slog.DiscardHandler), Registry: reg, ObserveAgentCall: c.observeAgentCall,
		HeartbeatInterval: o.HeartbeatInterval, LeaseTTL: o.LeaseTTL, RescheduleGrace: o.RescheduleGrace, Workers: o.Workers,
	})
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return fmt.Errorf("bench: scheduler listener: %w", err)
	}
	c.Addr = ln.Addr().String()
	runCtx, cancel := context.WithCancel(context.Background())
	c.cancel = cancel
	c.goBackground("scheduler run", func() error { return c.Sched.Run(runCtx) })
	c.goBackground("scheduler serve", func() error { return serve(runCtx, ln) })
	if err := c.serveClients(runCtx); err != nil {
		return err
	}
	for c.Sched.Ready() != nil {
		if err := c.failed(); err != nil {
			return err
		}
		if !sleepCtx(ctx, 10*time.Millisecond) {
			return ctx.Err()
		}
	}

	return nil
}

// serveClients starts the in-process scheduler's mTLS listener for API
// clients (ClientTLS); with MTLS its one listener is that already.
func (c *Cluster) serveClients(ctx context.Context) error {
	switch {
	case !c.opts.ClientTLS:
		return nil
	case c.opts.MTLS:
		c.ClientAddr = c.Addr
		return nil
	}
	tlsCfg, err := pki.ServerTLS(c.bundle.Scheduler)
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return fmt.Errorf("bench: scheduler client listener: %w", err)
	}
	c.ClientAddr = ln.Addr().String()
	c.goBackground("scheduler client serve", func() error { return scheduler.Serve(ctx, ln, c.Sched, tlsCfg) })
	return nil
}

// embeddedTLS locks the bench's etcd with the scheduler's certificate, or
// with one of a CA made in dir when the bench runs without mTLS.
func embeddedTLS(dir string, bundle *pki.Bundle) (*store.EmbeddedTLS, error) {
	if bundle == nil {
		var err error
		if bundle, err = pki.Bootstrap(filepath.Join(dir, "pki"), nil, nil, nil); err != nil {
			return nil, fmt.Errorf("bench: etcd certificates: %w", err)
		}
	}
	f := bundle.Scheduler
	return &store.EmbeddedTLS{CAFile: f.CA, CertFile: f.Cert, KeyFile: f.Key}, nil
}

// fileMargin is the descriptors a process of the bench needs besides
// those of the hollow nodes' connections: etcd, its clients, logs.
const fileMargin = 4096

// fileNeeds is the RLIMIT_NOFILE soft limit the bench process and the
// scheduler process need. With mTLS every node holds MTLSConns loopback
// connections to the scheduler: a descriptor at each end, both ends in
// this process unless the scheduler runs in its own. The shared
// transport needs a few in all.
func (o *ClusterOptions) fileNeeds() (bench, sched uint64) {
	bench = fileMargin + uint64(max(o.ExtraFiles, 0))
	sched = fileMargin + uint64(max(o.ExtraFiles, 0))
	if !o.MTLS {
		return bench, sched
	}
	conns := o.MTLSConns
	if conns == 0 {
		conns = 2 // the default, before defaults() fills it
	}
	perNode := uint64(conns * o.Nodes)
	if o.SchedulerProcess {
		return bench + perNode, sched + perNode
	}
	return bench + 2*perNode, sched
}

// fileLimitError says which flag asked for the descriptors a refused
// RLIMIT_NOFILE would not give.
func (o *ClusterOptions) fileLimitError(err error) error {
	switch {
	case o.MTLS && o.MTLSConns != 1:
		return fmt.Errorf("%w; --mtls holds 2 connections per node (--nodes %d): raise the hard limit (ulimit -Hn, as root with CAP_SYS_RESOURCE), give --mtls-conns 1 or lower --nodes", err, o.Nodes)
	case o.MTLS:
		return fmt.Errorf("%w; --mtls holds a connection per node (--nodes %d): raise the hard limit (ulimit -Hn, as root with CAP_SYS_RESOURCE) or lower --nodes", err, o.Nodes)
	}
	return err
}

// startSchedProc runs the scheduler in a child process: on the shared
// transport, or serving each hollow node's own mTLS connections.
func (c *Cluster) startSchedProc(ctx context.Context) error {
	_, files := c.opts.fileNeeds()
	etcdFiles, err := absFiles(pki.Files{CA: c.etcdTLS.CAFile, Cert: c.etcdTLS.CertFile, Key: c.etcdTLS.KeyFile})
	if err != nil {
		return err
	}
	cfg := schedProcConfig{
		MTLS: c.opts.MTLS, FileLimit: files,
		EtcdEndpoints: c.emb.Endpoints(),
		EtcdCA:        etcdFiles.CA, EtcdCert: etcdFiles.Cert, EtcdKey: etcdFiles.Key,
		HeartbeatInterval: c.opts.HeartbeatInterval, LeaseTTL: c.opts.LeaseTTL,
		RescheduleGrace: c.opts.RescheduleGrace, Workers: c.opts.Workers, GCPercent: c.opts.GCPercent,
		MemoryLimit: int64(c.opts.MemoryLimit),
		CPUProfile:  c.opts.SchedulerCPUProfile, HeapProfile: c.opts.SchedulerHeapProfile,
	}
	if c.opts.ClientTLS || c.opts.MTLS {
		f, err := absFiles(c.bundle.Scheduler)
		if err != nil {
			return err
		}
		cfg.ClientCA, cfg.ClientCert, cfg.ClientKey = f.CA, f.Cert, f.Key
	}
	p, err := startSchedProc(ctx, cfg, c.fail)
	if err != nil {
		return err
	}
	c.proc, c.Registry, c.Addr, c.ClientAddr = p, p, p.ready.Addr, p.ready.ClientAddr
	return nil
}

// absFiles makes an identity's paths absolute: a child process reads them.
func absFiles(f pki.Files) (pki.Files, error) {
	for _, p := range []*string{&f.CA, &f.Cert, &f.Key} {
		abs, err := filepath.Abs(*p)
		if err != nil {
			return f, fmt.Errorf("bench: %s: %w", *p, err)
		}
		*p = abs
	}
	return f, nil
}

// SchedulerProcess returns the scheduler process's own resident memory and
// CPU time; false when the scheduler runs in this process.
func (c *Cluster) SchedulerProcess() (SchedProcStats, bool) {
	if c.proc == nil {
		return SchedProcStats{}, false
	}
	return c.proc.stats(), true
}

// ProfileScheduler starts a CPU profile of the scheduler process into
// SchedulerCPUProfile; stop ends it. It fails when the scheduler runs in
// this process (profile this process instead).
func (c *Cluster) ProfileScheduler() (stop func() error, err error) {
	if c.proc == nil {
		return nil, errors.New("bench: the scheduler runs in this process")
	}
	if err := c.proc.post("/cpuprofile/start"); err != nil {
		return nil, err
	}
	return func() error { return c.proc.post("/cpuprofile/stop") }, nil
}

// HeapProfileScheduler writes the scheduler process's live heap to
// SchedulerHeapProfile.
func (c *Cluster) HeapProfileScheduler() error {
	if c.proc == nil {
		return errors.New("bench: the scheduler runs in this process")
	}
	return c.proc.post("/heapprofile")
}

// dialAdmin opens the bench's own clients of the scheduler.
func (c *Cluster) dialAdmin(bundle *pki.Bundle) error {
	if !c.opts.MTLS {
		cs, err := dialShared(c.Addr)
		if err != nil {
			return err
		}
		c.toSched = cs
		for i := range 4 {
			c.clients = append(c.clients, persysv1grpc.NewControlServiceClient(cs.as(pki.RoleAdmin, fmt.Sprintf("bench-%d", i))))
		}
		return nil
	}
	adminTLS, err := pki.ClientTLS(bundle.Admin, "")
	if err != nil {
		return err
	}
	for range 4 {
		conn, err := grpc.NewClient(c.Addr, grpc.WithTransportCredentials(credentials.NewTLS(adminTLS)))
		if err != nil {
			return fmt.Errorf("bench: admin client: %w", err)
		}
		c.admin = append(c.admin, conn)
		c.clients = append(c.clients, persysv1grpc.NewControlServiceClient(conn))
	}
	return nil
}

func (c *Cluster) startHollow(id string, bundle *pki.Bundle) (*Hollow, error) {
	if !c.opts.MTLS {
		return c.startSharedHollow(id)
	}
	files := bundle.Agents[id]
	clientTLS, err := pki.ClientTLS(files, "")
	if err != nil {
		return nil, fmt.Errorf("bench: node %s: %w", id, err)
	}
	rt, err := sim.New(sim.Options{ApplyDelay: c.opts.ApplyDelay, ReadyDelay: c.opts.ReadyDelay})
	if err != nil {
		return nil, err
	}
	cfg := agent.Config{
		NodeID: id, AdvertiseAddr: hollowAddress, Runtimes: []runtime.Runtime{rt},
		HeartbeatInterval: c.opts.HeartbeatInterval, SkipHostPortScan: true,
		Capacity: &persysv1.Resources{CpuMillis: c.opts.NodeCPUMillis, MemoryBytes: c.opts.NodeMemoryBytes, DiskBytes: 100 << 30},
		Logger:   slog.New(slog.DiscardHandler),
	}
	h := &Hollow{ID: id, Addr: hollowAddress, Runtime: rt}
	if c.opts.MTLSConns == 1 {
		// One connection carries the node's calls and its control stream.
		h.conn, err = grpc.NewClient(c.Addr, append(agent.TransportOptions(), grpc.WithTransportCredentials(credentials.NewTLS(clientTLS)))...)
		if err != nil {
			return nil, fmt.Errorf("bench: node %s: %w", id, err)
		}
		cfg.Channel = persysv1grpc.NewNodeChannelServiceClient(h.conn)
	} else if h.scheds, err = agent.DialSchedulers([]string{c.Addr}, clientTLS); err != nil {
		return nil, err
	}
	cfg.Schedulers = h.scheds
	a, err := agent.New(cfg)
	if err != nil {
		if h.scheds != nil {
			h.scheds.Close()
		}
		if h.conn != nil {
			h.conn.Close()
		}
		return nil, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	h.Agent, h.cancel = a, cancel
	h.done.Add(1)
	go func() {
		defer h.done.Done()
		_ = a.Run(ctx)
	}()
	return h, nil
}

// startSharedHollow starts a hollow agent on the shared transport: its
// calls and its control stream go over the bench's shared connections as
// agent:id.
func (c *Cluster) startSharedHollow(id string) (*Hollow, error) {
	rt, err := sim.New(sim.Options{ApplyDelay: c.opts.ApplyDelay, ReadyDelay: c.opts.ReadyDelay})
	if err != nil {
		return nil, err
	}
	a, err := agent.New(agent.Config{
		NodeID: id, AdvertiseAddr: hollowAddress, Runtimes: []runtime.Runtime{rt},
		Channel:           persysv1grpc.NewNodeChannelServiceClient(c.toSched.as(pki.RoleAgent, id)),
		HeartbeatInterval: c.opts.HeartbeatInterval, SkipHostPortScan: true,
		Capacity: &persysv1.Resources{CpuMillis: c.opts.NodeCPUMillis, MemoryBytes: c.opts.NodeMemoryBytes, DiskBytes: 100 << 30},
		Logger:   slog.New(slog.DiscardHandler),
	})
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	h := &Hollow{ID: id, Addr: hollowAddress, Runtime: rt, Agent: a, cancel: cancel}
	h.done.Add(1)
	go func() {
		defer h.done.Done()
		_ = a.Run(ctx)
	}()
	return h, nil
}

// hollowAddress is the node address every hollow agent advertises: they
// all run on this host, and the scheduler never dials it.
const hollowAddress = "127.0.0.1"

// observeAgentCall keeps the scheduler's ApplyWorkload calls, timed one
// by one, for the report.
func (c *Cluster) observeAgentCall(method string, took time.Duration, _ error) {
	if method == "ApplyWorkload" {
		c.agentApplies.add(took)
	}
}

func (c *Cluster) goBackground(what string, fn func() error) {
	c.bg.Add(1)
	go func() {
		defer c.bg.Done()
		if err := fn(); err != nil {
			c.fail(fmt.Errorf("%s: %w", what, err))
		}
	}()
}

func (c *Cluster) fail(err error) {
	c.errMu.Lock()
	defer c.errMu.Unlock()
	if c.bgErr == nil {
		c.bgErr = err
	}
}

// failed returns the first error of a background part (scheduler, etcd,
// an agent server), if any.
func (c *Cluster) failed() error {
	c.errMu.Lock()
	defer c.errMu.Unlock()
	if c.bgErr != nil {
		return c.bgErr
	}
	if c.emb != nil {
		select {
		case err := <-c.emb.Err():
			c.bgErr = fmt.Errorf("etcd: %w", err)
			return c.bgErr
		default:
		}
	}
	return nil
}

// Control returns admin client i (round robin over a few connections).
func (c *Cluster) Control(i int) persysv1grpc.ControlServiceClient {
	return c.clients[i%len(c.clients)]
}

// Live returns the nodes not stopped.
func (c *Cluster) Live() []*Hollow {
	out := make([]*Hollow, 0, len(c.Nodes))
	for _, h := range c.Nodes {
		if !h.Down() {
			out = append(out, h)
		}
	}
	return out
}

// Duplicates counts workloads that two or more live sim runtimes report
// (in any state but MISSING): a workload must run on one node only.
func (c *Cluster) Duplicates(ctx context.Context) (int, error) {
	seen := map[string]int{}
	for _, h := range c.Live() {
		ws, err := h.Runtime.List(ctx)
		if err != nil {
			return 0, err
		}
		for _, w := range ws {
			seen[w.GetName()]++
		}
	}
	dups := 0
	for _, n := range seen {
		if n > 1 {
			dups++
		}
	}
	return dups, nil
}

// Close stops the agents, the scheduler and etcd and removes etcd's folder.
// It is safe after a partial start.
func (c *Cluster) Close() {
	var wg sync.WaitGroup
	sem := make(chan struct{}, 64)
	for _, h := range c.Nodes {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			h.Stop()
		}()
	}
	wg.Wait()
	for _, conn := range c.admin {
		_ = conn.Close()
	}
	c.toSched.Close()
	if c.cancel != nil {
		c.cancel()
	}
	if c.proc != nil {
		c.proc.stop()
	}
	if c.stopAlarms != nil {
		c.stopAlarms()
	}
	c.bg.Wait()
	if c.Store != nil {
		_ = c.Store.Client().Close()
	}
	if c.emb != nil {
		c.emb.Close()
	}
	if c.etcdDir != "" {
		_ = os.RemoveAll(c.etcdDir)
	}
}

// raiseFileLimit lifts RLIMIT_NOFILE's soft limit to want (and the hard
// limit too when allowed: a container without CAP_SYS_RESOURCE refuses),
// since every hollow node holds descriptors of this process (its mTLS
// connections with --mtls). It returns the soft limit in force and fails,
// naming the limit, when it stays below want. It always sets the limit,
// even one already high enough: Go raises the soft limit at start but
// hands a child it execs the original one unless the program set it.
func raiseFileLimit(want uint64) (uint64, error) {
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		return 0, fmt.Errorf("bench: read file limit: %w", err)
	}
	next := lim
	next.Cur = max(want, lim.Cur)
	if next.Max < want {
		next.Max = want
	}
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &next); err != nil {
		next = lim
		next.Cur = lim.Max
		if err2 := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &next); err2 != nil {
			return lim.Cur, fmt.Errorf("bench: raise RLIMIT_NOFILE to %d: %w", want, err)
		}
		return next.Cur, fmt.Errorf("bench: RLIMIT_NOFILE hard limit %d is below the %d descriptors this run needs (raising it: %w)", next.Cur, want, err)
	}
	return next.Cur, nil
}

func sleepCtx(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}
