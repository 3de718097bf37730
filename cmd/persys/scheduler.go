package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/persys-dev/compute/internal/gctune"
	"github.com/persys-dev/compute/internal/obs"
	"github.com/persys-dev/compute/internal/pki"
	"github.com/persys-dev/compute/internal/placement"
	"github.com/persys-dev/compute/internal/scheduler"
	"github.com/persys-dev/compute/internal/store"
)

// defaultAgentCallsPerNode lets a burst reach a Docker engine at once: 100
// containers applied to one node ran 1.2-1.5x slower than 100 concurrent
// `docker run -d` with 8 calls in flight, and 0.92x with 128 (docs/scale.md).
const defaultAgentCallsPerNode = 64

type schedulerOptions struct {
	listen        string
	dataDir       string
	etcdEndpoints string
	// Credentials for --etcd-endpoints; etcdInsecure allows plaintext.
	etcdCA, etcdCert, etcdKey string
	etcdInsecure              bool
	prefix                    string
	ca, cert, key             string
	metricsListen             string
	strategy                  string
	heartbeatInterval         time.Duration
	leaseTTL                  time.Duration
	maxHeartbeatRate          float64
	leaseExtensionRate        float64
	resyncInterval            time.Duration
	rescheduleGrace           time.Duration
	retryBase                 time.Duration
	retryMax                  time.Duration
	maxAttempts               int
	agentCallsPerNode         int
	advertise                 string
	electionTTL               time.Duration
	// Identity (see identity.go in internal/scheduler).
	caDir         string
	certValidity  time.Duration
	renewFraction float64
	gcPercent     int
	memoryLimit   gctune.MemoryLimit
	// auditRetention is how long audit events are kept (users.go).
	auditRetention time.Duration
	// secretsKeyFile holds the keys that seal secrets (secretskey.go).
	secretsKeyFile string
}

