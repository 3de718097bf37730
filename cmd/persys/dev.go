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
	"syscall"
	"time"

	"github.com/spf13/cobra"
	"google.golang.org/grpc"

	"github.com/persys-dev/compute/api/persys/v1/persysv1grpc"
	"github.com/persys-dev/compute/internal/agent"
	"github.com/persys-dev/compute/internal/client"
	"github.com/persys-dev/compute/internal/gateway"
	"github.com/persys-dev/compute/internal/grpcauth"
	"github.com/persys-dev/compute/internal/obs"
	"github.com/persys-dev/compute/internal/opsmetrics"
	"github.com/persys-dev/compute/internal/pki"
	"github.com/persys-dev/compute/internal/secrets"
)

type devOptions struct {
	dataDir         string
	nodeID          string
	schedulerListen string
	gatewayListen   string
	metricsBase     int
	labels          string
	dynamicPorts    string
}

func newDevCommand() *cobra.Command {
	o := &devOptions{}
	cmd := &cobra.Command{
		Use:   "dev",
		Short: "Run a whole cluster of one in this process: embedded etcd, scheduler, gateway and an agent on the local Docker engine",
		Long: "dev creates a CA and certificates in its data folder (kept across restarts), starts an embedded etcd, " +
			"the scheduler, the gateway and one agent on the local Docker engine, all talking over mTLS, and " +
			"writes a persysctl config file. It is a real cluster of one, not a mock.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			return runDev(ctx, o)
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.dataDir, "data-dir", ".persys-dev", "folder for etcd data, certificates and the persysctl config")
	f.StringVar(&o.nodeID, "node-id", "", "id of the local node (default: the host name and a hash of the machine id and the data folder, or the host name for a data folder made by an older persys dev)")
	f.StringVar(&o.schedulerListen, "scheduler-listen", "127.0.0.1:9443", "scheduler gRPC address")
	f.StringVar(&o.gatewayListen, "gateway-listen", "127.0.0.1:8443", "gateway HTTPS address")
	f.IntVar(&o.metricsBase, "metrics-port", 9101, "first of three loopback ports for /metrics of scheduler, gateway and agent (0 disables them)")
	f.StringVar(&o.labels, "labels", "", "labels of the local node, k=v,k2=v2")
	dynamicPortsFlag(f, &o.dynamicPorts)
	return cmd
}

func runDev(ctx context.Context, o *devOptions) error {
	dir, err := filepath.Abs(o.dataDir)
	if err != nil {
		return fmt.Errorf("--data-dir: %w", err)
	}
	if o.nodeID == "" {
		if o.nodeID, err = devNodeID(dir); err != nil {
			return err
		}
	}
	if err := pki.ValidateName("--node-id", o.nodeID); err != nil {
		return err
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("--data-dir: %w", err)
	}
	bundle, err := pki.Bootstrap(filepath.Join(dir, "pki"), []string{o.nodeID}, nil, nil)
	if err != nil {
		return fmt.Errorf("certificates: %w", err)
	}
	// The secrets key is made on first start and kept: it opens every
	// secret stored in the data folder's etcd.
	keyFile := filepath.Join(dir, "secrets.key")
	if _, err := secrets.GenerateKeyFile(keyFile); err != nil && !errors.Is(err, os.ErrExist) {
		return fmt.Errorf("secrets key: %w", err)
	}
	metrics := func(i int) string {
		if o.metricsBase == 0 {
			return ""
		}
		return fmt.Sprintf("127.0.0.1:%d", o.metricsBase+i)
	}

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	errc := make(chan error, 3)

	// Scheduler with its embedded etcd.
	schedLog := obs.NewLogger(os.Stderr, "scheduler", slog.LevelInfo)
	started := make(chan string, 1)
	sched := &schedulerOptions{
		listen: o.schedulerListen, dataDir: filepath.Join(dir, "etcd"), prefix: "/persys",
		ca: bundle.CA, cert: bundle.Scheduler.Cert, key: bundle.Scheduler.Key, metricsListen: metrics(0), caDir: bundle.Dir,
		strategy: "spread", heartbeatInterval: 2 * time.Second, leaseTTL: 10 * time.Second, resyncInterval: 30 * time.Second,
		rescheduleGrace: 10 * time.Second, retryBase: 5 * time.Second, retryMax: 120 * time.Second, maxAttempts: 6, agentCallsPerNode: defaultAgentCallsPerNode, electionTTL: 5 * time.Second,
		secretsKeyFile: keyFile,
	}
	go func() { errc <- component("scheduler", runScheduler(ctx, sched, schedLog, started)) }()
	var schedAddr string
	select {
	case schedAddr = <-started:
	case err := <-errc:
		return err
	case <-ctx.Done():
		return nil
	}

	// Gateway.
	gwAddr, err := startDevGateway(ctx, bundle, schedAddr, o.gatewayListen, metrics(1), errc)
	if err != nil {
		return err
	}

	// Agent on the local Docker engine.
	agentFiles := bundle.Agents[o.nodeID]
	ao := agentOptions{
		nodeID: o.nodeID, advertise: "127.0.0.1", schedulers: schedAddr,
		ca: bundle.CA, cert: agentFiles.Cert, key: agentFiles.Key, labels: o.labels,
		dataDir: filepath.Join(dir, "agent"), metricsListen: metrics(2),
		heartbeatInterval: 2 * time.Second, utilizationThreshold: 0.8,
		auditInterval: agent.DefaultAuditInterval, runtime: "docker", // validate refuses zero values
		maxConcurrentCalls: sched.agentCallsPerNode, // the node takes what its scheduler sends
		extra:              runtimeOptions{compose: true, vm: "auto", dynamicPorts: o.dynamicPorts},
	}
	go func() { errc <- component("agent", runAgent(ctx, ao)) }()

	cfgPath := filepath.Join(dir, "persysctl.yaml")
	if err := client.WriteConfig(cfgPath, &client.Config{
		Endpoint: "https://" + gwAddr, CA: bundle.CA, Cert: bundle.Admin.Cert, Key: bundle.Admin.Key,
	}); err != nil {
		return err
	}
	fmt.Printf("persys dev is running (node %s)\n  scheduler  %s\n  gateway    https://%s\n  data       %s\n\nPoint persysctl at it:\n  export PERSYSCTL_CONFIG=%s\n\n",
		o.nodeID, schedAddr, gwAddr, dir, cfgPath)

	select {
	case err := <-errc:
		cancel()
		return err
	case <-ctx.Done():
		return nil
	}
}

