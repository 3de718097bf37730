package store

import (
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"sync"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/server/v3/embed"
	"go.etcd.io/etcd/server/v3/etcdserver/api/v3client"
	"go.etcd.io/etcd/server/v3/etcdserver/api/v3rpc"
	"go.etcd.io/etcd/server/v3/proxy/grpcproxy/adapter"
	"go.uber.org/zap/zapcore"
)

// Embedded-etcd defaults.
const (
	// DefaultCompactionRetention is how much history the embedded etcd keeps
	// (periodic auto-compaction). Watches that fall further behind than this
	// receive a resync signal.
	DefaultCompactionRetention = "5m"
	// DefaultQuotaBackendBytes is the embedded etcd's backend quota (2 GiB).
	DefaultQuotaBackendBytes int64 = 2 << 30
	// ClientURLUnix asks for a unix socket named etcd.sock in the data dir.
	ClientURLUnix = "unix"

	embeddedReadyTimeout = 30 * time.Second
	connectDialTimeout   = 5 * time.Second
	maxUnixSocketPath    = 100
)

// EmbeddedOptions configure StartEmbedded.
type EmbeddedOptions struct {
	// Dir is the data directory; required. Created with mode 0700.
	Dir string
	// Name is the member name; default "persys".
	Name string
	// ClientURL is where clients connect. Empty: loopback TCP on a port the
	// kernel picks (see Endpoints). ClientURLUnix: a unix socket
	// Dir/etcd.sock. Otherwise an http:// URL on a loopback address or a
	// unix:///absolute/path URL. The listener is plaintext, so non-loopback
	// addresses are refused.
	ClientURL string
	// PeerURL is the raft peer URL; default loopback TCP on a kernel-picked
	// port. Only a member that other members join needs a fixed one.
	PeerURL string
	// CompactionRetention is the periodic auto-compaction retention;
	// default DefaultCompactionRetention.
	CompactionRetention string
	// QuotaBackendBytes default DefaultQuotaBackendBytes.
	QuotaBackendBytes int64
	// UnsafeNoFsync disables fsync; for tests only (data loss on crash).
	UnsafeNoFsync bool
	// Logger receives etcd's own errors and the lifecycle lines; nil is silent.
	Logger *slog.Logger
}

// Embedded is an in-process single-member etcd server.
type Embedded struct {
	etcd      *embed.Etcd
	log       *slog.Logger
	closeOnce sync.Once
}

// StartEmbedded starts an etcd server in this process and waits (at most
// 30 s) until it serves. Several embedded servers can run in one process as
// long as their Dir differ. Callers must Close it.
func StartEmbedded(opts EmbeddedOptions) (*Embedded, error) {
	if opts.Dir == "" {
		return nil, fmt.Errorf("store: embedded etcd: Dir: %w: required", ErrInvalid)
	}
	dir, err := filepath.Abs(opts.Dir)
	if err != nil {
		return nil, fmt.Errorf("store: embedded etcd: Dir %q: %w", opts.Dir, err)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("store: embedded etcd: create Dir: %w", err)
	}
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}

	clientURL, err := embeddedClientURL(opts.ClientURL, dir)
	if err != nil {
		return nil, err
	}
	peerURL, err := parseLoopbackURL("PeerURL", defaultString(opts.PeerURL, "http://127.0.0.1:0"), false)
	if err != nil {
		return nil, err
	}

	cfg := embed.NewConfig()
	cfg.Name = defaultString(opts.Name, "persys")
	cfg.Dir = filepath.Join(dir, "member-data")
	cfg.ListenClientUrls = []url.URL{*clientURL}
	cfg.AdvertiseClientUrls = []url.URL{*clientURL}
	cfg.ListenPeerUrls = []url.URL{*peerURL}
	cfg.AdvertisePeerUrls = []url.URL{*peerURL}
	cfg.InitialCluster = cfg.Name + "=" + peerURL.String()
	cfg.InitialClusterToken = "persys-embedded"
	cfg.AutoCompactionMode = embed.CompactorModePeriodic
	cfg.AutoCompactionRetention = defaultString(opts.CompactionRetention, DefaultCompactionRetention)
	cfg.QuotaBackendBytes = opts.QuotaBackendBytes
	if cfg.QuotaBackendBytes <= 0 {
		cfg.QuotaBackendBytes = DefaultQuotaBackendBytes
	}
	cfg.UnsafeNoFsync = opts.UnsafeNoFsync
	cfg.EnableGRPCGateway = false
	cfg.LogLevel = "error"
	cfg.ZapLoggerBuilder = embed.NewZapLoggerBuilder(newZapLogger(log.With("subsystem", "etcd"), zapcore.ErrorLevel))

	e, err := embed.StartEtcd(cfg)
	if err != nil {
		return nil, fmt.Errorf("store: start embedded etcd in %s: %w", dir, err)
	}
	timer := time.NewTimer(embeddedReadyTimeout)
	defer timer.Stop()
	select {
	case <-e.Server.ReadyNotify():
	case err := <-e.Err():
		e.Close()
		return nil, fmt.Errorf("store: embedded etcd failed before ready: %w", err)
	case <-timer.C:
		e.Server.Stop()
		e.Close()
		return nil, fmt.Errorf("store: embedded etcd not ready after %s", embeddedReadyTimeout)
	}
	em := &Embedded{etcd: e, log: log}
	log.Debug("embedded etcd ready", "dir", dir, "endpoints", em.Endpoints())
	return em, nil
}