func (o *schedulerOptions) flags(cmd *cobra.Command) {
	f := cmd.Flags()
	f.StringVar(&o.listen, "listen", "127.0.0.1:9443", "host:port for ControlService (gRPC, mTLS)")
	f.StringVar(&o.dataDir, "data-dir", "persys-data", "data folder: the embedded etcd (unless --etcd-endpoints) and git-cache, the clones compose files are read from")
	f.StringVar(&o.etcdEndpoints, "etcd-endpoints", "", "external etcd cluster, comma separated https:// URLs (needs --etcd-ca, --etcd-cert, --etcd-key); "+
		"empty runs an embedded etcd on a loopback port over TLS that answers only the certificate of its own CA in --data-dir/store-pki "+
		"(the scheduler itself calls it in process; agent, gateway and user certificates are refused)")
	f.StringVar(&o.etcdCA, "etcd-ca", "", "with --etcd-endpoints: CA bundle (PEM) that verifies the etcd members")
	f.StringVar(&o.etcdCert, "etcd-cert", "", "with --etcd-endpoints: client certificate (PEM) this scheduler presents to etcd")
	f.StringVar(&o.etcdKey, "etcd-key", "", "with --etcd-endpoints: private key (PEM) of --etcd-cert")
	f.BoolVar(&o.etcdInsecure, "etcd-insecure", false, "with --etcd-endpoints: allow http:// endpoints and TLS without a client certificate (anyone who reaches etcd can then rewrite the cluster)")
	f.StringVar(&o.prefix, "prefix", "/persys", "etcd key prefix")
	f.StringVar(&o.ca, "ca", "", "CA certificate (PEM) (required)")
	f.StringVar(&o.cert, "cert", "", "scheduler certificate (PEM) (required)")
	f.StringVar(&o.key, "key", "", "scheduler private key (PEM) (required)")
	f.StringVar(&o.metricsListen, "metrics-listen", "127.0.0.1:9101", "plain HTTP listener for /metrics, /healthz and /readyz (empty disables it)")
	f.StringVar(&o.strategy, "strategy", "spread", "placement scoring: spread (least allocated) or binpack")
	f.DurationVar(&o.heartbeatInterval, "heartbeat-interval", 2*time.Second, "heartbeat interval agents are told to use")
	f.DurationVar(&o.leaseTTL, "lease-ttl", 10*time.Second, "node liveness lease; a node that misses it turns NotReady")
	f.Float64Var(&o.maxHeartbeatRate, "max-heartbeat-rate", scheduler.DefaultMaxHeartbeatRate,
		"heartbeats a second all nodes together may send: past --heartbeat-interval x this many nodes, agents are told a longer interval and get longer leases (three intervals), so node loss takes longer to detect")
	f.Float64Var(&o.leaseExtensionRate, "lease-extension-rate", 0,
		"node lease moves a second as the cluster grows, each four etcd writes (0: a fifth of --max-heartbeat-rate)")
	f.DurationVar(&o.resyncInterval, "resync-interval", 30*time.Second, "periodic full reconcile, a safety net under the event-driven path")
	f.DurationVar(&o.rescheduleGrace, "reschedule-grace", 10*time.Second, "how long a node stays lost before its workloads move to other nodes")
	f.DurationVar(&o.retryBase, "retry-base", 5*time.Second, "first backoff between failed apply attempts (doubles each time)")
	f.DurationVar(&o.retryMax, "retry-max", 120*time.Second, "longest backoff between failed apply attempts")
	f.IntVar(&o.maxAttempts, "max-attempts", 6, "failed apply attempts of one revision before it is Failed for good (-1: no limit)")
	f.IntVar(&o.agentCallsPerNode, "agent-calls-per-node", defaultAgentCallsPerNode, "applies and deletes in flight to one node at once (1-1024)")
	f.StringVar(&o.advertise, "advertise", "", "address agents and gateways reach this replica at (default: --listen); the leader's is handed out by followers")
	f.DurationVar(&o.electionTTL, "election-ttl", 5*time.Second, "with --etcd-endpoints: how long a dead leader keeps its seat before a follower takes over")
	f.StringVar(&o.caDir, "ca-dir", "", "CA folder (ca.crt, ca.key, ca-bundle.crt): lets this scheduler sign joining agents and renewals, and renew its own certificate; without it JoinNode and RenewCertificate answer FailedPrecondition")
	f.DurationVar(&o.auditRetention, "audit-retention", store.DefaultAuditRetention, "how long audit events (every change through the gateway, allowed or refused) are kept; ordinary events expire after an hour")
	f.DurationVar(&o.certValidity, "cert-validity", pki.DefaultLeafValidity, "lifetime of the certificates this scheduler signs (joins, renewals)")
	f.StringVar(&o.secretsKeyFile, "secrets-key-file", "", "key file (JSON, mode 0600) that encrypts secrets at rest (persys secrets-key generate or rotate manages it), SIGHUP re-reads it; without it the secret API answers FailedPrecondition")
	f.Float64Var(&o.renewFraction, "cert-renew-fraction", pki.DefaultRenewFraction, "renew this scheduler's own certificate after this share of its lifetime, in (0, 1) (needs --ca-dir)")
	f.IntVar(&o.gcPercent, "gc-percent", gctune.DefaultPercent, "garbage collector target (as GOGC; a GOGC environment variable wins): more heap for less CPU")
	f.Var(&o.memoryLimit, "memory-limit", "soft limit of the process's memory (as GOMEMLIMIT, e.g. 3584MiB or 3.5GiB; a GOMEMLIMIT environment variable wins; 0: none): near it the garbage collector runs more often whatever --gc-percent says")
}

