// Package scheduler is the control loop of Persys Compute: it owns desired
// state in etcd (through internal/store), keeps an in-memory cache fed by
// etcd watches, accepts node registrations and heartbeats, places workloads
// with internal/placement, decides with internal/reconcile, and drives the
// agents over gRPC. The API around it lives elsewhere: the ControlService
// adapter in internal/scheduler/controlapi (over this package's local API,
// local.go), the CA, join tokens, users and API tokens in
// internal/identity, and secrets in internal/secretsvc; who a call acts for
// in internal/principal. Its cache of the store is
// internal/scheduler/statecache; which replica leads is decided by
// internal/scheduler/election; compose files of Git sources are read and
// polled by internal/scheduler/gitcompose.
//
// Callers build it with New, serve it with Serve (or ServeWith) over gRPC
// with mTLS, run RunIdentity beside it, and call Run, which returns when
// its context ends. What it knows of the store lives in its cache
// (internal/scheduler/statecache), which alone holds the lock over it.
package scheduler

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/time/rate"

	persysv1 "github.com/persys-dev/compute/api/persys/v1"
	"github.com/persys-dev/compute/internal/identity"
	"github.com/persys-dev/compute/internal/nodechannel"
	"github.com/persys-dev/compute/internal/pki"
	"github.com/persys-dev/compute/internal/placement"
	"github.com/persys-dev/compute/internal/reconcile"
	"github.com/persys-dev/compute/internal/scheduler/controlapi"
	"github.com/persys-dev/compute/internal/scheduler/election"
	"github.com/persys-dev/compute/internal/scheduler/gitcompose"
	"github.com/persys-dev/compute/internal/scheduler/statecache"
	"github.com/persys-dev/compute/internal/scheduler/watchhub"
	"github.com/persys-dev/compute/internal/secrets"
	"github.com/persys-dev/compute/internal/secretsvc"
	"github.com/persys-dev/compute/internal/servicectl"
	"github.com/persys-dev/compute/internal/store"
)

// Config holds the scheduler's collaborators and tunables.
type Config struct {
	Store *store.Store
	// ObserveAgentCall, when set, is told each AgentService call made over
	// a node's control stream: its method, duration and outcome.
	ObserveAgentCall func(method string, took time.Duration, err error)
	Logger           *slog.Logger
	Registry         prometheus.Registerer
	Strategy         placement.Strategy
	// Watch sizes the resumable watches (internal/scheduler/watchhub);
	// its Source and Logger are the scheduler's.
	Watch watchhub.Config

	// HeartbeatInterval is what agents are told to use (default 2s), at
	// least: see MaxHeartbeatRate.
	HeartbeatInterval time.Duration
	// MaxHeartbeatRate is how many heartbeats a second all nodes together
	// should send (default 1,000): past HeartbeatInterval × rate nodes,
	// agents are told a longer interval, up to a third of LeaseTTL (so a
	// node survives two lost heartbeats in a row). At 5,000 nodes that
	// is 3.3 s and 1,500 heartbeats/s instead of 2,500/s.
	MaxHeartbeatRate float64
	// LeaseExtensionRate paces the moves of nodes to longer leases as the
	// cluster grows (default MaxHeartbeatRate/5, at least 1 a second):
	// each costs four etcd writes, which every member applies, and a
	// cluster formed at once asks for thousands within seconds. Until
	// moved, a node beats more often than the rate target wants (at most
	// twice: see leaseOutgrown): 10,000 nodes formed at once, paced at 10
	// a second, beat 2,000-2,500 times a second for minutes, twice the
	// target, so the default spends the moves sooner.
	LeaseExtensionRate float64
	// LeaseTTL is the node liveness lease (default 10s).
	LeaseTTL time.Duration
	// ResyncInterval re-reconciles every workload (default 30s) as a safety
	// net under the event-driven path.
	ResyncInterval time.Duration
	// ResyncRate caps that safety net at this many reconciles per second on
	// average (default 1,000): with more workloads than ResyncInterval ×
	// ResyncRate the period stretches (150,000 workloads: every 150 s), so
	// a large cluster does not spend a core re-checking what events keep
	// current.
	ResyncRate int
	// ApplyTimeout bounds one agent call (default 2m: an image pull).
	ApplyTimeout time.Duration
	// RetryBase and RetryMax bound re-apply backoff (5s, 10s … 120s).
	RetryBase, RetryMax time.Duration
	// MaxAttempts ends the retries of one revision with FAILED (default 6;
	// negative retries for ever).
	MaxAttempts int
	// RescheduleGrace is how long a node stays lost before its workloads
	// are placed elsewhere (default 10s).
	RescheduleGrace time.Duration
	// StableAfter is how long a workload must stay in its desired state
	// before its failed attempts are forgotten (default 30s), so one that
	// starts and then fails again backs off instead of looping.
	StableAfter time.Duration
	// Election, when set, makes this scheduler one of several replicas: it
	// serves only while it leads. Nil: it always leads (one scheduler).
	Election *ElectionConfig
	// Workers is the number of reconcile workers (default 512). A worker
	// mostly waits, on a group commit or an agent call: with few workers
	// the pipeline is bound by those round trips, not by CPU (32 workers
	// placed 1,100-1,500 workloads/s at 5,000 nodes, 512 about 2,500/s,
	// with larger and so cheaper batches).
	Workers int
	// AgentCallsPerNode bounds the applies and deletes in flight to one
	// node (default 8; persys scheduler's --agent-calls-per-node, 64), so
	// that many workers never flood one node. A Docker engine does gain
	// from concurrent creates: a burst of 100 on one node ran 1.2-1.5x
	// slower than 100 concurrent `docker run -d` with 8 in flight, 0.92x
	// with 128 (docs/scale.md).
	AgentCallsPerNode int
	// AgentCallsTotal bounds the applies in flight to all nodes together
	// (default 8,192): each holds a goroutine and buffers, and the rest
	// wait in their nodes' outboxes as a few hundred bytes each.
	AgentCallsTotal int
	// Now is the clock (default time.Now); tests may pass their own.
	Now func() time.Time
	// AuditRetention is how long audit events are kept (default
	// store.DefaultAuditRetention, 720h), apart from ordinary events.
	AuditRetention time.Duration
	// Secrets seals and opens secrets; nil disables the secret API (its
	// calls answer FailedPrecondition) and fails applies that reference one.
	Secrets *secrets.Keyring
	// ClusterID is the id this scheduler proposes for its cluster (the CA
	// folder's, see pki.EnsureClusterID); empty proposes a random one. The
	// first proposal stored in etcd stays the cluster's id for good.
	ClusterID string
	// GitCacheDir holds the bare clones compose files are read from (one
	// folder per repository URL, mode 0700): `persys scheduler` passes
	// DATA_DIR/git-cache. Empty: a folder under the system's temporary
	// folder, made once per Scheduler on first use.
	GitCacheDir string
}

