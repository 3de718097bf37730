package bench

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	goruntime "runtime"
	"runtime/pprof"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/persys-dev/compute/internal/gctune"
	"github.com/persys-dev/compute/internal/pki"
	"github.com/persys-dev/compute/internal/scheduler"
	"github.com/persys-dev/compute/internal/store"
)

// The scheduler process. With ClusterOptions.SchedulerProcess the bench
// re-executes its own binary as "persys bench-scheduler-process CONFIG"
// (SchedulerProcessCommand, a hidden command): the child runs only the
// scheduler (etcd and the hollow nodes stay in the bench), so the
// scheduler's resident memory and CPU time are its own figures, not
// shared with etcd and thousands of hollow agents. The child serves the
// simulator's shared transport, like the in-process scheduler of the bench,
// listens on loopback only and ends when its standard input closes (the
// bench ended, however it ended: no scheduler is left behind).

// SchedulerProcessCommand is the hidden command, the first argument, that
// runs a binary as the bench's scheduler process; the second argument is
// its configuration as JSON. The persys binary registers it; a test binary
// checks for it in TestMain.
const SchedulerProcessCommand = "bench-scheduler-process"

// schedProcStartTimeout bounds the wait for the child's ready line.
const schedProcStartTimeout = 60 * time.Second

type schedProcConfig struct {
	EtcdEndpoints     []string      `json:"etcd_endpoints"`
	EtcdCA            string        `json:"etcd_ca"`
	EtcdCert          string        `json:"etcd_cert"`
	EtcdKey           string        `json:"etcd_key"`
	HeartbeatInterval time.Duration `json:"heartbeat_interval"`
	LeaseTTL          time.Duration `json:"lease_ttl"`
	RescheduleGrace   time.Duration `json:"reschedule_grace"`
	Workers           int           `json:"workers"`
	GCPercent         int           `json:"gc_percent"`
	MemoryLimit       int64         `json:"memory_limit,omitempty"`
	// CPUProfile and HeapProfile are the only files the child writes
	// profiles to, fixed when it starts: its loopback HTTP port takes no
	// path, so another local process cannot make it write elsewhere.
	CPUProfile  string `json:"cpu_profile,omitempty"`
	HeapProfile string `json:"heap_profile,omitempty"`
	// ClientCA, ClientCert and ClientKey, when set, are the scheduler's
	// identity for a second listener that serves API clients (watchers,
	// a gateway) over mTLS, as persys scheduler does.
	ClientCA   string `json:"client_ca,omitempty"`
	ClientCert string `json:"client_cert,omitempty"`
	ClientKey  string `json:"client_key,omitempty"`
	// MTLS serves the hollow nodes' listener over mTLS with the client
	// identity (each node its own connections) instead of the shared
	// plaintext transport; API clients then use that one listener.
	MTLS bool `json:"mtls,omitempty"`
	// FileLimit is the RLIMIT_NOFILE soft limit the process sets before
	// it serves (0: leave it): the nodes' connections end here.
	FileLimit uint64 `json:"file_limit,omitempty"`
}