func (o *schedulerOptions) validate() error {
	if _, _, err := net.SplitHostPort(o.listen); err != nil {
		return fmt.Errorf("--listen %q: %w", o.listen, err)
	}
	for _, p := range []struct{ flag, v string }{{"--ca", o.ca}, {"--cert", o.cert}, {"--key", o.key}} {
		if p.v == "" {
			return fmt.Errorf("%s is required", p.flag)
		}
	}
	if _, err := placement.ParseStrategy(o.strategy); err != nil {
		return fmt.Errorf("--strategy: %w", err)
	}
	if !(o.maxHeartbeatRate >= 1 && o.maxHeartbeatRate <= 1e6) {
		return fmt.Errorf("--max-heartbeat-rate %v must be between 1 and 1000000", o.maxHeartbeatRate)
	}
	if !(o.leaseExtensionRate >= 0 && o.leaseExtensionRate <= 1e6) {
		return fmt.Errorf("--lease-extension-rate %v must be between 0 (a fifth of --max-heartbeat-rate) and 1000000", o.leaseExtensionRate)
	}
	if o.heartbeatInterval <= 0 || o.leaseTTL < 2*o.heartbeatInterval {
		return fmt.Errorf("--lease-ttl (%s) must be at least twice --heartbeat-interval (%s)", o.leaseTTL, o.heartbeatInterval)
	}
	if o.rescheduleGrace <= 0 || o.retryBase <= 0 || o.retryMax < o.retryBase {
		return fmt.Errorf("--reschedule-grace and --retry-base must be positive and --retry-max at least --retry-base")
	}
	if o.agentCallsPerNode < 1 || o.agentCallsPerNode > 1024 {
		return fmt.Errorf("--agent-calls-per-node %d must be between 1 and 1024", o.agentCallsPerNode)
	}
	if o.maxAttempts == 0 || o.maxAttempts < -1 {
		return fmt.Errorf("--max-attempts %d must be positive or -1", o.maxAttempts)
	}
	if o.electionTTL < time.Second {
		return fmt.Errorf("--election-ttl %s must be at least 1s", o.electionTTL)
	}
	if o.certValidity < 10*time.Second {
		return fmt.Errorf("--cert-validity %s must be at least 10s", o.certValidity)
	}
	if o.auditRetention < time.Hour || o.auditRetention > 10*365*24*time.Hour {
		return fmt.Errorf("--audit-retention %s must be between 1h and 87600h", o.auditRetention)
	}
	if o.renewFraction <= 0 || o.renewFraction >= 1 {
		return fmt.Errorf("--cert-renew-fraction %v must be in (0, 1)", o.renewFraction)
	}
	if err := gctune.Validate("--gc-percent", o.gcPercent); err != nil {
		return err
	}
	if !strings.HasPrefix(o.prefix, "/") || strings.HasSuffix(o.prefix, "/") {
		return fmt.Errorf("--prefix %q must start with / and not end with /", o.prefix)
	}
	_, err := o.etcdEndpointList()
	return err
}

// etcdEndpointList splits --etcd-endpoints and refuses to reach the store
// without credentials unless --etcd-insecure says so: whoever writes etcd
// owns the cluster.
func (o *schedulerOptions) etcdEndpointList() ([]string, error) {
	creds := []struct{ flag, v string }{{"--etcd-ca", o.etcdCA}, {"--etcd-cert", o.etcdCert}, {"--etcd-key", o.etcdKey}}
	if o.etcdEndpoints == "" {
		for _, c := range creds {
			if c.v != "" {
				return nil, fmt.Errorf("%s needs --etcd-endpoints (the embedded etcd uses --ca, --cert and --key)", c.flag)
			}
		}
		if o.etcdInsecure {
			return nil, errors.New("--etcd-insecure needs --etcd-endpoints (the embedded etcd is always locked)")
		}
		return nil, nil
	}
	var eps []string
	plain := 0
	for _, e := range strings.Split(o.etcdEndpoints, ",") {
		e = strings.TrimSpace(e)
		if e == "" {
			return nil, fmt.Errorf("--etcd-endpoints %q: empty endpoint", o.etcdEndpoints)
		}
		switch {
		case strings.HasPrefix(e, "https://"):
		case strings.HasPrefix(e, "http://"):
			plain++
		default:
			return nil, fmt.Errorf("--etcd-endpoints %q: want https://host:port", e)
		}
		eps = append(eps, e)
	}
	if plain > 0 && !o.etcdInsecure {
		return nil, fmt.Errorf("--etcd-endpoints: plaintext http:// endpoints are refused; use https:// with --etcd-ca, --etcd-cert and --etcd-key, or pass --etcd-insecure")
	}
	if plain > 0 && plain < len(eps) {
		return nil, errors.New("--etcd-endpoints: mixes http:// and https:// endpoints")
	}
	if plain == 0 && !o.etcdInsecure {
		for _, c := range creds {
			if c.v == "" {
				return nil, fmt.Errorf("%s is required with --etcd-endpoints (etcd must know this scheduler by its certificate), or pass --etcd-insecure", c.flag)
			}
		}
	}
	if (o.etcdCert == "") != (o.etcdKey == "") {
		return nil, errors.New("--etcd-cert and --etcd-key go together")
	}
	return eps, nil
}

