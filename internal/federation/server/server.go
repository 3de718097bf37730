// Package server wires one federation process: its CA and identities in
// the data folder (made on first start, kept after), its etcd (embedded
// by default, or an external cluster), the member health monitor, the
// federated workloads' loop, the HTTPS API with mutual TLS, the metrics
// and health listener, and a persysctl config for its admin. Over an
// external etcd several processes are replicas: they elect one leader
// (the scheduler's election), which alone runs the decision loops; the
// others serve reads. Run returns when its context ends, after everything
// it started has stopped.
package server

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/persys-dev/compute/internal/client"
	"github.com/persys-dev/compute/internal/federation/api"
	"github.com/persys-dev/compute/internal/federation/fedapi"
	"github.com/persys-dev/compute/internal/federation/fednodes"
	"github.com/persys-dev/compute/internal/federation/fedstore"
	"github.com/persys-dev/compute/internal/federation/fedsvc"
	"github.com/persys-dev/compute/internal/federation/fedwork"
	"github.com/persys-dev/compute/internal/federation/monitor"
	"github.com/persys-dev/compute/internal/federation/relay"
	"github.com/persys-dev/compute/internal/gateway"
	"github.com/persys-dev/compute/internal/obs"
	"github.com/persys-dev/compute/internal/pki"
	"github.com/persys-dev/compute/internal/scheduler/election"
)

// Options configure Run.
type Options struct {
	// DataDir holds pki/ (the federation CA and identities), etcd/ (the
	// embedded store), store-pki/ and persysctl.yaml; required.
	DataDir string
	// Listen is the API's host:port; MetricsListen the plain /metrics,
	// /healthz and /readyz listener ("" disables it).
	Listen, MetricsListen string
	// SANs are extra host names and IP addresses the API's certificate
	// is valid for (it always is for localhost and loopback).
	SANs []string
	// EtcdEndpoints, when set, replace the embedded etcd; EtcdCA,
	// EtcdCert and EtcdKey are the client identity for them.
	EtcdEndpoints                 []string
	EtcdCA, EtcdCert, EtcdKey     string
	Prefix                        string
	Interval, Grace, ProbeTimeout time.Duration
	// Advertise is the API's URL as clients reach this replica (default
	// https:// and the bound --listen address): what followers name as
	// the leader.
	Advertise string
	// ElectionTTL bounds how long a dead leader keeps its seat (default
	// 5s). Replicas elect only over EtcdEndpoints: an embedded etcd has
	// one federation process, which leads alone.
	ElectionTTL time.Duration
	Logger      *slog.Logger
	// Out receives the start banner (addresses and the persysctl config).
	Out io.Writer
	// Started, when set, receives the API's bound address once it serves.
	Started chan<- string
}

func (o *Options) validate() error {
	if o.DataDir == "" {
		return errors.New("--data-dir: required")
	}
	if _, _, err := net.SplitHostPort(o.Listen); err != nil {
		return fmt.Errorf("--listen %q: %w", o.Listen, err)
	}
	if o.MetricsListen != "" {
		if _, _, err := net.SplitHostPort(o.MetricsListen); err != nil {
			return fmt.Errorf("--metrics-listen %q: %w", o.MetricsListen, err)
		}
	}
	if len(o.EtcdEndpoints) > 0 && (o.EtcdCA == "" || o.EtcdCert == "" || o.EtcdKey == "") {
		return errors.New("--etcd-endpoints needs --etcd-ca, --etcd-cert and --etcd-key (the federation's store holds member identities)")
	}
	if o.Interval < 0 || o.Grace < 0 || o.ProbeTimeout < 0 {
		return errors.New("--probe-interval, --grace and --probe-timeout must not be negative")
	}
	if o.ElectionTTL != 0 && o.ElectionTTL < time.Second {
		return fmt.Errorf("--election-ttl %s: must be at least 1s", o.ElectionTTL)
	}
	if o.Advertise != "" && !strings.HasPrefix(o.Advertise, "https://") {
		return fmt.Errorf("--advertise %q: want https://host:port", o.Advertise)
	}
	if o.Grace > 0 && o.Interval > 0 && o.Grace < o.Interval {
		return fmt.Errorf("--grace %s: must be at least --probe-interval %s", o.Grace, o.Interval)
	}
	return nil
}

