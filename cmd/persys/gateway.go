package main

import (
	"context"
	"crypto/tls"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/persys-dev/compute/api/persys/v1/persysv1grpc"
	"github.com/persys-dev/compute/internal/gateway"
	"github.com/persys-dev/compute/internal/grpcauth"
	"github.com/persys-dev/compute/internal/leaderconn"
	"github.com/persys-dev/compute/internal/obs"
	"github.com/persys-dev/compute/internal/opsmetrics"
	"github.com/persys-dev/compute/internal/pki"
)

type gatewayOptions struct {
	listen        string
	scheduler     string
	serverName    string
	ca, cert, key string
	metricsListen string
	maxBody       int64
	logLevel      string
	// Identity: renewal and revocations (identity.go).
	renewFraction     float64
	revocationRefresh time.Duration
	identityReload    time.Duration
}

// newGatewayCommand returns `persys gateway`: the REST+JSON API over HTTPS
// with mutual TLS, forwarding to the scheduler's ControlService.
func newGatewayCommand() *cobra.Command {
	o := gatewayOptions{}
	cmd := &cobra.Command{
		Use:   "gateway",
		Short: "Serve the REST+JSON API over HTTPS with mutual TLS, forwarding to the scheduler",
		Long: "The gateway answers persysctl and other HTTPS clients that present a certificate of the " +
			"cluster CA (others are refused at the handshake), authorizes each route by the certificate's " +
			"role (viewer reads; operator and admin also change), and forwards to the scheduler's " +
			"ControlService over gRPC with its own gateway certificate. It serves its OpenAPI document " +
			"at /openapi.json. SIGINT or SIGTERM shut it down gracefully.\n\n" +
			"--scheduler takes one or more scheduler replicas, comma-separated. Calls go to one of them; " +
			"when a replica that does not lead refuses a call with the leader's address in the " +
			"x-persys-leader trailer, the call is sent once more to that address and later calls go " +
			"there too. A replica that cannot be reached at all is skipped for the next one listed.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runGateway(cmd.Context(), o)
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.listen, "listen", "127.0.0.1:8443", "host:port for HTTPS (mTLS)")
	f.StringVar(&o.scheduler, "scheduler", "127.0.0.1:9443", "scheduler ControlService addresses host:port[,host:port...], tried in order")
	f.StringVar(&o.serverName, "scheduler-server-name", "", "name every scheduler's certificate must carry (default: the host of each address)")
	f.StringVar(&o.ca, "ca", "", "CA certificate bundle (PEM) (required)")
	f.StringVar(&o.cert, "cert", "", "gateway certificate (PEM), role gateway (required)")
	f.StringVar(&o.key, "key", "", "gateway private key (PEM) (required)")
	f.StringVar(&o.metricsListen, "metrics-listen", "127.0.0.1:9102", "plain HTTP listener for /metrics, /healthz and /readyz (empty disables it)")
	f.Int64Var(&o.maxBody, "max-body-bytes", 0, "largest request body accepted (default: the manifest limit, 1 MiB)")
	f.StringVar(&o.logLevel, "log-level", "info", "log level: debug, info, warn or error")
	f.Float64Var(&o.renewFraction, "cert-renew-fraction", pki.DefaultRenewFraction, "renew the gateway certificate through the scheduler after this share of its lifetime, in (0, 1)")
	f.DurationVar(&o.revocationRefresh, "revocation-refresh", 30*time.Second, "how often to fetch the revoked certificates from the scheduler (refused at the handshake)")
	f.DurationVar(&o.identityReload, "identity-reload-interval", pki.DefaultWatchInterval, "how often to look for changed --ca, --cert and --key files (a CA bundle replaced after `persys ca rotate`) and load them without a restart")
	return cmd
}

// validate checks the flags, naming the flag in each error.
func (o *gatewayOptions) validate() error {
	for _, f := range []struct{ name, val string }{{"--ca", o.ca}, {"--cert", o.cert}, {"--key", o.key}} {
		if f.val == "" {
			return fmt.Errorf("%s is required", f.name)
		}
	}
	if _, _, err := net.SplitHostPort(o.listen); err != nil {
		return fmt.Errorf("--listen %q: %w", o.listen, err)
	}
	if _, err := schedulerAddrs(o.scheduler); err != nil {
		return err
	}
	if o.metricsListen != "" {
		if _, _, err := net.SplitHostPort(o.metricsListen); err != nil {
			return fmt.Errorf("--metrics-listen %q: %w", o.metricsListen, err)
		}
	}
	if o.renewFraction <= 0 || o.renewFraction >= 1 {
		return fmt.Errorf("--cert-renew-fraction %v must be in (0, 1)", o.renewFraction)
	}
	if o.revocationRefresh < time.Second {
		return fmt.Errorf("--revocation-refresh %s must be at least 1s", o.revocationRefresh)
	}
	if o.identityReload < 0 {
		return fmt.Errorf("--identity-reload-interval %s must not be negative", o.identityReload)
	}
	if o.maxBody < 0 {
		return fmt.Errorf("--max-body-bytes %d: must not be negative", o.maxBody)
	}
	return nil
}