// validate accepts loopback addresses only: the child is a test host.
func (c schedProcConfig) validate() error {
	if len(c.EtcdEndpoints) == 0 {
		return errors.New("etcd_endpoints: empty")
	}
	for _, ep := range c.EtcdEndpoints {
		u, err := url.Parse(ep)
		if err != nil || u.Scheme != "https" {
			return fmt.Errorf("etcd_endpoints: %q: want https://loopback:port", ep)
		}
		if err := loopbackHostPort(u.Host); err != nil {
			return fmt.Errorf("etcd_endpoints: %q: %w", ep, err)
		}
	}
	for field, p := range map[string]string{"etcd_ca": c.EtcdCA, "etcd_cert": c.EtcdCert, "etcd_key": c.EtcdKey} {
		if !filepath.IsAbs(p) {
			return fmt.Errorf("%s: %q: want an absolute file path", field, p)
		}
	}
	if c.GCPercent != 0 {
		if err := gctune.Validate("gc_percent", c.GCPercent); err != nil {
			return err
		}
	}
	if c.MemoryLimit < 0 {
		return errors.New("memory_limit: must not be negative")
	}
	for field, p := range map[string]string{"cpu_profile": c.CPUProfile, "heap_profile": c.HeapProfile,
		"client_ca": c.ClientCA, "client_cert": c.ClientCert, "client_key": c.ClientKey} {
		if p != "" && !filepath.IsAbs(p) {
			return fmt.Errorf("%s: %q: want an absolute file path", field, p)
		}
	}
	if (c.ClientCA == "") != (c.ClientCert == "") || (c.ClientCert == "") != (c.ClientKey == "") {
		return errors.New("client_ca, client_cert and client_key: set all three or none")
	}
	if c.MTLS && c.ClientCert == "" {
		return errors.New("mtls: needs client_ca, client_cert and client_key")
	}
	if c.HeartbeatInterval < 0 || c.LeaseTTL < 0 || c.RescheduleGrace < 0 || c.Workers < 0 {
		return errors.New("heartbeat_interval, lease_ttl, reschedule_grace and workers must not be negative")
	}
	return nil
}

func loopbackHostPort(hp string) error {
	ap, err := netip.ParseAddrPort(hp)
	if err != nil {
		return fmt.Errorf("want ip:port: %w", err)
	}
	if !ap.Addr().IsLoopback() {
		return errors.New("not a loopback address")
	}
	return nil
}

// schedProcReady is a child's one line on standard output (the
// scheduler's or the gateway's process).
type schedProcReady struct {
	Addr        string `json:"addr"`
	MetricsAddr string `json:"metrics_addr"`
	// ClientAddr is the scheduler's mTLS listener for API clients.
	ClientAddr string `json:"client_addr,omitempty"`
}

// RunSchedulerProcess runs the bench's scheduler process with the JSON
// configuration raw until stdin closes or a signal ends it; it writes its
// ready line to stdout.
func RunSchedulerProcess(raw string, stdin io.Reader, stdout io.Writer) error {
	return runSchedulerProcess(raw, stdin, stdout)
}