// Run serves the federation until ctx ends.
func Run(ctx context.Context, o Options) error {
	if err := o.validate(); err != nil {
		return err
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Out == nil {
		o.Out = io.Discard
	}
	dir, err := filepath.Abs(o.DataDir)
	if err != nil {
		return fmt.Errorf("--data-dir: %w", err)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("--data-dir: %w", err)
	}
	dns, ips := splitSANs(o.SANs)
	bundle, err := pki.Bootstrap(filepath.Join(dir, "pki"), nil, dns, ips)
	if err != nil {
		if len(o.SANs) > 0 {
			return fmt.Errorf("federation certificates (--tls-san %s): %w", strings.Join(o.SANs, ","), err)
		}
		return fmt.Errorf("federation certificates: %w", err)
	}
	st, closeStore, err := fedstore.Open(fedstore.OpenOptions{Dir: dir, Endpoints: o.EtcdEndpoints,
		CA: o.EtcdCA, Cert: o.EtcdCert, Key: o.EtcdKey, Prefix: o.Prefix, Logger: o.Logger})
	if err != nil {
		return err
	}
	defer closeStore()

	reg := obs.NewRegistry()
	mon := monitor.New(monitor.Config{Store: st, Interval: o.Interval, Grace: o.Grace, Timeout: o.ProbeTimeout, Logger: o.Logger, Registry: reg})
	work := fedwork.New(fedwork.Config{Store: st, Logger: o.Logger})
	defer work.Close()
	svcs := fedsvc.New(fedsvc.Config{Store: st, Lookup: fedwork.Lookup(st), Logger: o.Logger, Registry: reg})
	defer svcs.Close()
	rel := relay.New(relay.Config{Store: st, Lookup: fedwork.Lookup(st), Logger: o.Logger})
	defer rel.Close()
	nodes := fednodes.New(st, fedwork.Lookup(st), 0)
	defer nodes.Close()
	msrv, err := obs.Serve(o.MetricsListen, reg, func() error { return st.Ready(ctx) }, o.Logger)
	if err != nil {
		return fmt.Errorf("--metrics-listen %s: %w", o.MetricsListen, err)
	}
	defer func() { _ = msrv.Close(context.Background()) }()

	holder, err := pki.LoadHolder(bundle.Gateway)
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", o.Listen)
	if err != nil {
		return fmt.Errorf("--listen %s: %w", o.Listen, err)
	}
	advertise := o.Advertise
	if advertise == "" {
		advertise = "https://" + localAddr(ln.Addr())
	}
	alone := len(o.EtcdEndpoints) == 0
	ecfg := election.Config{Store: st.ElectionStore(), Address: advertise, TTL: o.ElectionTTL, Alone: alone, Logger: o.Logger}
	if !alone {
		ecfg.Elected = func() {
			ectx, ecancel := context.WithTimeout(ctx, 5*time.Second)
			defer ecancel()
			_ = st.AddEvent(ectx, fedapi.Event{Type: fedapi.EventLeaderElected, Message: "federation replica " + advertise + " leads"})
		}
	}
	elector, err := election.New(ecfg)
	if err != nil {
		_ = ln.Close()
		return err
	}
	h := api.New(api.Config{Store: st, Workloads: work, Services: svcs, Nodes: nodes, Grace: mon.Grace(), Logger: o.Logger, Registry: reg,
		Leader: elector, Self: advertise})
	cfgPath := filepath.Join(dir, "persysctl.yaml")
	if err := client.WriteConfig(cfgPath, &client.Config{
		Endpoint: "https://" + localAddr(ln.Addr()), CA: bundle.CA, Cert: bundle.Admin.Cert, Key: bundle.Admin.Key,
	}); err != nil {
		_ = ln.Close()
		return err
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	// The decision loops (probes, placement and failover, service
	// divisions, the relay) run on the leader alone; a follower serves
	// reads and names the leader to writers.
	term := func(lctx context.Context) error {
		// One probe round first: the health a previous leader stored may
		// be old, and a member it saw unreachable may be back; failover
		// decides on fresh health only.
		if err := mon.Round(lctx); err != nil && lctx.Err() == nil {
			o.Logger.Warn("first member probe round failed", "err", err)
		}
		done := make(chan struct{}, 4)
		go func() { defer func() { done <- struct{}{} }(); _ = mon.Run(lctx) }()
		go func() { defer func() { done <- struct{}{} }(); work.Run(lctx, interval(o.Interval)) }()
		go func() { defer func() { done <- struct{}{} }(); svcs.Run(lctx, interval(o.Interval)) }()
		go func() { defer func() { done <- struct{}{} }(); rel.Run(lctx, interval(o.Interval)) }()
		<-lctx.Done()
		<-done
		<-done
		<-done
		<-done
		return nil
	}
	elected := make(chan struct{})
	go func() { defer close(elected); _ = elector.Run(ctx, term) }()
	defer func() { cancel(); <-elected }()

	o.Logger.Info("federation listening", "addr", ln.Addr().String(), "data", dir)
	fmt.Fprintf(o.Out, "persys federation is running\n  api   https://%s\n  data  %s\n\nPoint persysctl at it:\n  export PERSYSCTL_CONFIG=%s\n\n", ln.Addr(), dir, cfgPath)
	if o.Started != nil {
		o.Started <- ln.Addr().String()
	}
	// The gateway's serve loop: graceful shutdown, handshake failures
	// logged as warnings. Every request must carry a federation
	// certificate.
	return gateway.Serve(ctx, ln, h, holder.ServerTLS(tls.RequireAndVerifyClientCert))
}

// localAddr is where a client on this host reaches addr: loopback for a
// listener on every address (the certificate covers loopback).
func localAddr(addr net.Addr) string {
	host, port, err := net.SplitHostPort(addr.String())
	if err != nil {
		return addr.String()
	}
	if ip := net.ParseIP(host); ip != nil && ip.IsUnspecified() {
		host = "127.0.0.1"
	}
	return net.JoinHostPort(host, port)
}

// splitSANs sorts names from addresses.
func splitSANs(sans []string) (dns []string, ips []net.IP) {
	for _, s := range sans {
		if ip := net.ParseIP(s); ip != nil {
			ips = append(ips, ip)
		} else {
			dns = append(dns, s)
		}
	}
	return dns, ips
}

// interval is the period of the workload loop: the probe interval.
func interval(d time.Duration) time.Duration {
	if d <= 0 {
		return monitor.DefaultInterval
	}
	return d
}

// The scheduler's elector is what the API asks who leads.
var _ api.Leadership = (*election.Elector)(nil)