// Endpoints returns the client URLs the server actually listens on (with the
// kernel-picked port resolved), usable with Connect.
func (e *Embedded) Endpoints() []string {
	eps := make([]string, 0, len(e.etcd.Clients))
	for _, l := range e.etcd.Clients {
		addr := l.Addr()
		if addr.Network() == "unix" {
			eps = append(eps, "unix://"+addr.String())
			continue
		}
		eps = append(eps, "http://"+addr.String())
	}
	return eps
}

// Client returns a new client connected to this server; the caller closes it.
func (e *Embedded) Client() (*clientv3.Client, error) {
	return connect(e.Endpoints(), nil, e.log)
}

// LocalClient returns a client that calls this server in process: no
// socket, no gRPC framing or encoding, no server interceptors. A scheduler
// beside its embedded etcd spent a good part of its CPU on that loopback
// transport (each write both encoded and decoded twice, each call a few
// syscalls). The caller closes it; it works until the server stops. Other
// processes still reach the server at Endpoints.
func (e *Embedded) LocalClient() *clientv3.Client {
	cli := v3client.New(e.etcd.Server)
	// The store's keep-alive stream needs a LeaseClient, which a
	// connectionless client cannot make: register the in-process one.
	localLeaseClients.Store(cli, adapter.LeaseServerToLeaseClient(v3rpc.NewQuotaLeaseServer(e.etcd.Server)))
	go func() {
		<-cli.Ctx().Done() // closed
		localLeaseClients.Delete(cli)
	}()
	return cli
}

// localLeaseClients maps each LocalClient to its in-process LeaseClient.
var localLeaseClients sync.Map // *clientv3.Client → pb.LeaseClient

// leaseClientOf is the LeaseClient for cli's keep-alive streams.
func leaseClientOf(cli *clientv3.Client) pb.LeaseClient {
	if lc, ok := localLeaseClients.Load(cli); ok {
		return lc.(pb.LeaseClient)
	}
	return pb.NewLeaseClient(cli.ActiveConnection())
}

// Err reports a fatal error of the running server (the channel is closed
// once the server has stopped).
func (e *Embedded) Err() <-chan error { return e.etcd.Err() }

// Close stops the server and waits for it. Safe to call more than once.
func (e *Embedded) Close() {
	e.closeOnce.Do(func() {
		e.etcd.Close()
		e.log.Debug("embedded etcd stopped")
	})
}

