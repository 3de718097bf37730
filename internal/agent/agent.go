// Package agent is the node agent: it registers the node with the
// scheduler, heartbeats on the node's control stream (the full set of
// workload statuses on each new stream and on request, then only what
// changed), executes the applies and deletes the scheduler sends over
// AgentService, and reports.
// It never schedules and never restarts healthy workloads on its own.
//
// Callers build an Agent with New and drive it with Run: registration,
// heartbeats, the zombie audit, and the node's control stream — the agent
// dials the leading scheduler and answers its AgentService calls over that
// one stream (internal/nodechannel), so the node listens on no port. Run
// ends when its context ends and leaves the workloads running. Registration
// rides each stream's hello; heartbeats go only on the stream. With
// several scheduler replicas, pass DialSchedulers' result as
// Config.Schedulers: the agent follows the leader and registers again with
// each new one.
package agent

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/protobuf/proto"

	persysv1 "github.com/persys-dev/compute/api/persys/v1"
	"github.com/persys-dev/compute/api/persys/v1/persysv1grpc"
	"github.com/persys-dev/compute/internal/hostaccess"
	"github.com/persys-dev/compute/internal/nodechannel"
	"github.com/persys-dev/compute/internal/runtime"
)

// Defaults for Config.
const (
	DefaultHeartbeatInterval    = 2 * time.Second
	DefaultUtilizationThreshold = 0.80
	DefaultAuditInterval        = 30 * time.Second
	// DefaultMaxConcurrentCalls is the scheduler's default per-node bound
	// (persys scheduler --agent-calls-per-node).
	DefaultMaxConcurrentCalls = 64
)

// Config configures an Agent.
type Config struct {
	// NodeID identifies the node in the cluster.
	NodeID string
	// AdvertiseAddr is the node's address as clients of its workloads
	// reach it (service endpoints are this address and a host port): an
	// IP or a host name, no port. Empty: the local IP of the route to the
	// scheduler. The scheduler never dials it: the agent dials out.
	AdvertiseAddr string
	Labels        map[string]string
	// Runtimes execute workloads, at most one per workload type.
	Runtimes []runtime.Runtime
	// Channel is one scheduler's NodeChannelService (the node's control
	// stream, which carries registration and heartbeats), used as is.
	// Exactly one of Channel and Schedulers is required.
	Channel persysv1grpc.NodeChannelServiceClient
	// Schedulers are the scheduler replicas; the agent follows their
	// leader (see DialSchedulers). The caller closes it after Run.
	Schedulers *Schedulers
	// HeartbeatInterval defaults to 2s; the scheduler's RegisterNodeResponse
	// may override it.
	HeartbeatInterval time.Duration
	// UtilizationThreshold (default 0.80) is the share of CPU and memory
	// capacity the resource requests of what the node runs may reach;
	// applies beyond it are refused with INSUFFICIENT_RESOURCES.
	UtilizationThreshold float64
	// Capacity is what the node offers; nil reads it from the host.
	Capacity *persysv1.Resources
	// AuditInterval (default 30s) is how often the agent verifies, through
	// runtimes that implement runtime.Verifier, that what they report
	// RUNNING is alive; zombies are reported FAILED with RUNTIME_ERROR.
	AuditInterval time.Duration
	// DataDir holds the agent's allocation record, its instance id and
	// the cluster it belongs to; empty keeps them in memory only (a
	// restart is then another instance, refused while the node's lease
	// lives). Its file system is the node's disk capacity.
	DataDir string
	// StoragePools are reported at registration with their free space, for
	// the scheduler's disk placement of VM disks.
	StoragePools []StoragePool
	// VMAccel is "kvm" or "tcg" when the node runs VMs.
	VMAccel string
	// Cluster is shared with the runtimes (their Cluster option): the
	// agent sets it from DataDir's cluster record at New, or from the
	// scheduler at the first registration, and records it there. Nil: the
	// agent keeps one of its own, and runtimes built without one are not
	// scoped by cluster.
	Cluster *runtime.Cluster
	// Policy is what the node lets workloads reach on the host (default:
	// nothing): reported at registration for placement, and enforced on
	// every apply (POLICY_DENIED).
	Policy hostaccess.Policy
	// DynamicPorts is the range the scheduler picks dynamic host ports
	// from on this node, reported at registration (zero: none).
	DynamicPorts hostaccess.PortRange
	// MaxConcurrentCalls is how many applies and deletes the node takes
	// at once, declared at registration (1-4096; 0: 64,
	// DefaultMaxConcurrentCalls): the scheduler sends at most the smaller
	// of it and its own per-node bound.
	MaxConcurrentCalls int
	// SkipHostPortScan reports no host ports bound by others: hollow
	// nodes of the simulator share one host, whose sockets are no node's.
	SkipHostPortScan bool
	Logger           *slog.Logger
	Registry         prometheus.Registerer
}