func runSchedulerProcess(raw string, stdin io.Reader, stdout io.Writer) error {
	if len(raw) > 64<<10 {
		return errors.New("configuration: longer than 64 KiB")
	}
	var cfg schedProcConfig
	dec := json.NewDecoder(strings.NewReader(raw))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&cfg); err != nil {
		return fmt.Errorf("configuration: %w", err)
	}
	if err := cfg.validate(); err != nil {
		return fmt.Errorf("configuration: %w", err)
	}
	if cfg.GCPercent != 0 {
		gctune.Apply(cfg.GCPercent)
	}
	gctune.ApplyMemoryLimit(gctune.MemoryLimit(cfg.MemoryLimit))
	if cfg.FileLimit != 0 {
		if _, err := raiseFileLimit(cfg.FileLimit); err != nil {
			return fmt.Errorf("scheduler process: %w", err)
		}
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

	etcdTLS, err := pki.ClientTLS(pki.Files{CA: cfg.EtcdCA, Cert: cfg.EtcdCert, Key: cfg.EtcdKey}, "")
	if err != nil {
		return fmt.Errorf("etcd: %w", err)
	}
	cli, err := store.Connect(cfg.EtcdEndpoints, etcdTLS)
	if err != nil {
		return err
	}
	defer cli.Close()
	quiet := slog.New(slog.DiscardHandler)
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	sched, err := scheduler.New(scheduler.Config{
		Store: store.New(cli, store.Options{Logger: quiet}), Logger: quiet, Registry: reg,
		HeartbeatInterval: cfg.HeartbeatInterval, LeaseTTL: cfg.LeaseTTL, RescheduleGrace: cfg.RescheduleGrace, Workers: cfg.Workers,
	})
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return fmt.Errorf("scheduler listener: %w", err)
	}
	mln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		ln.Close()
		return fmt.Errorf("metrics listener: %w", err)
	}
	progress := prometheus.NewRegistry()
	if err := sched.RegisterProgress(progress); err != nil {
		ln.Close()
		mln.Close()
		return err
	}
	srv := &http.Server{Handler: schedProcMux(reg, progress, cfg.CPUProfile, cfg.HeapProfile), ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = srv.Serve(mln) }()
	defer srv.Close()

	errc := make(chan error, 3)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { defer wg.Done(); errc <- sched.Run(ctx) }()
	defer wg.Wait()
	defer cancel()
	var clientAddr string
	if cfg.MTLS {
		clientAddr, err = serveClientsOn(ctx, ln, cfg, sched, &wg, errc)
	} else {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errc <- scheduler.ServeWith(ctx, ln, sched, sharedServerOptions(pki.RoleAgent, pki.RoleAdmin)...)
		}()
		clientAddr, err = serveClients(ctx, cfg, sched, &wg, errc)
	}
	if err != nil {
		return err
	}

	t := time.NewTicker(10 * time.Millisecond)
	defer t.Stop()
	for sched.Ready() != nil {
		select {
		case err := <-errc:
			return fmt.Errorf("scheduler ended before it was ready: %w", err)
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
	line, _ := json.Marshal(schedProcReady{Addr: ln.Addr().String(), MetricsAddr: mln.Addr().String(), ClientAddr: clientAddr})
	if _, err := fmt.Fprintf(stdout, "%s\n", line); err != nil {
		return err
	}
	select {
	case <-ctx.Done():
		return nil
	case err := <-errc:
		if ctx.Err() != nil {
			return nil
		}
		return fmt.Errorf("scheduler ended: %w", err)
	}
}

// serveClients serves the scheduler's ControlService over mTLS on a
// loopback listener of its own when cfg names the identity; it returns
// the listener's address ("" without one).
func serveClients(ctx context.Context, cfg schedProcConfig, sched *scheduler.Scheduler, wg *sync.WaitGroup, errc chan<- error) (string, error) {
	if cfg.ClientCert == "" {
		return "", nil
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", fmt.Errorf("client listener: %w", err)
	}
	return serveClientsOn(ctx, ln, cfg, sched, wg, errc)
}

// serveClientsOn serves the ControlService (and the nodes' channel) over
// mTLS on ln with cfg's identity; it returns ln's address.
func serveClientsOn(ctx context.Context, ln net.Listener, cfg schedProcConfig, sched *scheduler.Scheduler, wg *sync.WaitGroup, errc chan<- error) (string, error) {
	tlsCfg, err := pki.ServerTLS(pki.Files{CA: cfg.ClientCA, Cert: cfg.ClientCert, Key: cfg.ClientKey})
	if err != nil {
		ln.Close()
		return "", fmt.Errorf("client listener: %w", err)
	}
	wg.Add(1)
	go func() { defer wg.Done(); errc <- scheduler.Serve(ctx, ln, sched, tlsCfg) }()
	return ln.Addr().String(), nil
}

// schedProcMux serves /metrics, /metrics/progress (when progress is not
// nil), /memstats and the profiles the bench asks for, into the files
// named at start (none: the endpoint answers 404).
func schedProcMux(reg, progress prometheus.Gatherer, cpuPath, heapPath string) *http.ServeMux {
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	if progress != nil {
		mux.Handle("/metrics/progress", promhttp.HandlerFor(progress, promhttp.HandlerOpts{}))
	}
	mux.HandleFunc("GET /memstats", serveMemSample)
	var mu sync.Mutex
	var cpu *os.File
	if cpuPath != "" {
		mux.HandleFunc("POST /cpuprofile/start", func(w http.ResponseWriter, _ *http.Request) {
			mu.Lock()
			defer mu.Unlock()
			if cpu != nil {
				http.Error(w, "a CPU profile is already running", http.StatusConflict)
				return
			}
			f, err := os.Create(cpuPath)
			if err == nil {
				if err = pprof.StartCPUProfile(f); err != nil {
					f.Close()
				}
			}
			if err != nil {
				http.Error(w, err.Error(), http.StatusInternalServerError)
				return
			}
			cpu = f
		})
		mux.HandleFunc("POST /cpuprofile/stop", func(w http.ResponseWriter, _ *http.Request) {
			mu.Lock()
			defer mu.Unlock()
			if cpu == nil {
				http.Error(w, "no CPU profile is running", http.StatusConflict)
				return
			}
			pprof.StopCPUProfile()
			if err := cpu.Close(); err != nil {
				http.Error(w, err.Error(), http.StatusInternalServerError)
			}
			cpu = nil
		})
	}
	if heapPath != "" {
		mux.HandleFunc("POST /heapprofile", func(w http.ResponseWriter, _ *http.Request) {
			if err := WriteHeapProfile(heapPath); err != nil {
				http.Error(w, err.Error(), http.StatusInternalServerError)
			}
		})
	}
	return mux
}

// childProc is the bench's handle on a running child process: the
// scheduler's (startSchedProc) or the gateway's (startGatewayProc).
type childProc struct {
	cmd     *exec.Cmd
	stdin   io.WriteCloser
	ready   schedProcReady
	http    *http.Client
	exited  chan struct{}
	waitErr error
	stopped atomic.Bool
}

// startSchedProc re-executes this binary as the scheduler process and
// waits for its ready line. onExit is called if it ends before stop.
func startSchedProc(ctx context.Context, cfg schedProcConfig, onExit func(error)) (*childProc, error) {
	return startChild(ctx, "scheduler process", SchedulerProcessCommand, cfg, onExit)
}

// startChild re-executes this binary with the hidden command and its
// JSON configuration cfg, and waits for its ready line; what names the
// child in errors. onExit is called if it ends before stop.
func startChild(ctx context.Context, what, command string, cfg any, onExit func(error)) (*childProc, error) {
	exe, err := os.Executable()
	if err != nil {
		return nil, fmt.Errorf("bench: %s: %w", what, err)
	}
	raw, err := json.Marshal(cfg)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(exe, command, string(raw))
	cmd.Stderr = os.Stderr
	// Its own process group: a terminal's Ctrl-C reaches the bench, which
	// then closes the child's stdin; the child does not race it.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("bench: start %s: %w", what, err)
	}
	p := &childProc{cmd: cmd, stdin: stdin, exited: make(chan struct{}),
		http: &http.Client{Timeout: 30 * time.Second}}
	lines := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		if sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
		_, _ = io.Copy(io.Discard, stdout)
	}()
	go func() {
		p.waitErr = cmd.Wait()
		close(p.exited)
		if onExit != nil && !p.stopped.Load() {
			onExit(fmt.Errorf("%s ended: %v", what, p.waitErr))
		}
	}()
	timer := time.NewTimer(schedProcStartTimeout)
	defer timer.Stop()
	select {
	case line, ok := <-lines:
		if !ok {
			<-p.exited
			return nil, fmt.Errorf("bench: %s ended before it was ready: %v", what, p.waitErr)
		}
		if err := json.Unmarshal([]byte(line), &p.ready); err != nil || p.ready.Addr == "" || p.ready.MetricsAddr == "" {
			p.stop()
			return nil, fmt.Errorf("bench: %s: ready line %q: not understood", what, line)
		}
		return p, nil
	case <-timer.C:
		p.stop()
		return nil, fmt.Errorf("bench: %s not ready after %s", what, schedProcStartTimeout)
	case <-ctx.Done():
		p.stop()
		return nil, ctx.Err()
	}
}

