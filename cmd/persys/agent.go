package main

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/moby/moby/client"
	"github.com/spf13/cobra"
	"google.golang.org/grpc"

	"github.com/persys-dev/compute/internal/agent"
	"github.com/persys-dev/compute/internal/grpcauth"
	"github.com/persys-dev/compute/internal/nodechannel"
	"github.com/persys-dev/compute/internal/obs"
	"github.com/persys-dev/compute/internal/opsmetrics"
	"github.com/persys-dev/compute/internal/pki"
	"github.com/persys-dev/compute/internal/runtime"
	"github.com/persys-dev/compute/internal/runtime/docker"
	"github.com/persys-dev/compute/internal/runtime/sim"
)

type agentOptions struct {
	nodeID               string
	advertise            string
	schedulers           string
	ca, cert, key        string
	labels               string
	dataDir              string
	metricsListen        string
	heartbeatInterval    time.Duration
	utilizationThreshold float64
	auditInterval        time.Duration
	maxConcurrentCalls   int
	runtime              string
	simApplyDelay        time.Duration
	// Identity: join and renewal (identity.go).
	joinToken, caHash string
	// joinTokenFile, caHashFile: the same, read from files (identity.go).
	joinTokenFile, caHashFile string
	renewFraction             float64
	revocationRefresh         time.Duration
	identityReload            time.Duration
	// Compose and VM runtimes (agent_runtimes.go).
	extra runtimeOptions
}

// simStarted, when set (by tests of this package), is given each sim
// runtime an agent starts: the agent listens on no port, so a test asks
// the runtime what the node runs.
var simStarted func(nodeID string, rt *sim.Runtime)

func newAgentCommand() *cobra.Command {
	o := agentOptions{}
	cmd := &cobra.Command{
		Use:   "agent",
		Short: "Run the node agent: register with the scheduler, heartbeat, execute what it asks",
		Long: "The agent registers the node with the scheduler, heartbeats the state of every " +
			"workload, and holds one control stream to the leading scheduler (mutual TLS, dialled " +
			"out: the node listens on no port) over which it applies or deletes what the scheduler " +
			"sends. It never schedules. On SIGINT or SIGTERM it stops heartbeating and leaves the " +
			"workloads running.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runAgent(cmd.Context(), o)
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.nodeID, "node-id", "", "node id in the cluster (default: the common name of the agent's certificate when it has one, else the host name and a hash of the machine id and --data-dir)")
	f.StringVar(&o.advertise, "advertise-address", "", "the node's address for clients of its workloads (service endpoints): an IP or host name, no port (default: the local IP of the route to the scheduler)")
	f.StringVar(&o.schedulers, "scheduler", "", "scheduler address host:port, several separated by commas (required)")
	f.StringVar(&o.ca, "ca", "", "CA certificate bundle (PEM) (required)")
	f.StringVar(&o.cert, "cert", "", "agent certificate (PEM) (required)")
	f.StringVar(&o.key, "key", "", "agent private key (PEM) (required)")
	f.StringVar(&o.labels, "labels", "", "node labels as k=v,k2=v2")
	f.StringVar(&o.dataDir, "data-dir", defaultAgentDataDir(), "folder for the agent's state; its file system is the node's disk capacity")
	f.StringVar(&o.metricsListen, "metrics-listen", "127.0.0.1:9103", "plain HTTP listener for /metrics, /healthz and /readyz (empty disables it)")
	f.DurationVar(&o.heartbeatInterval, "heartbeat-interval", agent.DefaultHeartbeatInterval, "heartbeat interval (the scheduler may override it)")
	f.Float64Var(&o.utilizationThreshold, "utilization-threshold", agent.DefaultUtilizationThreshold, "share of CPU and memory capacity that resource requests may reach, in (0, 1]")
	f.IntVar(&o.maxConcurrentCalls, "max-concurrent-calls", agent.DefaultMaxConcurrentCalls, "applies and deletes the node takes at once (1-4096), declared at registration: the scheduler sends at most the smaller of this and its --agent-calls-per-node")
	f.DurationVar(&o.auditInterval, "audit-interval", agent.DefaultAuditInterval, "how often to verify that running workloads are alive (zombie detection)")
	f.StringVar(&o.runtime, "runtime", "docker", "container runtime: docker, or sim (simulated, for scale tests only: runs nothing)")
	o.extra.flags(f)
	f.DurationVar(&o.simApplyDelay, "sim-apply-delay", 0, "with --runtime sim: how long a simulated apply takes")
	identityFlags(cmd, &o)
	return cmd
}