// StoragePool is a folder where VM disks are created. Capacity 0 means
// the size of the file system that holds it.
type StoragePool struct {
	Name     string
	Path     string
	Capacity int64
}

// Agent is the node agent. It is safe for concurrent use.
type Agent struct {
	cfg          Config
	log          *slog.Logger
	runtimes     map[persysv1.WorkloadType]runtime.Runtime
	order        []runtime.Runtime
	capacity     *persysv1.Resources
	hostCapacity bool
	hostname     string
	locks        *nameLocks
	ledger       *ledger
	metrics      *metrics
	svc          *service
	control      controlPlane
	zombies      *zombies
	// repairNotes waits to tell the scheduler the repairs made.
	repairNotes repairNotes
	health      *healthChecks
	// cluster scopes the runtimes; adoptUnlabelled is the data dir's
	// choice for objects without a cluster label (cluster.go).
	cluster         *runtime.Cluster
	adoptUnlabelled bool
	// instanceID names this agent at registration (cluster.go).
	instanceID string

	// kick asks the heartbeat loop for an immediate heartbeat; its buffer of
	// one coalesces bursts.
	kick    chan struct{}
	running atomic.Bool

	lister lister
	// stamped maps each status the runtimes last listed to its stamped
	// copy (listAll), so that one listed again is not copied again.
	stampMu      sync.Mutex
	stamped      map[*persysv1.WorkloadStatus]*persysv1.WorkloadStatus
	stampedSpare map[*persysv1.WorkloadStatus]*persysv1.WorkloadStatus
	// present is settleLedger's set of listed names, kept between
	// heartbeats (the loop goroutine owns it).
	present map[string]bool

	mu       sync.Mutex
	interval time.Duration
	contact  error // nil after a successful register or heartbeat
	// leaseTTL is the node lease's TTL the scheduler told at registration
	// (0: not told), and renewedAt when a scheduler last renewed it (a
	// registration or a heartbeat answered): while the lease may still be
	// alive, retries come often enough to reach a new leader before it
	// expires.
	leaseTTL  time.Duration
	renewedAt time.Time
	// link is the open control stream's, nil while none is; heartbeats
	// go on it. linked is closed, and replaced, each time it changes.
	link     *nodechannel.Link
	linkOn   string             // the address the link's stream was opened on
	dropLink context.CancelFunc // ends the link's stream
	linked   chan struct{}

	// streamsDone closes when Run stops: open log follows end then,
	// since they never end alone and a graceful stop waits for them.
	streamsDone chan struct{}
	streamsOnce sync.Once
}

// endStreams ends every open log follow.
func (a *Agent) endStreams() { a.streamsOnce.Do(func() { close(a.streamsDone) }) }