func (c *Config) defaults() {
	if c.HeartbeatInterval <= 0 {
		c.HeartbeatInterval = 2 * time.Second
	}
	if c.MaxHeartbeatRate <= 0 {
		c.MaxHeartbeatRate = DefaultMaxHeartbeatRate
	}
	if c.LeaseExtensionRate <= 0 {
		c.LeaseExtensionRate = max(1, c.MaxHeartbeatRate/5)
	}
	if c.StableAfter <= 0 {
		c.StableAfter = 30 * time.Second
	}
	if c.LeaseTTL <= 0 {
		c.LeaseTTL = 10 * time.Second
	}
	if c.ResyncInterval <= 0 {
		c.ResyncInterval = 30 * time.Second
	}
	if c.ResyncRate <= 0 {
		c.ResyncRate = 1000
	}
	if c.ApplyTimeout <= 0 {
		c.ApplyTimeout = 2 * time.Minute
	}
	if c.RetryBase <= 0 {
		c.RetryBase = 5 * time.Second
	}
	if c.RetryMax <= 0 {
		c.RetryMax = 120 * time.Second
	}
	if c.MaxAttempts == 0 {
		c.MaxAttempts = 6
	}
	if c.RescheduleGrace <= 0 {
		c.RescheduleGrace = 10 * time.Second
	}
	if c.Workers <= 0 {
		c.Workers = DefaultWorkers
	}
	if c.AgentCallsPerNode <= 0 {
		c.AgentCallsPerNode = 8
	}
	if c.AgentCallsTotal <= 0 {
		c.AgentCallsTotal = 8192
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
}

// DefaultMaxHeartbeatRate is Config.MaxHeartbeatRate when left zero.
const DefaultMaxHeartbeatRate = 1000

// DefaultWorkers is the reconcile worker count when Config leaves it zero.
const DefaultWorkers = 512

// Scheduler is the control loop.
type Scheduler struct {
	cfg     Config
	store   *store.Store
	log     *slog.Logger
	metrics *metrics
	queue   *queue
	events  *eventWriter
	// git reads compose files from Git sources, and gitPoll polls those
	// that ask for it while this replica leads.
	git     *gitcompose.Fetcher
	gitPoll *gitcompose.Poller

	// cache holds the workloads, nodes and assignments read from etcd,
	// with the revisions they were read at.
	cache *statecache.Cache
	// batches group-commit placements and statuses (batch.go).
	batches writeBatches

	// runMu guards runCtx, orphanInflight and leaseInflight (none of the
	// cache).
	runMu sync.Mutex
	// orphanInflight de-duplicates orphan removals: node/name → true.
	orphanInflight map[string]bool
	// leaseInflight de-duplicates node lease extensions (leases.go),
	// leaseSlots bounds them and leasePace paces them.
	leaseInflight map[string]bool
	leaseSlots    chan struct{}
	leasePace     *rate.Limiter

	// pendingPass runs queuePending's passes over the cache.
	pendingPass coalescer
	// nodes holds each node's control stream (NodeChannelService), over
	// which the pool calls the agents.
	nodes    *nodechannel.Hub
	poolOnce sync.Once
	pool     *agentPool
	// dispatch runs the agent calls of applies the workers hand off.
	dispatch *dispatcher
	// callLimits bounds the applies and deletes in flight to each node
	// (the dispatcher's and the agent pool's bound).
	callLimits *callLimits
	// runCtx is Run's context (guarded by runMu); background counts the
	// goroutines started from request handlers (orphan removals) that Run
	// waits for.
	runCtx     context.Context
	background sync.WaitGroup
	// nodeLossSem bounds the NotReady records written at once (watch.go).
	nodeLossSem chan struct{}
	// elector says whether this replica leads, and who does for
	// followers' redirects.
	elector *election.Elector
	// loadedCh is closed once the first snapshot is in the cache.
	loadedCh   chan struct{}
	loadedOnce sync.Once
	// clusterID is the cluster's id, read from etcd when a term starts
	// (a string; "" before).
	clusterID atomic.Value
	// identity serves the CA, join tokens, revocations, users and API
	// tokens (internal/identity); audit is the audit log it shares with
	// the secrets calls.
	identity *identity.Service
	audit    *store.AuditLog
	// secrets serves the secret API and delivers values (internal/secretsvc).
	secrets *secretsvc.Service
	// services is the service controller (internal/servicectl; wiring in
	// services.go), run while leading.
	services *servicectl.Controller
	// hub serves the resumable watches (WatchWorkloads and the others)
	// while this replica leads.
	hub *watchhub.Hub
}

// New builds a scheduler; call Run to start it.
func New(cfg Config) (*Scheduler, error) {
	cfg.defaults()
	if cfg.Store == nil {
		return nil, errors.New("scheduler: Config.Store is required")
	}
	if cfg.ClusterID != "" {
		if err := pki.ValidateClusterID("scheduler: Config.ClusterID", cfg.ClusterID); err != nil {
			return nil, err
		}
	}
	limits := newCallLimits(cfg.AgentCallsPerNode)
	s := &Scheduler{
		cfg:   cfg,
		store: cfg.Store,
		log:   cfg.Logger,
		queue: newQueue(),
		cache: statecache.New(statecache.Config{MaxAttempts: cfg.MaxAttempts, Strategy: cfg.Strategy, Now: cfg.Now,
			Backoff: func(attempt int) time.Duration { return reconcile.Backoff(attempt+1, cfg.RetryBase, cfg.RetryMax) }}),
		nodeLossSem:    make(chan struct{}, nodeLossWriters),
		orphanInflight: map[string]bool{},
		leaseInflight:  map[string]bool{},
		leaseSlots:     make(chan struct{}, leaseExtenders),
		leasePace:      rate.NewLimiter(rate.Limit(cfg.LeaseExtensionRate), 1),
		loadedCh:       make(chan struct{}),
		callLimits:     limits,
		dispatch:       newDispatcher(limits, cfg.AgentCallsTotal),
	}
	ecfg := election.Config{Store: cfg.Store, Logger: cfg.Logger, Alone: cfg.Election == nil, Elected: s.elected}
	if cfg.Election != nil {
		if cfg.Election.Address == "" {
			return nil, errors.New("scheduler: Config.Election.Address is required")
		}
		ecfg.Address, ecfg.TTL = cfg.Election.Address, cfg.Election.TTL
	}
	s.pendingPass = coalescer{delay: pendingPassDelay, spacing: pendingPassSpacing, fn: s.queuePendingNow}
	var err error
	if s.elector, err = election.New(ecfg); err != nil {
		return nil, err
	}
	s.metrics = newMetrics(cfg.Registry, s)
	s.nodes = nodechannel.NewHub(nodechannel.HubConfig{Log: cfg.Logger, Metrics: nodechannel.NewMetrics(cfg.Registry),
		Observe: cfg.ObserveAgentCall,
		Heartbeat: func(ctx context.Context, _ string, req *persysv1.HeartbeatRequest) (*persysv1.HeartbeatResponse, error) {
			return controlapi.Heartbeat(ctx, s, req)
		},
		Register: func(ctx context.Context, _ string, req *persysv1.RegisterNodeRequest) (*persysv1.RegisterNodeResponse, error) {
			return controlapi.RegisterNode(ctx, s, req)
		}})
	s.events = newEventWriter(cfg.Store, cfg.Logger)
	s.audit = cfg.Store.AuditLog(cfg.AuditRetention)
	s.identity = identity.New(identity.Config{Store: cfg.Store, Audit: s.audit, Nodes: identityNodes{s},
		Events: s.events, Logger: cfg.Logger, Now: cfg.Now})
	s.secrets = secretsvc.New(secretsvc.Config{Store: cfg.Store, Audit: s.audit, Keyring: cfg.Secrets,
		Events: s.events, Logger: cfg.Logger, Now: cfg.Now, Changed: s.wakeSecretWaiters})
	s.git = gitcompose.NewFetcher(cfg.GitCacheDir, s.secrets)
	s.gitPoll = &gitcompose.Poller{Store: cfg.Store, Fetcher: s.git, Each: s.cache.EachGitPolled, Prepare: s.prepareSpec,
		Written: s.cacheWorkload, Event: s.events.Add, Logger: cfg.Logger, Now: cfg.Now}
	wcfg := cfg.Watch
	wcfg.Source, wcfg.Logger = cfg.Store, cfg.Logger
	s.hub = watchhub.New(wcfg)
	if err := s.newServiceController(); err != nil {
		return nil, err
	}
	return s, nil
}

// Ready reports nil when the replica can serve: a leader once its cache is
// loaded from etcd, a follower at once (it answers with the leader).
func (s *Scheduler) Ready() error {
	if s.cfg.Election != nil && !s.elector.Leading() {
		return nil
	}
	if !s.cache.Loaded() {
		return errors.New("scheduler cache not loaded yet")
	}
	return nil
}

// Run serves as the leader until ctx ends: alone when no election is
// configured, otherwise each time this replica wins the election, standing
// by as a follower in between.
func (s *Scheduler) Run(ctx context.Context) error { return s.elector.Run(ctx, s.lead) }

// lead loads the cache, then watches etcd and reconciles until ctx ends.
func (s *Scheduler) lead(ctx context.Context) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	s.queue.reset()
	s.runMu.Lock()
	s.runCtx = ctx
	s.runMu.Unlock()
	// A term starts from etcd alone: every node reports again before its
	// workloads are decided; a reload within the term (watch failure)
	// keeps the reports.
	s.cache.ForgetNodes()

	var wg sync.WaitGroup
	wg.Add(1)
	go func() { defer wg.Done(); s.events.run(ctx) }()

	if err := s.ensureClusterID(ctx); err != nil {
		cancel()
		wg.Wait()
		return err
	}
	rev, err := s.load(ctx)
	if err != nil {
		cancel()
		wg.Wait()
		return err
	}
	wg.Add(1)
	go func() { defer wg.Done(); s.renewTermLeases(ctx) }()
	for i := 0; i < s.cfg.Workers; i++ {
		wg.Add(1)
		go func() { defer wg.Done(); s.worker(ctx) }()
	}
	wg.Add(1)
	go func() { defer wg.Done(); s.resyncLoop(ctx) }()
	wg.Add(1)
	go func() { defer wg.Done(); s.gitPoll.Run(ctx) }()
	// Service controller wiring: it runs while this replica leads.
	wg.Add(1)
	go func() { defer wg.Done(); _ = s.services.Run(ctx) }()
	wg.Add(1)
	go func() { defer wg.Done(); _ = s.hub.Run(ctx) }()

	err = s.watchLoop(ctx, rev)
	s.queue.Close()
	cancel()
	wg.Wait()
	// Handed-off applies end with the term (their context) before the
	// cache unloads and the next term resets the queue.
	s.dispatch.wait()
	// No orphan removal starts after this: they check runCtx under runMu.
	s.runMu.Lock()
	s.runCtx = nil
	s.runMu.Unlock()
	s.cache.Unload()
	s.background.Wait()
	s.agentsClose()
	if ctx.Err() != nil {
		return nil
	}
	return err
}

