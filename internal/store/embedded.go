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
	"strings"
	"sync"
	"time"

	"go.etcd.io/etcd/client/pkg/v3/transport"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/server/v3/embed"
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

// EmbeddedTLS names the PEM files that lock the embedded etcd: every TCP
// listener (clients and peers) speaks TLS and serves only a client that
// presents a certificate CAFile verifies. Without it any local process
// could read and write every key, past the scheduler's mTLS and roles.
type EmbeddedTLS struct {
	// CAFile is the cluster's CA bundle; clients and peers must present a
	// certificate it verifies.
	CAFile string
	// CertFile and KeyFile are served to clients and peers and presented
	// to other members; the certificate needs both server and client auth
	// usage (a scheduler's has) and SANs for the listen IPs. etcd reads
	// them at each handshake, so a renewed certificate is used at once.
	CertFile string
	KeyFile  string
}

func (t *EmbeddedTLS) validate() error {
	if t == nil {
		return fmt.Errorf("store: embedded etcd: TLS: %w: required (the store answers only to clients with a certificate)", ErrInvalid)
	}
	for _, f := range []struct{ field, v string }{{"TLS.CAFile", t.CAFile}, {"TLS.CertFile", t.CertFile}, {"TLS.KeyFile", t.KeyFile}} {
		if f.v == "" {
			return fmt.Errorf("store: embedded etcd: %s: %w: required", f.field, ErrInvalid)
		}
		if _, err := os.Stat(f.v); err != nil {
			return fmt.Errorf("store: embedded etcd: %s: %w: %v", f.field, ErrInvalid, err)
		}
	}
	return nil
}

func (t *EmbeddedTLS) info() transport.TLSInfo {
	return transport.TLSInfo{CertFile: t.CertFile, KeyFile: t.KeyFile, TrustedCAFile: t.CAFile, ClientCertAuth: true}
}

// EmbeddedOptions configure StartEmbedded.
type EmbeddedOptions struct {
	// Dir is the data directory; required. Created with mode 0700.
	Dir string
	// Name is the member name; default "persys".
	Name string
	// TLS locks the client and peer listeners; required.
	TLS *EmbeddedTLS
	// ClientURL is where clients connect. Empty: TLS on loopback TCP on a
	// port the kernel picks (see Endpoints). Otherwise an https:// URL on
	// an IP address, or ClientURLUnix: only a unix socket Dir/etcd.sock,
	// mode 0600 in the 0700 Dir, so only this user reaches it (without TLS).
	ClientURL string
	// PeerURL is the raft peer URL (https, an IP address); default loopback
	// on a kernel-picked port. A member of several needs a fixed one.
	PeerURL string
	// InitialCluster lists every member of a new cluster as
	// name=peerURL,...; empty: this member alone.
	InitialCluster string
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

// Embedded is an in-process etcd member.
type Embedded struct {
	etcd      *embed.Etcd
	tls       *EmbeddedTLS
	log       *slog.Logger
	closeOnce sync.Once
}

// StartEmbedded starts an etcd member in this process and waits (at most
// 30 s) until it serves, which for a member of several means until a
// quorum has started. Several embedded servers can run in one process as
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
	if err := opts.TLS.validate(); err != nil {
		return nil, err
	}
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}

	clientURL, err := embeddedClientURL(opts.ClientURL, dir)
	if err != nil {
		return nil, err
	}
	peerURL, err := parseTLSURL("PeerURL", defaultString(opts.PeerURL, "https://127.0.0.1:0"))
	if err != nil {
		return nil, err
	}
	if opts.InitialCluster != "" && peerURL.Port() == "0" {
		return nil, fmt.Errorf("store: embedded etcd: PeerURL %q: %w: a member of InitialCluster needs a fixed port", peerURL, ErrInvalid)
	}

	cfg := embed.NewConfig()
	cfg.Name = defaultString(opts.Name, embeddedName)
	cfg.Dir = filepath.Join(dir, EmbeddedMemberDir)
	cfg.ListenClientUrls = []url.URL{*clientURL}
	cfg.AdvertiseClientUrls = []url.URL{*clientURL}
	cfg.ListenPeerUrls = []url.URL{*peerURL}
	cfg.AdvertisePeerUrls = []url.URL{*peerURL}
	cfg.InitialCluster = defaultString(opts.InitialCluster, cfg.Name+"="+peerURL.String())
	cfg.ClientTLSInfo = opts.TLS.info()
	cfg.PeerTLSInfo = opts.TLS.info()
	cfg.InitialClusterToken = embeddedClusterToken
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
	if clientURL.Scheme == "unix" {
		// Only this user may open the plaintext socket.
		if err := os.Chmod(clientURL.Path, 0o600); err != nil {
			e.Close()
			return nil, fmt.Errorf("store: embedded etcd: socket mode: %w", err)
		}
	}
	em := &Embedded{etcd: e, tls: opts.TLS, log: log}
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
		eps = append(eps, "https://"+addr.String())
	}
	return eps
}