// stop closes the child's stdin (it ends by itself) and kills it if it is
// still there after a while.
func (p *childProc) stop() {
	p.stopped.Store(true)
	_ = p.stdin.Close()
	select {
	case <-p.exited:
		return
	case <-time.After(15 * time.Second):
	}
	_ = p.cmd.Process.Kill()
	<-p.exited
}

func (p *childProc) running() bool {
	select {
	case <-p.exited:
		return false
	default:
		return true
	}
}

func (p *childProc) post(path string) error {
	resp, err := p.http.Post("http://"+p.ready.MetricsAddr+path, "text/plain", nil)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 4<<10))
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s: %s: %s", path, resp.Status, strings.TrimSpace(string(body)))
	}
	return nil
}

// Gather scrapes the child's /metrics: the bench reads the scheduler's
// gauges and histograms through it as it does an in-process registry.
func (p *childProc) Gather() ([]*dto.MetricFamily, error) { return p.scrape("/metrics") }

// GatherProgress scrapes the scheduler's progress metrics alone
// (Scheduler.RegisterProgress): the waits poll progress ten times a
// second, and a whole gather each time cost the scheduler process 2 % of
// its CPU at 10,000 nodes, and the bench 6 % of a core to parse.
func (p *childProc) GatherProgress() ([]*dto.MetricFamily, error) {
	return p.scrape("/metrics/progress")
}