func defaultAgentDataDir() string {
	if d, err := os.UserCacheDir(); err == nil {
		return filepath.Join(d, "persys", "agent")
	}
	return filepath.Join(os.TempDir(), "persys-agent")
}

// validate checks the flags, naming the flag in each error.
func (o *agentOptions) validate() error {
	if o.nodeID == "" {
		return errors.New("--node-id is required")
	}
	if err := pki.ValidateName("--node-id", o.nodeID); err != nil {
		return err
	}
	if o.advertise != "" {
		if _, _, err := net.SplitHostPort(o.advertise); err == nil {
			return fmt.Errorf("--advertise-address %q: an IP or host name without a port (the agent listens on no port)", o.advertise)
		}
		if strings.ContainsAny(o.advertise, " /:@") && net.ParseIP(o.advertise) == nil {
			return fmt.Errorf("--advertise-address %q: not an IP or a host name", o.advertise)
		}
	}
	if strings.TrimSpace(o.schedulers) == "" {
		return errors.New("--scheduler is required")
	}
	for i, s := range strings.Split(o.schedulers, ",") {
		s = strings.TrimSpace(s)
		if s == "" {
			continue
		}
		if host, port, err := net.SplitHostPort(s); err != nil || host == "" || port == "" {
			return fmt.Errorf("--scheduler item %d %q is not host:port", i+1, s)
		}
	}
	if err := o.validateIdentity(); err != nil {
		return err
	}
	if o.heartbeatInterval <= 0 {
		return fmt.Errorf("--heartbeat-interval %s must be positive", o.heartbeatInterval)
	}
	if o.utilizationThreshold <= 0 || o.utilizationThreshold > 1 {
		return fmt.Errorf("--utilization-threshold %v must be in (0, 1]", o.utilizationThreshold)
	}
	if o.maxConcurrentCalls < 1 || o.maxConcurrentCalls > nodechannel.MaxConcurrentCalls {
		return fmt.Errorf("--max-concurrent-calls %d must be between 1 and %d", o.maxConcurrentCalls, nodechannel.MaxConcurrentCalls)
	}
	if o.auditInterval <= 0 {
		return fmt.Errorf("--audit-interval %s must be positive", o.auditInterval)
	}
	switch o.runtime {
	case "docker", "sim":
	default:
		return fmt.Errorf("--runtime %q is not one of docker, sim", o.runtime)
	}
	if o.simApplyDelay < 0 {
		return fmt.Errorf("--sim-apply-delay %s must not be negative", o.simApplyDelay)
	}
	if o.simApplyDelay > 0 && o.runtime != "sim" {
		return errors.New("--sim-apply-delay needs --runtime sim")
	}
	return o.extra.validate()
}

// resolveNodeID fills the default node id: an identity's common name (an
// agent that joined, or --cert, keeps the id it has), else
// agent.DefaultNodeID, unique per machine and data dir.
func (o *agentOptions) resolveNodeID() error {
	if o.nodeID != "" {
		return nil
	}
	cert := o.cert
	if cert == "" && o.dataDir != "" && agent.HasIdentity(o.dataDir) {
		cert = agent.IdentityFiles(o.dataDir).Cert
	}
	if cert != "" {
		certs, err := pki.ReadCertFile(cert)
		if err != nil {
			return fmt.Errorf("--node-id: read the identity's common name: %w", err)
		}
		o.nodeID = certs[0].Subject.CommonName
		return nil
	}
	id, err := agent.DefaultNodeID(o.dataDir)
	if err != nil {
		return fmt.Errorf("--node-id: %w", err)
	}
	o.nodeID = id
	return nil
}