// New validates cfg and builds an Agent.
func New(cfg Config) (*Agent, error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	cfg.setDefaults()

	a := &Agent{
		cfg:      cfg,
		log:      cfg.Logger.With("node", cfg.NodeID),
		runtimes: make(map[persysv1.WorkloadType]runtime.Runtime, len(cfg.Runtimes)),
		locks:    newNameLocks(),
		zombies:  newZombies(),
		kick:     make(chan struct{}, 1),
		linked:   make(chan struct{}),
		interval: cfg.HeartbeatInterval,
		// Log follows end with Run.
		streamsDone: make(chan struct{}),
		contact:     errors.New("not registered with the scheduler yet"),
	}
	if err := a.addRuntimes(cfg.Runtimes); err != nil {
		return nil, err
	}

	a.cluster = cfg.Cluster
	if a.cluster == nil {
		a.cluster = runtime.NewCluster()
	}
	// Before the ledger: a data dir that holds one but no cluster record
	// was used by an agent before cluster ids.
	adopt, err := openCluster(cfg.DataDir, a.cluster)
	if err != nil {
		return nil, fmt.Errorf("agent: %w", err)
	}
	a.adoptUnlabelled = adopt
	l, err := openLedger(cfg.DataDir)
	if err != nil {
		return nil, fmt.Errorf("agent: %w", err)
	}
	a.ledger = l
	if a.instanceID, err = loadInstanceID(cfg.DataDir); err != nil {
		return nil, fmt.Errorf("agent: %w", err)
	}
	if err := a.setCapacity(cfg); err != nil {
		return nil, err
	}
	a.hostname, _ = os.Hostname()
	if eph, ok := hostaccess.EphemeralPorts(); ok && cfg.DynamicPorts.Overlaps(eph) {
		// An outgoing connection can hold such a port when a replica is
		// given it: its start fails PORT_CONFLICT at every retry.
		a.log.Warn("the dynamic port range overlaps the kernel's range for outgoing connections; keep it below (the default is "+
			hostaccess.DefaultDynamicPorts.String()+")", "dynamic_ports", cfg.DynamicPorts.String(), "ephemeral", eph.String())
	}

	m, err := newMetrics(cfg.Registry)
	if err != nil {
		return nil, fmt.Errorf("agent: register metrics: %w", err)
	}
	a.metrics = m
	a.svc = &service{a: a}
	a.health = newHealthChecks(a)
	if cfg.Schedulers != nil {
		a.control = cfg.Schedulers
	} else {
		a.control = fixedControl{ch: cfg.Channel}
	}
	return a, nil
}

// validAdvertise checks an advertised address: empty, an IP, or a host
// name; never host:port.
func validAdvertise(addr string) error {
	if addr == "" {
		return nil
	}
	if _, _, err := net.SplitHostPort(addr); err == nil {
		return errors.New("an IP or host name without a port (the agent listens on no port)")
	}
	if net.ParseIP(addr) != nil {
		return nil
	}
	if len(addr) > 253 || strings.ContainsAny(addr, " /:@") {
		return errors.New("not an IP or a host name")
	}
	return nil
}

// validate checks what New cannot default.
func (cfg *Config) validate() error {
	if cfg.NodeID == "" {
		return errors.New("agent: config NodeID is required")
	}
	if err := validAdvertise(cfg.AdvertiseAddr); err != nil {
		return fmt.Errorf("agent: config AdvertiseAddr %q: %w", cfg.AdvertiseAddr, err)
	}
	switch {
	case cfg.Channel == nil && cfg.Schedulers == nil:
		return errors.New("agent: config Channel or Schedulers is required")
	case cfg.Channel != nil && cfg.Schedulers != nil:
		return errors.New("agent: config Channel and Schedulers are exclusive; set one")
	case cfg.Channel != nil && cfg.AdvertiseAddr == "":
		return errors.New("agent: config AdvertiseAddr is required with Channel (no scheduler address to find the route to)")
	}
	if len(cfg.Runtimes) == 0 {
		return errors.New("agent: config Runtimes needs at least one runtime")
	}
	if cfg.MaxConcurrentCalls < 0 || cfg.MaxConcurrentCalls > nodechannel.MaxConcurrentCalls {
		return fmt.Errorf("agent: config MaxConcurrentCalls %d must be between 1 and %d (0: %d)",
			cfg.MaxConcurrentCalls, nodechannel.MaxConcurrentCalls, DefaultMaxConcurrentCalls)
	}
	if cfg.HeartbeatInterval < 0 {
		return fmt.Errorf("agent: config HeartbeatInterval %s is negative", cfg.HeartbeatInterval)
	}
	if cfg.AuditInterval < 0 {
		return fmt.Errorf("agent: config AuditInterval %s is negative", cfg.AuditInterval)
	}
	if cfg.UtilizationThreshold < 0 || cfg.UtilizationThreshold > 1 {
		return fmt.Errorf("agent: config UtilizationThreshold %v is outside (0, 1]", cfg.UtilizationThreshold)
	}
	for k := range cfg.Labels {
		if err := validLabelKey(k); err != nil {
			return fmt.Errorf("agent: config Labels: %w", err)
		}
	}
	return nil
}