func (p *childProc) scrape(path string) ([]*dto.MetricFamily, error) {
	req, err := http.NewRequest(http.MethodGet, "http://"+p.ready.MetricsAddr+path, nil)
	if err != nil {
		return nil, err
	}
	// Uncompressed: on loopback gzip only costs the scheduler CPU (the
	// bench scrapes ten times a second).
	req.Header.Set("Accept-Encoding", "identity")
	resp, err := p.http.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("scrape scheduler process %s: %s", path, resp.Status)
	}
	parser := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := parser.TextToMetricFamilies(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return nil, fmt.Errorf("scrape scheduler process %s: %w", path, err)
	}
	out := make([]*dto.MetricFamily, 0, len(fams))
	for _, f := range fams {
		out = append(out, f)
	}
	return out, nil
}

// stats reads the child's resident memory and CPU time from /proc.
func (p *childProc) stats() SchedProcStats {
	return statsOfPID(p.cmd.Process.Pid)
}

// SchedProcStats are the scheduler process's own figures.
type SchedProcStats struct {
	PID        int     `json:"pid"`
	RSSMiB     float64 `json:"rss_mib"`
	PeakRSSMiB float64 `json:"peak_rss_mib"`
	CPUSeconds float64 `json:"cpu_s"`
	// FDs is the descriptors the process holds open.
	FDs int `json:"fds"`
}

func statsOfPID(pid int) SchedProcStats {
	st := SchedProcStats{PID: pid, FDs: fdCount(pid)}
	st.RSSMiB, st.PeakRSSMiB = rssOf("/proc/" + strconv.Itoa(pid) + "/status")
	data, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return st
	}
	// Fields after the command name, which is in parentheses and may hold
	// spaces: utime and stime are the 12th and 13th of them.
	s := string(data)
	if i := strings.LastIndexByte(s, ')'); i >= 0 {
		f := strings.Fields(s[i+1:])
		if len(f) > 12 {
			ut, _ := strconv.ParseFloat(f[11], 64)
			stm, _ := strconv.ParseFloat(f[12], 64)
			st.CPUSeconds = (ut + stm) / clockTicks
		}
	}
	return st
}

// clockTicks is USER_HZ, 100 on every Linux the project runs on.
const clockTicks = 100

// WriteHeapProfile writes this process's live heap (after a collection)
// to path.
func WriteHeapProfile(path string) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	goruntime.GC()
	if err := pprof.WriteHeapProfile(f); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}
