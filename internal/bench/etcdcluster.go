package bench

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/persys-dev/compute/internal/pki"
	"github.com/persys-dev/compute/internal/store"
)

// An external etcd cluster for the bench: members each in a process of
// their own (this binary re-executed as EtcdMemberCommand), on loopback
// ports, peers and clients over TLS with certificate auth, real fsync.
// The scheduler reaches them as persys scheduler --etcd-endpoints does:
// store.Connect with a client certificate of the cluster's CA. A member
// ends when its standard input closes, so none outlives the bench.

// EtcdMemberCommand is the hidden command, the first argument, that runs
// a binary as one member of the bench's etcd cluster; the second argument
// is its configuration as JSON. The persys binary registers it under its
// bench command; a test binary checks for it in TestMain.
const EtcdMemberCommand = "bench-etcd-member"

// etcdMemberConfig is one member's configuration, as the bench passes it.
type etcdMemberConfig struct {
	Dir            string `json:"dir"`
	Name           string `json:"name"`
	ClientURL      string `json:"client_url"`
	PeerURL        string `json:"peer_url"`
	InitialCluster string `json:"initial_cluster"`
	CA             string `json:"ca"`
	Cert           string `json:"cert"`
	Key            string `json:"key"`
	NoFsync        bool   `json:"no_fsync,omitempty"`
	QuotaBytes     int64  `json:"quota_bytes,omitempty"`
	// CPUProfile is the only file the member writes a CPU profile to.
	CPUProfile string `json:"cpu_profile,omitempty"`
}

func (c etcdMemberConfig) options() store.EmbeddedOptions {
	return store.EmbeddedOptions{
		Dir: c.Dir, Name: c.Name, ClientURL: c.ClientURL, PeerURL: c.PeerURL, InitialCluster: c.InitialCluster,
		TLS:           &store.EmbeddedTLS{CAFile: c.CA, CertFile: c.Cert, KeyFile: c.Key},
		UnsafeNoFsync: c.NoFsync, QuotaBackendBytes: c.QuotaBytes,
	}
}

// RunEtcdMember runs one member with the JSON configuration raw until
// stdin closes or a signal ends it. Its ready line on stdout names its
// client URL and a loopback HTTP address that serves the process's
// metrics (etcd's own among them: fsync and commit latencies, proposals)
// and, when configured, starts and stops its CPU profile.
func RunEtcdMember(raw string, stdin io.Reader, stdout io.Writer) error {
	if len(raw) > 64<<10 {
		return errors.New("configuration: longer than 64 KiB")
	}
	var cfg etcdMemberConfig
	dec := json.NewDecoder(strings.NewReader(raw))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&cfg); err != nil {
		return fmt.Errorf("configuration: %w", err)
	}
	if cfg.CPUProfile != "" && !filepath.IsAbs(cfg.CPUProfile) {
		return fmt.Errorf("configuration: cpu_profile %q: want an absolute path", cfg.CPUProfile)
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() {
		// The bench holds the other end: EOF means it is gone.
		_, _ = io.Copy(io.Discard, stdin)
		cancel()
	}()
	e, err := store.StartEmbedded(cfg.options())
	if err != nil {
		return err
	}
	defer e.Close()
	// etcd registers its metrics with the default registry.
	reg, ok := prometheus.DefaultRegisterer.(*prometheus.Registry)
	if !ok {
		return errors.New("metrics: the default registerer is not a registry")
	}
	mln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return fmt.Errorf("metrics listener: %w", err)
	}
	srv := &http.Server{Handler: schedProcMux(reg, nil, cfg.CPUProfile, ""), ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = srv.Serve(mln) }()
	defer srv.Close()
	line, _ := json.Marshal(schedProcReady{Addr: e.Endpoints()[0], MetricsAddr: mln.Addr().String()})
	if _, err := fmt.Fprintf(stdout, "%s\n", line); err != nil {
		return err
	}
	select {
	case <-ctx.Done():
		return nil
	case err := <-e.Err():
		return fmt.Errorf("etcd member %s: %w", cfg.Name, err)
	}
}

// EtcdClusterOptions configure StartEtcdCluster.
type EtcdClusterOptions struct {
	// Members is the member count (1-7, odd).
	Members int
	// Dir holds the cluster's certificates and data, made fresh and
	// removed by Close.
	Dir string
	// NoFsync turns fsync off in every member (to see what the disk costs).
	NoFsync bool
	// QuotaBytes is each member's backend quota (0: the store's default).
	QuotaBytes int64
	// CPUProfileDir, when set, is where each member writes its CPU profile
	// of the measured phase (member name.cpu.pprof); absolute.
	CPUProfileDir string
	// Progress receives a line when the cluster serves; nil is silent.
	Progress io.Writer
}