// startDevGateway serves the gateway in-process with the same code as
// `persys gateway`.
func startDevGateway(ctx context.Context, b *pki.Bundle, schedAddr, listen, metricsAddr string, errc chan<- error) (string, error) {
	log := obs.NewLogger(os.Stderr, "gateway", slog.LevelInfo)
	// Renewed through the scheduler and refusing revoked users, as in
	// `persys gateway` (startGatewayIdentity).
	holder, err := pki.LoadHolder(b.Gateway)
	if err != nil {
		return "", err
	}
	serverTLS := holder.ServerTLS(tls.VerifyClientCertIfGiven) // API tokens need no certificate
	// Read at every handshake, so a rotated CA bundle reaches new
	// connections to the scheduler.
	conn, err := grpc.NewClient(schedAddr, grpc.WithTransportCredentials(grpcauth.HolderCredentials(holder, "", tls.RequireAndVerifyClientCert)))
	if err != nil {
		return "", fmt.Errorf("gateway: dialing scheduler %s: %w", schedAddr, err)
	}
	reg := obs.NewRegistry()
	revs := pki.NewRevocationSet()
	h := gateway.New(gateway.Config{Control: persysv1grpc.NewControlServiceClient(conn), Logger: log, Registry: reg, Revocations: revs})
	if err := opsmetrics.RegisterCerts(reg, "gateway", holder); err != nil {
		_ = conn.Close()
		return "", err
	}
	msrv, err := obs.Serve(metricsAddr, reg, nil, log)
	if err != nil {
		_ = conn.Close()
		return "", fmt.Errorf("gateway metrics %s: %w", metricsAddr, err)
	}
	ln, err := net.Listen("tcp", listen)
	if err != nil {
		_ = conn.Close()
		return "", fmt.Errorf("--gateway-listen %s: %w", listen, err)
	}
	stopIdentity := startGatewayIdentity(ctx, gatewayOptions{}, holder, revs, persysv1grpc.NewControlServiceClient(conn), log)
	go func() {
		err := gateway.Serve(ctx, ln, h, serverTLS)
		stopIdentity()
		_ = conn.Close()
		_ = msrv.Close(context.Background())
		errc <- component("gateway", err)
	}()
	log.Info("gateway listening", "addr", ln.Addr().String())
	return ln.Addr().String(), nil
}

func component(name string, err error) error {
	if err == nil || errors.Is(err, context.Canceled) {
		return nil
	}
	return fmt.Errorf("%s: %w", name, err)
}

// devNodeID is the default node id of persys dev: the agent's default for
// its data folder, so that two dev clusters on one host never share a
// node id; a folder made when the default was the host name keeps it, so
// that its workloads stay on their node.
func devNodeID(dir string) (string, error) {
	if host, err := os.Hostname(); err == nil && pki.ValidateName("node id", host) == nil {
		if _, err := os.Stat(filepath.Join(dir, "pki", "agent-"+host+".crt")); err == nil {
			return host, nil
		}
	}
	id, err := agent.DefaultNodeID(filepath.Join(dir, "agent"))
	if err != nil {
		return "", fmt.Errorf("--node-id: %w", err)
	}
	return id, nil
}