// ensureClusterID reads the cluster's id from etcd, storing this
// scheduler's proposal when the cluster has none yet.
func (s *Scheduler) ensureClusterID(ctx context.Context) error {
	proposed := s.cfg.ClusterID
	if proposed == "" {
		var err error
		if proposed, err = pki.NewClusterID(); err != nil {
			return err
		}
	}
	id, err := s.store.EnsureClusterID(ctx, proposed)
	if err != nil {
		return fmt.Errorf("cluster id: %w", err)
	}
	if s.cfg.ClusterID != "" && id != s.cfg.ClusterID {
		s.log.Warn("the cluster id stored in etcd differs from the CA folder's; keeping etcd's", "cluster", id, "ca_folder", s.cfg.ClusterID)
	}
	s.clusterID.Store(id)
	return nil
}

// ClusterID returns the cluster's id; "" until this replica first led.
func (s *Scheduler) ClusterID() string {
	id, _ := s.clusterID.Load().(string)
	return id
}

// load replaces the cache with one consistent snapshot and queues every
// workload; it returns the snapshot's revision to watch from.
func (s *Scheduler) load(ctx context.Context) (int64, error) {
	snap, err := s.store.Load(ctx)
	if err != nil {
		return 0, fmt.Errorf("load state from etcd: %w", err)
	}
	names := s.cache.Load(statecache.Snapshot{Workloads: snap.Workloads, WorkloadRevs: snap.WorkloadRevs,
		Statuses: snap.Statuses, Assignments: snap.Assignments, AssignmentRevs: snap.AssignmentRevs,
		Nodes: snap.Nodes, AliveNodes: snap.AliveNodes, Retries: snap.Retries})
	s.loadedOnce.Do(func() { close(s.loadedCh) })
	for _, n := range names {
		s.queue.Add(n)
	}
	s.log.Info("state loaded", "revision", snap.Revision, "workloads", len(snap.Workloads), "nodes", len(snap.Nodes))
	return snap.Revision, nil
}