// EtcdCluster is a running external etcd cluster of member processes.
type EtcdCluster struct {
	// Endpoints are the members' client URLs.
	Endpoints []string
	// Client is the identity the scheduler presents to the members
	// (the scheduler's certificate of the cluster's CA).
	Client pki.Files

	names   []string
	members []*childProc
	dir     string
	quota   int64 // each member's backend quota (0: the store's default)

	mu     sync.Mutex
	exited error
}

// StartEtcdCluster starts the members, each in a process of its own, and
// returns once every one serves (which means a quorum runs).
func StartEtcdCluster(ctx context.Context, o EtcdClusterOptions) (c *EtcdCluster, err error) {
	if o.Members < 1 || o.Members > 7 || o.Members%2 == 0 {
		return nil, fmt.Errorf("bench: etcd members %d: want 1, 3, 5 or 7", o.Members)
	}
	if o.Dir == "" {
		return nil, errors.New("bench: etcd cluster: data dir: empty")
	}
	if o.CPUProfileDir != "" && !filepath.IsAbs(o.CPUProfileDir) {
		return nil, fmt.Errorf("bench: etcd cluster: profile dir %q: want an absolute path", o.CPUProfileDir)
	}
	if o.Progress == nil {
		o.Progress = io.Discard
	}
	if err := os.MkdirAll(o.Dir, 0o700); err != nil {
		return nil, fmt.Errorf("bench: etcd cluster: data dir: %w", err)
	}
	dir, err := os.MkdirTemp(o.Dir, "etcd-cluster-")
	if err != nil {
		return nil, fmt.Errorf("bench: etcd cluster: data dir: %w", err)
	}
	// Absolute: the members read the files from their own processes.
	if dir, err = filepath.Abs(dir); err != nil {
		return nil, err
	}
	c = &EtcdCluster{dir: dir, quota: o.QuotaBytes}
	defer func() {
		if err != nil {
			c.Close()
			c = nil
		}
	}()
	// The scheduler's certificate carries the loopback SANs and both
	// server and client usage: every member serves it to peers and
	// clients, and the scheduler presents it (as storetest's cluster).
	b, err := pki.Bootstrap(filepath.Join(dir, "pki"), nil, nil, nil)
	if err != nil {
		return c, fmt.Errorf("bench: etcd cluster: certificates: %w", err)
	}
	c.Client = b.Scheduler
	dirs := make([]string, o.Members)
	peers := make([]string, o.Members)
	clients := make([]string, o.Members)
	for i := range o.Members {
		dirs[i] = filepath.Join(dir, "m"+strconv.Itoa(i))
		for _, u := range []*string{&peers[i], &clients[i]} {
			addr, err := freeLoopbackAddr()
			if err != nil {
				return c, err
			}
			*u = "https://" + addr
		}
	}
	tlsFiles := &store.EmbeddedTLS{CAFile: b.Scheduler.CA, CertFile: b.Scheduler.Cert, KeyFile: b.Scheduler.Key}
	opts, err := store.MemberOptions(store.EmbeddedOptions{TLS: tlsFiles, UnsafeNoFsync: o.NoFsync, QuotaBackendBytes: o.QuotaBytes}, dirs, peers, clients)
	if err != nil {
		return c, err
	}
	start := time.Now()
	c.members = make([]*childProc, len(opts))
	errs := make([]error, len(opts))
	var wg sync.WaitGroup
	for i, m := range opts {
		c.names = append(c.names, m.Name)
		cfg := etcdMemberConfig{Dir: m.Dir, Name: m.Name, ClientURL: m.ClientURL, PeerURL: m.PeerURL, InitialCluster: m.InitialCluster,
			CA: tlsFiles.CAFile, Cert: tlsFiles.CertFile, Key: tlsFiles.KeyFile, NoFsync: m.UnsafeNoFsync, QuotaBytes: m.QuotaBackendBytes}
		if o.CPUProfileDir != "" {
			cfg.CPUProfile = filepath.Join(o.CPUProfileDir, m.Name+".cpu.pprof")
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			// A member is ready once a quorum runs: start them together.
			c.members[i], errs[i] = startChild(ctx, "etcd member "+m.Name, EtcdMemberCommand, cfg, c.memberExited)
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return c, err
	}
	for _, m := range c.members {
		c.Endpoints = append(c.Endpoints, m.ready.Addr)
	}
	fmt.Fprintf(o.Progress, "bench: etcd cluster of %d member processes over TLS (fsync %s) serving in %.1fs: %s\n",
		len(c.members), map[bool]string{true: "off", false: "on"}[o.NoFsync], time.Since(start).Seconds(), strings.Join(c.Endpoints, ","))
	return c, nil
}

func (c *EtcdCluster) memberExited(err error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.exited == nil {
		c.exited = err
	}
}

// Failed returns why a member ended before Close, if one did.
func (c *EtcdCluster) Failed() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.exited
}