// Connect returns a client for an external etcd cluster. tlsCfg may be nil
// for plaintext endpoints. The client connects lazily; the first request
// reports an unreachable cluster.
func Connect(endpoints []string, tlsCfg *tls.Config) (*clientv3.Client, error) {
	return connect(endpoints, tlsCfg, nil)
}

func connect(endpoints []string, tlsCfg *tls.Config, log *slog.Logger) (*clientv3.Client, error) {
	if len(endpoints) == 0 {
		return nil, fmt.Errorf("store: connect: endpoints: %w: at least one required", ErrInvalid)
	}
	for i, ep := range endpoints {
		if ep == "" {
			return nil, fmt.Errorf("store: connect: endpoints[%d]: %w: empty", i, ErrInvalid)
		}
	}
	cli, err := clientv3.New(clientv3.Config{
		Endpoints:   endpoints,
		TLS:         tlsCfg,
		DialTimeout: connectDialTimeout,
		Logger:      newZapLogger(log, zapcore.ErrorLevel),
		// Keep idle connections checked so a dead member is noticed.
		DialKeepAliveTime:    30 * time.Second,
		DialKeepAliveTimeout: 10 * time.Second,
	})
	if err != nil {
		return nil, fmt.Errorf("store: connect to %v: %w", endpoints, err)
	}
	return cli, nil
}

func embeddedClientURL(raw, dir string) (*url.URL, error) {
	switch raw {
	case "":
		return parseLoopbackURL("ClientURL", "http://127.0.0.1:0", true)
	case ClientURLUnix:
		sock := filepath.Join(dir, "etcd.sock")
		if len(sock) > maxUnixSocketPath {
			return nil, fmt.Errorf("store: embedded etcd: ClientURL: %w: socket path %q longer than %d bytes; use a shorter Dir or TCP", ErrInvalid, sock, maxUnixSocketPath)
		}
		// A stale socket from an unclean stop would make listen fail.
		if err := os.Remove(sock); err != nil && !errors.Is(err, os.ErrNotExist) {
			return nil, fmt.Errorf("store: embedded etcd: remove stale socket: %w", err)
		}
		return &url.URL{Scheme: "unix", Path: sock}, nil
	default:
		return parseLoopbackURL("ClientURL", raw, true)
	}
}

// parseLoopbackURL accepts http URLs on loopback addresses and, when
// allowUnix, unix:///absolute/path URLs.
func parseLoopbackURL(field, raw string, allowUnix bool) (*url.URL, error) {
	u, err := url.Parse(raw)
	if err != nil {
		return nil, fmt.Errorf("store: embedded etcd: %s %q: %w: %v", field, raw, ErrInvalid, err)
	}
	switch u.Scheme {
	case "unix":
		if !allowUnix || u.Host != "" || !filepath.IsAbs(u.Path) {
			return nil, fmt.Errorf("store: embedded etcd: %s %q: %w: want unix:///absolute/path", field, raw, ErrInvalid)
		}
		if len(u.Path) > maxUnixSocketPath {
			return nil, fmt.Errorf("store: embedded etcd: %s %q: %w: socket path longer than %d bytes", field, raw, ErrInvalid, maxUnixSocketPath)
		}
		return u, nil
	case "http":
		host, port, err := net.SplitHostPort(u.Host)
		if err != nil || port == "" {
			return nil, fmt.Errorf("store: embedded etcd: %s %q: %w: want http://127.0.0.1:PORT", field, raw, ErrInvalid)
		}
		ip := net.ParseIP(host)
		if ip == nil || !ip.IsLoopback() {
			return nil, fmt.Errorf("store: embedded etcd: %s %q: %w: plaintext listener must be on a loopback IP", field, raw, ErrInvalid)
		}
		return &url.URL{Scheme: "http", Host: u.Host}, nil
	default:
		return nil, fmt.Errorf("store: embedded etcd: %s %q: %w: scheme must be http or unix", field, raw, ErrInvalid)
	}
}

func defaultString(v, def string) string {
	if v == "" {
		return def
	}
	return v
}