// termLeaseRenewers bounds the lease renewals in flight as a term begins.
const termLeaseRenewers = 32

// renewTermLeases renews, once, the lease of every node alive when this
// scheduler began to lead. Nobody renewed them while the replicas elected
// it, and each agent still has to find it and register: without this a
// short TTL lapsed in the meantime and the new leader lost nodes that were
// fine. A node that died just before the election is found lost up to one
// TTL later. (Nomad resets its heartbeat timers on a leader change too.)
func (s *Scheduler) renewTermLeases(ctx context.Context) {
	start := time.Now()
	type nodeLease struct {
		id    string
		lease int64
	}
	var leases []nodeLease
	for id, lease := range s.cache.AliveNodeLeases() {
		if lease != 0 {
			leases = append(leases, nodeLease{id, lease})
		}
	}
	if len(leases) == 0 {
		return
	}
	var renewed, gone atomic.Int64
	// A call returns at once when ctx ends, so the term's end is not held.
	forEach(len(leases), termLeaseRenewers, func(i int) {
		err := s.store.KeepAliveNode(ctx, leases[i].lease)
		switch {
		case err == nil:
			renewed.Add(1)
			s.metrics.leasesRenewed.Inc()
		case errors.Is(err, store.ErrLeaseNotFound):
			gone.Add(1) // expired meanwhile: the watch reports the loss
		case ctx.Err() == nil:
			s.log.Warn("renew node lease for the new term", "node", leases[i].id, "err", err)
		}
	})
	s.log.Info("node leases renewed for the new term", "renewed", renewed.Load(), "expired", gone.Load(),
		"duration_ms", time.Since(start).Milliseconds())
}

func (s *Scheduler) resyncLoop(ctx context.Context) {
	wait := s.cfg.ResyncInterval
	for {
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
		s.cache.PruneTombstones()
		names := s.cache.Names()
		for _, n := range names {
			s.queue.AddLow(n)
		}
		wait = resyncWait(len(names), s.cfg.ResyncInterval, s.cfg.ResyncRate)
	}
}

// resyncWait is the pause after a resync of n workloads: the interval, or
// longer when n workloads at rate per second take longer than that.
func resyncWait(n int, interval time.Duration, rate int) time.Duration {
	if rate <= 0 {
		return interval
	}
	return max(interval, time.Duration(n)*time.Second/time.Duration(rate))
}

func (s *Scheduler) worker(ctx context.Context) {
	for {
		name, ok := s.queue.Get()
		if !ok {
			return
		}
		if !s.reconcile(ctx, name) {
			s.queue.Done(name)
		}
	}
}

func newUID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}