// Client returns a new client connected to this server, presenting the
// server's own certificate over TCP; the caller closes it.
func (e *Embedded) Client() (*clientv3.Client, error) {
	eps := e.Endpoints()
	var tlsCfg *tls.Config
	if !strings.HasPrefix(eps[0], "unix://") {
		var err error
		if tlsCfg, err = e.ClientTLS(); err != nil {
			return nil, err
		}
	}
	return connect(eps, tlsCfg, e.log)
}

// ClientTLS is a client configuration that presents the server's own
// certificate and trusts its CA bundle, for clients in other packages.
func (e *Embedded) ClientTLS() (*tls.Config, error) {
	info := e.tls.info()
	cfg, err := info.ClientConfig()
	if err != nil {
		return nil, fmt.Errorf("store: embedded etcd client TLS: %w", err)
	}
	return cfg, nil
}

// LocalClient returns a client that calls this server in process: no
// socket, no gRPC framing or encoding, no server interceptors. A scheduler
// beside its embedded etcd spent a good part of its CPU on that loopback
// transport (each write both encoded and decoded twice, each call a few
// syscalls). The caller closes it; it works until the server stops. Other
// processes still reach the server at Endpoints.
func (e *Embedded) LocalClient() *clientv3.Client {
	cli, kv, lc := newLocalClient(e.etcd.Server)
	// The store's group commits and keep-alive streams need a KVClient
	// and a LeaseClient, which a connectionless client cannot make:
	// register the in-process ones.
	localClients.Store(cli, localRemotes{kv: kv, lease: lc})
	go func() {
		<-cli.Ctx().Done() // closed
		localClients.Delete(cli)
	}()
	return cli
}

// LocalStore returns a Store over a LocalClient of this server; its Close
// closes that client, not the server.
func (e *Embedded) LocalStore(opts Options) *Store {
	s := New(e.LocalClient(), opts)
	s.ownsClient = true
	return s
}

// Kill stops the member at once, as a crash would (no leadership
// transfer, in-flight requests fail), then closes it: for tests of member
// loss.
func (e *Embedded) Kill() {
	e.etcd.Server.HardStop()
	e.Close()
}

// IsLeader reports whether this member leads its cluster now.
func (e *Embedded) IsLeader() bool {
	return e.etcd.Server.Leader() == e.etcd.Server.MemberID()
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

// Client is the etcd client this package hands out, named here so that
// the packages that pass one along need not import the etcd client: only
// the store (and the federation's) talks to etcd.
type Client = clientv3.Client

// Connect returns a client for an external etcd cluster. tlsCfg is nil
// only for plaintext endpoints, which callers allow explicitly. The client
// connects lazily; the first request reports an unreachable cluster.
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
	cli, err := clientv3.New(clientConfig(endpoints, tlsCfg, log))
	if err != nil {
		return nil, fmt.Errorf("store: connect to %v: %w", endpoints, err)
	}
	return cli, nil
}

// clientConfig is how every client of the store dials etcd.
func clientConfig(endpoints []string, tlsCfg *tls.Config, log *slog.Logger) clientv3.Config {
	return clientv3.Config{
		Endpoints:   endpoints,
		TLS:         tlsCfg,
		DialTimeout: connectDialTimeout,
		Logger:      newZapLogger(log, zapcore.ErrorLevel),
		// Keep idle connections checked so a dead member is noticed.
		DialKeepAliveTime:    30 * time.Second,
		DialKeepAliveTimeout: 10 * time.Second,
	}
}

func embeddedClientURL(raw, dir string) (*url.URL, error) {
	switch raw {
	case "":
		return parseTLSURL("ClientURL", "https://127.0.0.1:0")
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
		return parseTLSURL("ClientURL", raw)
	}
}

// parseTLSURL accepts https URLs on a specific IP address: what a member
// listens on is also what it advertises.
func parseTLSURL(field, raw string) (*url.URL, error) {
	u, err := url.Parse(raw)
	if err != nil {
		return nil, fmt.Errorf("store: embedded etcd: %s %q: %w: %v", field, raw, ErrInvalid, err)
	}
	if u.Scheme != "https" {
		return nil, fmt.Errorf("store: embedded etcd: %s %q: %w: scheme must be https (plaintext TCP is refused)", field, raw, ErrInvalid)
	}
	host, port, err := net.SplitHostPort(u.Host)
	if err != nil || port == "" {
		return nil, fmt.Errorf("store: embedded etcd: %s %q: %w: want https://IP:PORT", field, raw, ErrInvalid)
	}
	if ip := net.ParseIP(host); ip == nil || ip.IsUnspecified() {
		return nil, fmt.Errorf("store: embedded etcd: %s %q: %w: want a specific IP address", field, raw, ErrInvalid)
	}
	return &url.URL{Scheme: "https", Host: u.Host}, nil
}

func defaultString(v, def string) string {
	if v == "" {
		return def
	}
	return v
}