// etcdClientTLS is the TLS of the connection to --etcd-endpoints; nil for
// plaintext endpoints.
func (o *schedulerOptions) etcdClientTLS(eps []string) (*tls.Config, error) {
	if strings.HasPrefix(eps[0], "http://") {
		return nil, nil
	}
	cfg := &tls.Config{MinVersion: tls.VersionTLS12}
	if o.etcdCA != "" {
		data, err := os.ReadFile(o.etcdCA)
		if err != nil {
			return nil, fmt.Errorf("--etcd-ca: %w", err)
		}
		certs, err := pki.ParseCertsPEM(data)
		if err != nil {
			return nil, fmt.Errorf("--etcd-ca %s: %w", o.etcdCA, err)
		}
		cfg.RootCAs = x509.NewCertPool()
		for _, c := range certs {
			cfg.RootCAs.AddCert(c)
		}
	}
	if o.etcdCert != "" {
		pair, err := tls.LoadX509KeyPair(o.etcdCert, o.etcdKey)
		if err != nil {
			return nil, fmt.Errorf("--etcd-cert/--etcd-key: %w", err)
		}
		cfg.Certificates = []tls.Certificate{pair}
	}
	return cfg, nil
}

func newSchedulerCommand() *cobra.Command {
	o := &schedulerOptions{}
	cmd := &cobra.Command{
		Use:   "scheduler",
		Short: "Run the scheduler: desired state in etcd, placement, reconciliation",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := o.validate(); err != nil {
				return err
			}
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			log := obs.NewLogger(os.Stderr, "scheduler", slog.LevelInfo)
			if gctune.Apply(o.gcPercent) {
				log.Info("garbage collector target set", "gc_percent", o.gcPercent)
			} else {
				log.Info("garbage collector target left to GOGC", "GOGC", os.Getenv("GOGC"))
			}
			if gctune.ApplyMemoryLimit(o.memoryLimit) {
				log.Info("memory limit set", "memory_limit", o.memoryLimit.String())
			} else if v, ok := os.LookupEnv("GOMEMLIMIT"); ok {
				log.Info("memory limit left to GOMEMLIMIT", "GOMEMLIMIT", v)
			}
			return runScheduler(ctx, o, log, nil)
		},
	}
	o.flags(cmd)
	return cmd
}

// storePKIDir is the folder, in --data-dir, of the embedded etcd's own CA
// and certificate.
const storePKIDir = "store-pki"

// etcdFor connects to the external cluster or starts the embedded one,
// which serves a certificate of the store's own CA (in --data-dir) and
// answers only clients that hold it. The returned func closes both.
func etcdFor(o *schedulerOptions, log *slog.Logger) (*store.Store, func(), error) {
	eps, err := o.etcdEndpointList()
	if err != nil {
		return nil, nil, err
	}
	if eps != nil {
		tlsCfg, err := o.etcdClientTLS(eps)
		if err != nil {
			return nil, nil, err
		}
		if tlsCfg == nil || len(tlsCfg.Certificates) == 0 {
			log.Warn("etcd reached without a client certificate (--etcd-insecure)", "endpoints", eps)
		}
		st, err := store.Dial(eps, tlsCfg, store.Options{Prefix: o.prefix})
		if err != nil {
			return nil, nil, fmt.Errorf("--etcd-endpoints: %w", err)
		}
		return st, func() { _ = st.Close() }, nil
	}
	// The store has a CA of its own: a certificate of the cluster's CA
	// (an agent's, a user's) must not open it.
	sf, err := pki.EnsureStoreIdentity(filepath.Join(o.dataDir, storePKIDir), time.Now())
	if err != nil {
		return nil, nil, err
	}
	emb, err := store.StartEmbedded(store.EmbeddedOptions{
		Dir: o.dataDir, Logger: log,
		TLS: &store.EmbeddedTLS{CAFile: sf.CA, CertFile: sf.Cert, KeyFile: sf.Key},
	})
	if err != nil {
		return nil, nil, fmt.Errorf("embedded etcd in %s: %w", o.dataDir, err)
	}
	// The scheduler calls its own etcd in process; the endpoints serve
	// only the store's own certificate (etcdctl for a backup, say).
	st := emb.LocalStore(store.Options{Prefix: o.prefix})
	log.Info("embedded etcd ready", "dir", o.dataDir, "endpoints", emb.Endpoints(), "client_cert", sf.Cert)
	return st, func() { _ = st.Close(); emb.Close() }, nil
}