// Connect is a client of the cluster as the scheduler makes one for
// --etcd-endpoints with --etcd-ca, --etcd-cert and --etcd-key.
func (c *EtcdCluster) Connect() (*store.Client, error) {
	tlsCfg, err := pki.ClientTLS(c.Client, "")
	if err != nil {
		return nil, fmt.Errorf("bench: etcd cluster client: %w", err)
	}
	return store.Connect(c.Endpoints, tlsCfg)
}

// EtcdMemberStats are one member's figures.
type EtcdMemberStats struct {
	Name        string  `json:"name"`
	Leader      bool    `json:"leader"`
	DBSize      int64   `json:"db_size_bytes"`
	DBSizeInUse int64   `json:"db_size_in_use_bytes"`
	RSSMiB      float64 `json:"rss_mib"`
	CPUSeconds  float64 `json:"cpu_s"`
}

// Stats asks every member for its database size and reads its process's
// memory and CPU time.
func (c *EtcdCluster) Stats(ctx context.Context) ([]EtcdMemberStats, error) {
	cli, err := c.Connect()
	if err != nil {
		return nil, err
	}
	defer cli.Close()
	out := make([]EtcdMemberStats, len(c.members))
	for i, m := range c.members {
		st, err := cli.Status(ctx, c.Endpoints[i])
		if err != nil {
			return nil, fmt.Errorf("bench: etcd member %s: status: %w", c.names[i], err)
		}
		ps := m.stats()
		out[i] = EtcdMemberStats{Name: c.names[i], Leader: st.Leader == st.Header.MemberId, DBSize: st.DbSize, DBSizeInUse: st.DbSizeInUse,
			RSSMiB: ps.RSSMiB, CPUSeconds: ps.CPUSeconds}
	}
	return out, nil
}

// ProfileMembers starts every member's CPU profile; stop ends them.
func (c *EtcdCluster) ProfileMembers() (stop func() error, err error) {
	for i, m := range c.members {
		if err := m.post("/cpuprofile/start"); err != nil {
			return nil, fmt.Errorf("bench: etcd member %s: %w", c.names[i], err)
		}
	}
	return func() error {
		var errs []error
		for i, m := range c.members {
			if err := m.post("/cpuprofile/stop"); err != nil {
				errs = append(errs, fmt.Errorf("bench: etcd member %s: %w", c.names[i], err))
			}
		}
		return errors.Join(errs...)
	}, nil
}

// Close stops every member and removes the cluster's folder. It is safe
// after a partial start.
func (c *EtcdCluster) Close() {
	var wg sync.WaitGroup
	for _, m := range c.members {
		if m == nil {
			continue
		}
		wg.Add(1)
		go func() { defer wg.Done(); m.stop() }()
	}
	wg.Wait()
	if c.dir != "" {
		_ = os.RemoveAll(c.dir)
	}
}

// connect is a client of the cluster for the bench's store and
// scheduler; nil (and no error) on a nil cluster: the bench then starts
// its embedded etcd.
func (c *EtcdCluster) connect() (*store.Client, error) {
	if c == nil {
		return nil, nil
	}
	if err := c.Failed(); err != nil {
		return nil, fmt.Errorf("bench: etcd cluster: %w", err)
	}
	return c.Connect()
}

// size is the member count; 0 for a nil cluster (the embedded etcd).
func (c *EtcdCluster) size() int {
	if c == nil {
		return 0
	}
	return len(c.names)
}

// describe names the store for a report.
func (c *EtcdCluster) describe() string {
	if c == nil {
		return "embedded etcd"
	}
	return fmt.Sprintf("external etcd of %d member processes over TLS", len(c.names))
}