// schedulerAddrs splits --scheduler into host:port addresses.
func schedulerAddrs(s string) ([]string, error) {
	var out []string
	for _, a := range strings.Split(s, ",") {
		a = strings.TrimSpace(a)
		if a == "" {
			return nil, fmt.Errorf("--scheduler %q: empty address in the list", s)
		}
		if _, _, err := net.SplitHostPort(a); err != nil {
			return nil, fmt.Errorf("--scheduler %q: %w", a, err)
		}
		for _, seen := range out {
			if seen == a {
				return nil, fmt.Errorf("--scheduler %q: %s is listed twice", s, a)
			}
		}
		out = append(out, a)
	}
	return out, nil
}

func gatewayLogLevel(s string) (slog.Level, error) {
	var l slog.Level
	if err := l.UnmarshalText([]byte(s)); err != nil {
		return 0, fmt.Errorf("--log-level %q: want debug, info, warn or error", s)
	}
	return l, nil
}

func runGateway(parent context.Context, o gatewayOptions) error {
	if err := o.validate(); err != nil {
		return err
	}
	level, err := gatewayLogLevel(o.logLevel)
	if err != nil {
		return err
	}
	log := obs.NewLogger(os.Stderr, "gateway", level)
	slog.SetDefault(log)
	ctx, stop := signal.NotifyContext(parent, os.Interrupt, syscall.SIGTERM)
	defer stop()

	files := pki.Files{CA: o.ca, Cert: o.cert, Key: o.key}
	// The holder hands renewed certificates to new handshakes and refuses
	// revoked peers (startGatewayIdentity keeps both current).
	holder, err := pki.LoadHolder(files)
	if err != nil {
		return fmt.Errorf("gateway certificate: %w", err)
	}
	// A client may come without a certificate and with an API token
	// instead; the gateway refuses it on every route but /healthz and
	// /openapi.json unless the token is valid. A given certificate must
	// still verify (an expired one fails the handshake).
	serverTLS := holder.ServerTLS(tls.VerifyClientCertIfGiven)
	addrs, err := schedulerAddrs(o.scheduler)
	if err != nil {
		return err
	}
	// The credentials read the holder at every handshake, so a renewed
	// certificate and a rotated CA bundle reach new scheduler connections.
	pool, err := leaderconn.Dial(leaderconn.Config{Addrs: addrs, Creds: grpcauth.HolderCredentials(holder, o.serverName, tls.RequireAndVerifyClientCert), Log: log})
	if err != nil {
		return err
	}
	defer pool.Close()
	pool.Connect()
	revs := pki.NewRevocationSet()
	stopIdentity := startGatewayIdentity(ctx, o, holder, revs, persysv1grpc.NewControlServiceClient(pool), log)
	defer stopIdentity()

	reg := obs.NewRegistry()
	h := gateway.New(gateway.Config{
		Control:      persysv1grpc.NewControlServiceClient(pool),
		Logger:       log,
		Registry:     reg,
		MaxBodyBytes: o.maxBody,
		Revocations:  revs,
	})
	if err := opsmetrics.RegisterCerts(reg, "gateway", holder); err != nil {
		return err
	}
	metrics, err := obs.Serve(o.metricsListen, reg, pool.Ready, log)
	if err != nil {
		return fmt.Errorf("--metrics-listen %s: %w", o.metricsListen, err)
	}
	defer func() {
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = metrics.Close(sctx)
	}()

	ln, err := net.Listen("tcp", o.listen)
	if err != nil {
		return fmt.Errorf("--listen %s: %w", o.listen, err)
	}
	log.Info("gateway listening", "addr", ln.Addr().String(), "scheduler", o.scheduler, "metrics", metrics.Addr)
	if err := gateway.Serve(ctx, ln, h, serverTLS); err != nil {
		return err
	}
	log.Info("gateway stopped")
	return nil
}