func runAgent(parent context.Context, o agentOptions) (err error) {
	if err := o.resolveNodeID(); err != nil {
		return err
	}
	if err := o.validate(); err != nil {
		return err
	}
	log := obs.NewLogger(os.Stderr, "agent", slog.LevelInfo)
	labels, err := agent.ParseLabels(o.labels)
	if err != nil {
		return fmt.Errorf("--%w", err)
	}
	var schedulers []string
	for _, s := range strings.Split(o.schedulers, ",") {
		if s = strings.TrimSpace(s); s != "" {
			schedulers = append(schedulers, s)
		}
	}
	ctx, stop := signal.NotifyContext(parent, os.Interrupt, syscall.SIGTERM)
	defer stop()

	// The identity: given files, or the one a join left in --data-dir
	// (joining first with --join-token when there is none). It renews
	// itself through the scheduler before it expires.
	holder, joinLabels, err := agentIdentity(ctx, o, schedulers, log)
	if err != nil {
		return err
	}
	for k, v := range joinLabels {
		if _, ok := labels[k]; !ok {
			labels[k] = v
		}
	}
	// The host of each scheduler address is verified per address (DNS or
	// IP SAN) by DialSchedulers.
	clientTLS := holder.ClientTLS("")
	stopRenew := startAgentRenewal(ctx, o, schedulers, holder, log)
	defer stopRenew()

	var rt runtime.Runtime
	var dockerCli *client.Client
	// The agent sets the cluster id (from its data dir, or at its first
	// registration); the runtimes label and scope by it.
	cluster := runtime.NewCluster()
	switch o.runtime {
	case "sim":
		simRT, err := sim.New(sim.Options{ApplyDelay: o.simApplyDelay})
		if err != nil {
			return fmt.Errorf("--runtime sim: %w", err)
		}
		log.Warn("!!! SIMULATED RUNTIME: this agent runs NOTHING; workloads only pretend to run. For scale tests only, never production !!!",
			"runtime", "sim", "sim_apply_delay", o.simApplyDelay.String())
		if simStarted != nil {
			simStarted(o.nodeID, simRT)
		}
		rt = simRT
	default:
		dockerCli, err = client.NewClientWithOpts(client.FromEnv, client.WithAPIVersionNegotiation())
		if err != nil {
			return fmt.Errorf("docker client: %w", err)
		}
		defer dockerCli.Close()
		dockerRT, err := docker.New(docker.Options{Client: dockerCli, Logger: log, NodeID: o.nodeID, Cluster: cluster, SecretsDir: filepath.Join(o.dataDir, "secrets", "docker")})
		if err != nil {
			return fmt.Errorf("docker runtime: %w", err)
		}
		rt = dockerRT
	}
	runtimes := []runtime.Runtime{rt}
	var pools []agent.StoragePool
	var vmAccel string
	if o.runtime != "sim" {
		extra, p, accel, err := o.extra.extraRuntimes(o.nodeID, cluster, o.dataDir, dockerCli, log)
		if err != nil {
			return err
		}
		runtimes, pools, vmAccel = append(runtimes, extra...), p, accel
	}

	// The credentials read the holder at every handshake: renewed
	// certificates and a rotated CA bundle apply to new connections.
	scheds, err := agent.DialSchedulers(schedulers, clientTLS,
		grpc.WithTransportCredentials(grpcauth.HolderCredentials(holder, "", tls.RequireAndVerifyClientCert)))
	if err != nil {
		return fmt.Errorf("--scheduler: %w", err)
	}
	defer scheds.Close()
	revs := pki.NewRevocationSet()
	stopIdentity := keepAgentIdentity(ctx, o, holder, revs, scheds, log)
	defer stopIdentity()

	reg := obs.NewRegistry()
	a, err := agent.New(agent.Config{
		NodeID:               o.nodeID,
		AdvertiseAddr:        o.advertise,
		Labels:               labels,
		Runtimes:             runtimes,
		StoragePools:         pools,
		VMAccel:              vmAccel,
		Schedulers:           scheds,
		AuditInterval:        o.auditInterval,
		HeartbeatInterval:    o.heartbeatInterval,
		MaxConcurrentCalls:   o.maxConcurrentCalls,
		UtilizationThreshold: o.utilizationThreshold,
		Policy:               o.extra.policy(),
		DynamicPorts:         o.extra.portRange(),
		SkipHostPortScan:     o.runtime == "sim",
		DataDir:              o.dataDir,
		Cluster:              cluster,
		Logger:               log,
		Registry:             reg,
	})
	if err != nil {
		return err
	}
	if err := opsmetrics.RegisterCerts(reg, "agent", holder); err != nil {
		return err
	}
	metricsSrv, err := obs.Serve(o.metricsListen, reg, a.Ready, log)
	if err != nil {
		return fmt.Errorf("--metrics-listen %s: %w", o.metricsListen, err)
	}
	defer func() {
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = metricsSrv.Close(sctx)
	}()
	log.Info("agent starting", "node", o.nodeID, "cluster", a.ClusterID(), "instance", a.InstanceID(), "advertise_address", o.advertise,
		"schedulers", schedulers, "runtime", o.runtime, "runtimes", len(runtimes), "vm_accel", vmAccel, "metrics", metricsSrv.Addr, "capacity", a.Capacity().String())

	if err := a.Run(ctx); err != nil {
		return err
	}
	log.Info("agent stopped")
	return nil
}
