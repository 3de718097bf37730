package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/persys-dev/compute/internal/obs"
	"github.com/persys-dev/compute/internal/pki"
	"github.com/persys-dev/compute/internal/placement"
	"github.com/persys-dev/compute/internal/scheduler"
	"github.com/persys-dev/compute/internal/store"
)

type schedulerOptions struct {
	listen            string
	dataDir           string
	etcdEndpoints     string
	prefix            string
	ca, cert, key     string
	metricsListen     string
	strategy          string
	heartbeatInterval time.Duration
	leaseTTL          time.Duration
	resyncInterval    time.Duration
}

func (o *schedulerOptions) flags(cmd *cobra.Command) {
	f := cmd.Flags()
	f.StringVar(&o.listen, "listen", "127.0.0.1:9443", "host:port for ControlService (gRPC, mTLS)")
	f.StringVar(&o.dataDir, "data-dir", "persys-data", "data folder of the embedded etcd (ignored with --etcd-endpoints)")
	f.StringVar(&o.etcdEndpoints, "etcd-endpoints", "", "external etcd cluster, comma separated; empty runs an embedded etcd")
	f.StringVar(&o.prefix, "prefix", "/persys", "etcd key prefix")
	f.StringVar(&o.ca, "ca", "", "CA certificate (PEM) (required)")
	f.StringVar(&o.cert, "cert", "", "scheduler certificate (PEM) (required)")
	f.StringVar(&o.key, "key", "", "scheduler private key (PEM) (required)")
	f.StringVar(&o.metricsListen, "metrics-listen", "127.0.0.1:9101", "plain HTTP listener for /metrics, /healthz and /readyz (empty disables it)")
	f.StringVar(&o.strategy, "strategy", "spread", "placement scoring: spread (least allocated) or binpack")
	f.DurationVar(&o.heartbeatInterval, "heartbeat-interval", 2*time.Second, "heartbeat interval agents are told to use")
	f.DurationVar(&o.leaseTTL, "lease-ttl", 10*time.Second, "node liveness lease; a node that misses it turns NotReady")
	f.DurationVar(&o.resyncInterval, "resync-interval", 30*time.Second, "periodic full reconcile, a safety net under the event-driven path")
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
	if o.heartbeatInterval <= 0 || o.leaseTTL < 2*o.heartbeatInterval {
		return fmt.Errorf("--lease-ttl (%s) must be at least twice --heartbeat-interval (%s)", o.leaseTTL, o.heartbeatInterval)
	}
	if !strings.HasPrefix(o.prefix, "/") || strings.HasSuffix(o.prefix, "/") {
		return fmt.Errorf("--prefix %q must start with / and not end with /", o.prefix)
	}
	return nil
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
			return runScheduler(ctx, o, log, nil)
		},
	}
	o.flags(cmd)
	return cmd
}

// etcdFor connects to the external cluster or starts the embedded one.
func etcdFor(o *schedulerOptions, log *slog.Logger) (*clientv3.Client, func(), error) {
	if o.etcdEndpoints != "" {
		var eps []string
		for _, e := range strings.Split(o.etcdEndpoints, ",") {
			if e = strings.TrimSpace(e); e != "" {
				eps = append(eps, e)
			}
		}
		cli, err := store.Connect(eps, nil)
		if err != nil {
			return nil, nil, fmt.Errorf("--etcd-endpoints: %w", err)
		}
		return cli, func() { _ = cli.Close() }, nil
	}
	emb, err := store.StartEmbedded(store.EmbeddedOptions{Dir: o.dataDir, Logger: log})
	if err != nil {
		return nil, nil, fmt.Errorf("embedded etcd in %s: %w", o.dataDir, err)
	}
	cli, err := emb.Client()
	if err != nil {
		emb.Close()
		return nil, nil, err
	}
	log.Info("embedded etcd ready", "dir", o.dataDir, "endpoints", emb.Endpoints())
	return cli, func() { _ = cli.Close(); emb.Close() }, nil
}

// runScheduler runs a scheduler until ctx ends. started, when set, receives
// the bound listen address once the server accepts connections.
func runScheduler(ctx context.Context, o *schedulerOptions, log *slog.Logger, started chan<- string) error {
	files := pki.Files{CA: o.ca, Cert: o.cert, Key: o.key}
	serverTLS, err := pki.ServerTLS(files)
	if err != nil {
		return err
	}
	clientTLS, err := pki.ClientTLS(files, "")
	if err != nil {
		return err
	}
	strategy, _ := placement.ParseStrategy(o.strategy)

	cli, closeEtcd, err := etcdFor(o, log)
	if err != nil {
		return err
	}
	defer closeEtcd()

	reg := obs.NewRegistry()
	sched, err := scheduler.New(scheduler.Config{
		Store:             store.New(cli, store.Options{Prefix: o.prefix}),
		Agents:            scheduler.TLSDialer{TLS: clientTLS},
		Logger:            log,
		Registry:          reg,
		Strategy:          strategy,
		HeartbeatInterval: o.heartbeatInterval,
		LeaseTTL:          o.leaseTTL,
		ResyncInterval:    o.resyncInterval,
	})
	if err != nil {
		return err
	}
	metricsSrv, err := obs.Serve(o.metricsListen, reg, sched.Ready, log)
	if err != nil {
		return fmt.Errorf("--metrics-listen %s: %w", o.metricsListen, err)
	}
	defer func() { _ = metricsSrv.Close(context.Background()) }()

	ln, err := net.Listen("tcp", o.listen)
	if err != nil {
		return fmt.Errorf("--listen %s: %w", o.listen, err)
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
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