// setDefaults fills the zero fields that have a default.
func (cfg *Config) setDefaults() {
	if cfg.MaxConcurrentCalls == 0 {
		cfg.MaxConcurrentCalls = DefaultMaxConcurrentCalls
	}
	if cfg.HeartbeatInterval == 0 {
		cfg.HeartbeatInterval = DefaultHeartbeatInterval
	}
	if cfg.AuditInterval == 0 {
		cfg.AuditInterval = DefaultAuditInterval
	}
	if cfg.UtilizationThreshold == 0 {
		cfg.UtilizationThreshold = DefaultUtilizationThreshold
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Registry == nil {
		cfg.Registry = prometheus.NewRegistry()
	}
}

// addRuntimes indexes the runtimes by workload type, one per type.
func (a *Agent) addRuntimes(rts []runtime.Runtime) error {
	for i, rt := range rts {
		if rt == nil {
			return fmt.Errorf("agent: config Runtimes[%d] is nil", i)
		}
		t := rt.Type()
		if t == persysv1.WorkloadType_WORKLOAD_TYPE_UNSPECIFIED {
			return fmt.Errorf("agent: config Runtimes[%d] has no workload type", i)
		}
		if _, dup := a.runtimes[t]; dup {
			return fmt.Errorf("agent: config Runtimes[%d]: a second runtime for %s", i, t)
		}
		a.runtimes[t] = rt
		a.order = append(a.order, rt)
	}
	return nil
}

// setCapacity takes the configured capacity, else the host's.
func (a *Agent) setCapacity(cfg Config) error {
	if c := cfg.Capacity; c != nil {
		if c.CpuMillis < 0 || c.MemoryBytes < 0 || c.DiskBytes < 0 {
			return fmt.Errorf("agent: config Capacity has a negative figure: %v", c)
		}
		a.capacity = proto.Clone(c).(*persysv1.Resources)
		return nil
	}
	c, err := HostCapacity(cfg.DataDir)
	if err != nil {
		return fmt.Errorf("agent: read host capacity: %w", err)
	}
	a.capacity = c
	a.hostCapacity = true
	return nil
}

// NodeID returns the node's id.
func (a *Agent) NodeID() string { return a.cfg.NodeID }

// ClusterID returns the id of the cluster the node belongs to; "" until
// the first registration of a fresh data dir.
func (a *Agent) ClusterID() string { return a.cluster.ID() }

// InstanceID returns the id the agent registers with (see Config.DataDir).
func (a *Agent) InstanceID() string { return a.instanceID }

// Capacity returns what the node offers.
func (a *Agent) Capacity() *persysv1.Resources {
	return proto.Clone(a.capacity).(*persysv1.Resources)
}

// Ready reports nil while the last registration or heartbeat reached the
// scheduler.
func (a *Agent) Ready() error {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.contact != nil {
		return fmt.Errorf("agent: %w", a.contact)
	}
	return nil
}

func (a *Agent) setContact(err error) {
	a.mu.Lock()
	a.contact = err
	a.mu.Unlock()
}

func (a *Agent) heartbeatInterval() time.Duration {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.interval
}

// Service returns the AgentService implementation.
func (a *Agent) Service() persysv1grpc.AgentServiceServer { return a.svc }

// Kick asks for an immediate heartbeat. Bursts coalesce: while one
// heartbeat is being sent at most one more is queued.
func (a *Agent) Kick() {
	select {
	case a.kick <- struct{}{}:
	default:
	}
}