// runScheduler runs a scheduler until ctx ends. started, when set, receives
// the bound listen address once the server accepts connections.
func runScheduler(ctx context.Context, o *schedulerOptions, log *slog.Logger, started chan<- string) error {
	files := pki.Files{CA: o.ca, Cert: o.cert, Key: o.key}
	// The holder hands renewed certificates to new handshakes. Client
	// certificates are verified when given: JoinNode comes without one,
	// and every other call requires one (authorizeMethod).
	holder, err := pki.LoadHolder(files)
	if err != nil {
		return err
	}
	serverTLS := holder.ServerTLS(tls.VerifyClientCertIfGiven)
	strategy, _ := placement.ParseStrategy(o.strategy)

	keyring, err := loadSecretsKeyring(o.secretsKeyFile, log)
	if err != nil {
		return err
	}

	st, closeEtcd, err := etcdFor(o, log)
	if err != nil {
		return err
	}
	defer closeEtcd()

	ln, err := net.Listen("tcp", o.listen)
	if err != nil {
		return fmt.Errorf("--listen %s: %w", o.listen, err)
	}
	// Replicas on an external etcd elect a leader; the embedded etcd has
	// exactly one scheduler.
	var election *scheduler.ElectionConfig
	if o.etcdEndpoints != "" {
		addr := o.advertise
		if addr == "" {
			addr = ln.Addr().String()
		}
		election = &scheduler.ElectionConfig{Address: addr, TTL: o.electionTTL}
	}
	// The CA folder's cluster id is this replica's proposal; etcd keeps
	// the first one stored.
	var clusterID string
	if o.caDir != "" {
		if clusterID, err = pki.EnsureClusterID(o.caDir); err != nil {
			return fmt.Errorf("--ca-dir: %w", err)
		}
	}
	reg := obs.NewRegistry()
	sched, err := scheduler.New(scheduler.Config{
		Store:              st,
		Logger:             log,
		Registry:           reg,
		Strategy:           strategy,
		HeartbeatInterval:  o.heartbeatInterval,
		LeaseTTL:           o.leaseTTL,
		MaxHeartbeatRate:   o.maxHeartbeatRate,
		LeaseExtensionRate: o.leaseExtensionRate,
		ResyncInterval:     o.resyncInterval,
		RescheduleGrace:    o.rescheduleGrace,
		RetryBase:          o.retryBase,
		RetryMax:           o.retryMax,
		MaxAttempts:        o.maxAttempts,
		AgentCallsPerNode:  o.agentCallsPerNode,
		Election:           election,
		AuditRetention:     o.auditRetention,
		Secrets:            keyring,
		ClusterID:          clusterID,
		GitCacheDir:        filepath.Join(o.dataDir, "git-cache"),
	})
	if err != nil {
		return err
	}
	if err := registerSchedulerOpsMetrics(reg, holder, sched, st); err != nil {
		return err
	}
	sched.SetIdentity(scheduler.IdentityConfig{CADir: o.caDir, CertValidity: o.certValidity})
	holder.SetRevocationChecker(sched.Revocations())
	metricsSrv, err := obs.Serve(o.metricsListen, reg, sched.Ready, log)
	if err != nil {
		return fmt.Errorf("--metrics-listen %s: %w", o.metricsListen, err)
	}
	defer func() { _ = metricsSrv.Close(context.Background()) }()

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var aux sync.WaitGroup
	defer func() { cancel(); aux.Wait() }()
	aux.Add(1)
	go func() { defer aux.Done(); _ = sched.RunIdentity(ctx) }()
	if keyring != nil {
		aux.Add(1)
		go func() { defer aux.Done(); reloadKeyringOnSIGHUP(ctx, keyring, log) }()
	}
	if o.caDir != "" {
		leaf := holder.Leaf()
		r := &pki.Renewer{Holder: holder, Renew: pki.LocalRenew(o.caDir, leaf.NotAfter.Sub(pki.IssuedAt(leaf))), Fraction: o.renewFraction, Logger: log,
			Stale: pki.SignedByOtherCA(o.caDir)}
		aux.Add(1)
		go func() { defer aux.Done(); _ = r.Run(ctx) }()
	}
	errc := make(chan error, 2)
	go func() { errc <- sched.Run(ctx) }()
	go func() { errc <- scheduler.Serve(ctx, ln, sched, serverTLS) }()
	log.Info("scheduler listening", "addr", ln.Addr().String(), "metrics", metricsSrv.Addr)
	if started != nil {
		started <- ln.Addr().String()
	}
	err = <-errc
	cancel()
	if err2 := <-errc; err == nil {
		err = err2
	}
	if errors.Is(err, context.Canceled) {
		err = nil
	}
	return err
}
