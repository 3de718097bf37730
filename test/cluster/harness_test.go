package cluster

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/moby/moby/api/pkg/stdcopy"
	"github.com/moby/moby/api/types/build"
	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/api/types/network"
	"github.com/moby/moby/client"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	"github.com/persys-dev/compute/api/persys/contract"
	persysv1 "github.com/persys-dev/compute/api/persys/v1"
	"github.com/persys-dev/compute/api/persys/v1/persysv1grpc"
	gwclient "github.com/persys-dev/compute/internal/client"
	"github.com/persys-dev/compute/internal/failpoint"
	"github.com/persys-dev/compute/internal/pki"
	"github.com/persys-dev/compute/internal/store/storetest"
	"github.com/persys-dev/compute/internal/testutil/freeport"
	"github.com/persys-dev/compute/internal/testutil/images"
)

// NodeImage is the agent image: FROM scratch with the static persys binary.
const NodeImage = "persys-node:test"

// Labels the harness puts on what it creates. Workload containers get
// labelRun through spec.container.labels, so cleanup finds them too.
const (
	labelRun  = "cluster.run"
	labelRole = "cluster.role"
)

// Paths inside an agent container.
const (
	agentPKIDir  = "/pki"
	agentDataDir = "/data"
	agentMetrics = 9103
)

// envBinDir, when set, names a folder with prebuilt persys (static) and
// persysctl binaries to use instead of building them.
const envBinDir = "PERSYS_BIN_DIR"

func TestMain(m *testing.M) {
	began := time.Now()
	code := m.Run()
	if len(results.list) > 0 {
		fmt.Println(overall(code, time.Since(began)))
	}
	printKillTable()
	if bins.dir != "" && bins.built {
		_ = os.RemoveAll(bins.dir)
	}
	if fpBin.dir != "" {
		_ = os.RemoveAll(fpBin.dir)
	}
	os.Exit(code)
}

// ---- binaries and images -------------------------------------------------

var bins struct {
	once  sync.Once
	dir   string
	built bool
	err   error
}

// binaries builds static persys and persysctl once per test process, or
// takes them from $PERSYS_BIN_DIR.
func binaries(t *testing.T) (persys, persysctl string) {
	t.Helper()
	bins.once.Do(func() {
		if d := os.Getenv(envBinDir); d != "" {
			bins.dir = d
			for _, b := range []string{"persys", "persysctl"} {
				if _, err := os.Stat(filepath.Join(d, b)); err != nil {
					bins.err = fmt.Errorf("$%s: %w", envBinDir, err)
					return
				}
			}
			return
		}
		root, err := images.ModuleRoot()
		if err != nil {
			bins.err = err
			return
		}
		bins.dir, bins.err = os.MkdirTemp("", "persys-cluster-bin-")
		if bins.err != nil {
			return
		}
		bins.built = true
		for _, cmd := range []string{"persys", "persysctl"} {
			c := exec.Command("go", "build", "-trimpath", "-o", filepath.Join(bins.dir, cmd), "./cmd/"+cmd)
			c.Dir = root
			c.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux")
			if out, err := c.CombinedOutput(); err != nil {
				bins.err = fmt.Errorf("build %s: %w\n%s", cmd, err, out)
				return
			}
		}
	})
	if bins.err != nil {
		t.Fatal(bins.err)
	}
	return filepath.Join(bins.dir, "persys"), filepath.Join(bins.dir, "persysctl")
}

var fpBin struct {
	once sync.Once
	dir  string // a folder this process made, removed at the end
	path string
	err  error
}

// failpointBinary is persys built with the failpoints tag, once per test
// process, or $PERSYS_BIN_DIR/persys-failpoints when that exists.
func failpointBinary(t *testing.T) string {
	t.Helper()
	fpBin.once.Do(func() {
		if d := os.Getenv(envBinDir); d != "" {
			if p := filepath.Join(d, "persys-failpoints"); fileExists(p) {
				fpBin.path = p
				return
			}
		}
		root, err := images.ModuleRoot()
		if err != nil {
			fpBin.err = err
			return
		}
		if fpBin.dir, fpBin.err = os.MkdirTemp("", "persys-cluster-fp-"); fpBin.err != nil {
			return
		}
		fpBin.path = filepath.Join(fpBin.dir, "persys")
		c := exec.Command("go", "build", "-tags", "failpoints", "-trimpath", "-o", fpBin.path, "./cmd/persys")
		c.Dir = root
		c.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux")
		if out, err := c.CombinedOutput(); err != nil {
			fpBin.err = fmt.Errorf("build persys with failpoints: %w\n%s", err, out)
		}
	})
	if fpBin.err != nil {
		t.Fatal(fpBin.err)
	}
	return fpBin.path
}

func fileExists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}

var nodeImg struct {
	once sync.Once
	id   string
	err  error
}

// nodeImage builds NodeImage from the persys binary once per test process
// and returns the image id. The tag always points at the binary of this
// run; the image it replaces is removed when nothing uses it any more.
func nodeImage(t *testing.T, cli *client.Client, persys string) string {
	t.Helper()
	nodeImg.once.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
		defer cancel()
		nodeImg.id, nodeImg.err = buildNodeImage(ctx, cli, persys, NodeImage)
	})
	if nodeImg.err != nil {
		t.Fatalf("node image: %v", nodeImg.err)
	}
	return nodeImg.id
}

const nodeDockerfile = `FROM scratch
COPY persys /persys
ENTRYPOINT ["/persys"]
`

func buildNodeImage(ctx context.Context, cli *client.Client, binary, tag string) (string, error) {
	bin, err := os.ReadFile(binary)
	if err != nil {
		return "", fmt.Errorf("read %s: %w", binary, err)
	}
	var old string
	if img, err := cli.ImageInspect(ctx, tag); err == nil {
		old = img.ID
	}
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, f := range []struct {
		name string
		mode int64
		data []byte
	}{{"Dockerfile", 0o644, []byte(nodeDockerfile)}, {"persys", 0o755, bin}} {
		hdr := &tar.Header{Name: f.name, Mode: f.mode, Size: int64(len(f.data)), ModTime: time.Unix(0, 0), Typeflag: tar.TypeReg}
		if err := tw.WriteHeader(hdr); err != nil {
			return "", fmt.Errorf("tar %s: %w", f.name, err)
		}
		if _, err := tw.Write(f.data); err != nil {
			return "", fmt.Errorf("tar %s: %w", f.name, err)
		}
	}
	if err := tw.Close(); err != nil {
		return "", fmt.Errorf("tar: %w", err)
	}
	resp, err := cli.ImageBuild(ctx, &buf, client.ImageBuildOptions{
		Tags: []string{tag}, Remove: true, ForceRemove: true, Version: build.BuilderV1,
		Labels: map[string]string{"persys.test": "true"},
	})
	if err != nil {
		return "", fmt.Errorf("image build %s: %w", tag, err)
	}
	defer resp.Body.Close()
	dec := json.NewDecoder(resp.Body)
	for {
		var msg struct {
			Error       string `json:"error"`
			ErrorDetail struct {
				Message string `json:"message"`
			} `json:"errorDetail"`
		}
		if err := dec.Decode(&msg); errors.Is(err, io.EOF) {
			break
		} else if err != nil {
			return "", fmt.Errorf("image build %s: read output: %w", tag, err)
		}
		if msg.ErrorDetail.Message != "" || msg.Error != "" {
			return "", fmt.Errorf("image build %s: %s%s", tag, msg.ErrorDetail.Message, msg.Error)
		}
	}
	img, err := cli.ImageInspect(ctx, tag)
	if err != nil {
		return "", fmt.Errorf("inspect built %s: %w", tag, err)
	}
	if old != "" && old != img.ID {
		// Fails harmlessly while another test process still runs it.
		_, _ = cli.ImageRemove(ctx, old, client.ImageRemoveOptions{PruneChildren: true})
	}
	return img.ID, nil
}

// ---- options and cluster -------------------------------------------------

// Options shape a test cluster. Zero values take the defaults, which are
// the short timings every test runs with.
type Options struct {
	// Agents is the number of agent containers (default 3).
	Agents int
	// Schedulers is the number of scheduler processes (default 3). All of
	// them share the one three-member etcd and elect a leader through it;
	// agents and the gateway get every address.
	Schedulers int
	// SchedulerFlags are appended to every scheduler's command line, for
	// example --strategy binpack.
	SchedulerFlags []string
	// AgentFlags are appended to every agent's command line.
	AgentFlags []string
	// AgentFlagsFor, when set, adds flags to agent i's (from 0) command
	// line: the agents share one engine, so what binds host ports (their
	// --dynamic-ports ranges) must differ between them.
	AgentFlagsFor func(i int) []string
	// HeartbeatInterval and LeaseTTL go to the schedulers (default 1s, 4s).
	HeartbeatInterval time.Duration
	LeaseTTL          time.Duration
	// RescheduleGrace is --reschedule-grace (default 5s).
	RescheduleGrace time.Duration
	// ElectionTTL is --election-ttl (default 2s).
	ElectionTTL time.Duration
	// RetryBase, RetryMax and MaxAttempts shape the retry engine
	// (default 1s, 4s, 4).
	RetryBase, RetryMax time.Duration
	MaxAttempts         int
	// Failpoints runs the schedulers from a persys built with the
	// failpoints tag, armed through the file Cluster.FailpointFile (see
	// internal/failpoint): a test writes a spec there to arm a point in
	// every replica and removes it to disarm.
	Failpoints bool
}

func (o *Options) defaults() {
	if o.Agents == 0 {
		o.Agents = 3
	}
	if o.Schedulers == 0 {
		o.Schedulers = 3
	}
	if o.HeartbeatInterval == 0 {
		o.HeartbeatInterval = time.Second
	}
	if o.LeaseTTL == 0 {
		o.LeaseTTL = 4 * time.Second
	}
	if o.RescheduleGrace == 0 {
		o.RescheduleGrace = 5 * time.Second
	}
	if o.ElectionTTL == 0 {
		o.ElectionTTL = 2 * time.Second
	}
	if o.RetryBase == 0 {
		o.RetryBase = time.Second
	}
	if o.RetryMax == 0 {
		o.RetryMax = 4 * time.Second
	}
	if o.MaxAttempts == 0 {
		o.MaxAttempts = 4
	}
}

// schedulerFlags are the timing flags every scheduler gets.
func (o *Options) schedulerFlags() []string {
	return []string{
		"--heartbeat-interval", o.HeartbeatInterval.String(), "--lease-ttl", o.LeaseTTL.String(),
		"--reschedule-grace", o.RescheduleGrace.String(), "--election-ttl", o.ElectionTTL.String(),
		"--retry-base", o.RetryBase.String(), "--retry-max", o.RetryMax.String(),
		"--max-attempts", strconv.Itoa(o.MaxAttempts),
	}
}

// Cluster is one running test cluster.
type Cluster struct {
	t         *testing.T
	Opts      Options
	Run       string // unique id of this cluster, in every name and label
	Dir       string
	Docker    *client.Client
	HelloImg  string
	persys    string
	persysctl string
	// schedBin and schedEnv are what the schedulers run: persys, or its
	// failpoints build with the arm file in the environment.
	schedBin string
	schedEnv []string
	pkiDir   string
	config   string // persysctl config file
	// nodeImageID is the id NodeImage had when this process built it;
	// agents are created from the id, so a concurrent rebuild of the tag
	// by another test process cannot swap their binary.
	nodeImageID string

	// Up is how long Start took.
	Up time.Duration

	// Etcd is the store: three embedded members in this test process.
	Etcd       *storetest.Cluster
	Net        Network
	Schedulers []*Proc
	Gateway    *Proc
	Agents     []*Agent

	mu           sync.Mutex
	procs        []*Proc
	api          *gwclient.Client
	direct       map[string]*grpc.ClientConn // DirectLeader's, by address
	cleanupStart time.Time
}

// Network is the private Docker network the agents live on.
type Network struct {
	ID, Name string
	Subnet   netip.Prefix
	Gateway  netip.Addr // a local address of this host: schedulers listen on it
}

// Agent is one agent container.
type Agent struct {
	NodeID      string
	IP          netip.Addr
	Name        string // container name
	ContainerID string
	dataDir     string
}

// Addr is the agent's AgentService address.
func (a *Agent) Addr() string { return a.IP.String() }

// Proc is a daemon process on the host.
type Proc struct {
	Name    string
	Addr    string // main listen address
	Metrics string // metrics listen address
	bin     string
	env     []string // added to this process's environment
	restart int      // how many times RestartProc started this name before
	args    []string
	cmd     *exec.Cmd
	mu      sync.Mutex
	log     bytes.Buffer
	done    chan struct{}
	stopped bool // stopped on purpose: exiting is not an error
}

type procWriter struct{ p *Proc }

func (w procWriter) Write(b []byte) (int, error) {
	w.p.mu.Lock()
	defer w.p.mu.Unlock()
	return w.p.log.Write(b)
}

// Output is what the process wrote so far.
func (p *Proc) Output() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.log.String()
}

func (p *Proc) alive() bool {
	select {
	case <-p.done:
		return false
	default:
		return true
	}
}

// DiedAt waits up to timeout for the process to end at a failpoint it was
// armed to die at, and then treats the exit as intended. It reports
// whether the process died there: false when it still runs, or ended
// without reaching point.
func (p *Proc) DiedAt(point string, timeout time.Duration) bool {
	select {
	case <-p.done:
	case <-time.After(timeout):
		return false
	}
	p.mu.Lock()
	p.stopped = true
	p.mu.Unlock()
	return strings.Contains(p.Output(), "failpoint "+point+": killing the process")
}

// Stop sends SIGTERM and waits; after 20 s it kills.
func (p *Proc) Stop() error {
	p.mu.Lock()
	p.stopped = true
	p.mu.Unlock()
	if !p.alive() {
		return nil
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
		return nil
	case <-time.After(20 * time.Second):
		_ = p.cmd.Process.Kill()
		<-p.done
		return fmt.Errorf("%s did not stop within 20s of SIGTERM", p.Name)
	}
}

// Kill ends the process with SIGKILL (os.Process.Kill), as a crash would,
// and waits for it to exit.
func (p *Proc) Kill() {
	p.mu.Lock()
	p.stopped = true
	p.mu.Unlock()
	_ = p.cmd.Process.Kill()
	<-p.done
}

func (p *Proc) unexpectedExit() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return !p.stopped && !p.alive()
}

func randomID() string {
	b := make([]byte, 3)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// Start brings up a cluster and waits until every agent's node is READY.
// Everything it creates is removed when the test ends.
func Start(t *testing.T, o Options) *Cluster {
	t.Helper()
	o.defaults()
	began := time.Now()
	var phases []string
	phase := func(name string, since time.Time) time.Time {
		phases = append(phases, fmt.Sprintf("%s=%s", name, time.Since(since).Round(time.Millisecond)))
		return time.Now()
	}
	cli, hello := images.HelloImage(t) // fails under CI without Docker, skips otherwise
	persys, persysctl := binaries(t)
	nodeID := nodeImage(t, cli, persys)
	mark := phase("images", began)

	c := &Cluster{
		t: t, Opts: o, Run: randomID(), Dir: t.TempDir(), Docker: cli, HelloImg: hello,
		persys: persys, persysctl: persysctl, nodeImageID: nodeID,
	}
	c.pkiDir = filepath.Join(c.Dir, "pki")
	c.schedBin = persys
	if o.Failpoints {
		c.schedBin = failpointBinary(t)
		c.schedEnv = []string{failpoint.ArmEnv + "=" + c.FailpointFile()}
	}
	ctx := context.Background()

	t.Cleanup(func() {
		if !c.cleanupStart.IsZero() {
			t.Logf("cluster %s: cleanup took %s", c.Run, time.Since(c.cleanupStart).Round(time.Millisecond))
		}
	})
	// etcd first, so it is closed last: three members, peers and clients
	// over TLS with certificate auth, each behind a relay that a member
	// kill cuts. The store has a CA of its own, not the cluster's, as in
	// production: no daemon's or user's certificate opens it.
	c.Etcd = storetest.NewCluster(t, 3)
	c.run(c.persys, "ca", "init", "--dir", c.pkiDir)

	c.Net = c.createNetwork(ctx)
	t.Cleanup(func() {
		if _, err := cli.NetworkRemove(context.Background(), c.Net.ID, client.NetworkRemoveOptions{}); err != nil {
			t.Errorf("cleanup: remove network %s: %v", c.Net.Name, err)
		}
	})
	// Registered after the network, so it runs before the network goes.
	t.Cleanup(c.removeContainers)

	for i := range o.Agents {
		ip, err := hostInSubnet(c.Net.Subnet, 10+i)
		if err != nil {
			t.Fatal(err)
		}
		c.Agents = append(c.Agents, &Agent{
			NodeID: fmt.Sprintf("node-%d-%s", i+1, c.Run), IP: ip,
			Name: fmt.Sprintf("persys-%s-node-%d", c.Run, i+1), dataDir: filepath.Join(c.Dir, fmt.Sprintf("agent-%d", i+1)),
		})
	}
	c.issueCertificates()
	mark = phase("etcd+network+pki", mark)

	etcdEndpoints := strings.Join(c.Etcd.Endpoints(), ",")
	storePKI := c.Etcd.Bundle.Dir
	var schedAddrs []string
	for i := range o.Schedulers {
		name := fmt.Sprintf("scheduler-%d", i+1)
		addr := freeAddr(t, c.Net.Gateway.String())
		schedAddrs = append(schedAddrs, addr)
		args := []string{"scheduler", "--listen", addr, "--etcd-endpoints", etcdEndpoints,
			"--metrics-listen", freeAddr(t, "127.0.0.1"), "--data-dir", filepath.Join(c.Dir, name+"-data")}
		// Each replica reaches etcd with its own certificate of the
		// store's CA.
		c.run(c.persys, "ca", "issue", "--dir", storePKI, "--role", "scheduler", "--name", name)
		args = append(args, "--etcd-ca", c.Etcd.Bundle.CA,
			"--etcd-cert", filepath.Join(storePKI, name+".crt"), "--etcd-key", filepath.Join(storePKI, name+".key"))
		args = append(args, o.schedulerFlags()...)
		args = append(args, c.certFlags(name)...)
		c.Schedulers = append(c.Schedulers, c.startProcOf(c.schedBin, c.schedEnv, name, append(args, o.SchedulerFlags...)))
	}
	for _, s := range c.Schedulers {
		c.waitHTTP(s, "/healthz", 30*time.Second)
	}
	mark = phase("schedulers", mark)

	gwAddr := freeAddr(t, "127.0.0.1")
	c.Gateway = c.startProc("gateway", append([]string{"gateway", "--listen", gwAddr,
		"--scheduler", strings.Join(schedAddrs, ","), "--metrics-listen", freeAddr(t, "127.0.0.1")}, c.certFlags("gateway")...))
	c.config = filepath.Join(c.Dir, "persysctl.yaml")
	cfg := fmt.Sprintf("endpoint: https://%s\nca: %s\ncert: %s\nkey: %s\n", gwAddr,
		filepath.Join(c.pkiDir, "ca.crt"), filepath.Join(c.pkiDir, "admin.crt"), filepath.Join(c.pkiDir, "admin.key"))
	if err := os.WriteFile(c.config, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}

	for _, a := range c.Agents {
		c.createAgent(ctx, a, strings.Join(schedAddrs, ","))
	}
	c.WaitFor(fmt.Sprintf("%d nodes READY", o.Agents), 60*time.Second, func() (bool, string) {
		nodes, err := c.Nodes()
		if err != nil {
			return false, err.Error()
		}
		ready := c.readyNodes(nodes)
		return len(ready) == o.Agents, fmt.Sprintf("ready: %v", ready)
	})
	phase("agents-ready", mark)
	t.Cleanup(c.closeDirect)
	t.Cleanup(func() { c.cleanupStart = time.Now() }) // registered last: runs first
	c.Up = time.Since(began)
	t.Logf("cluster %s up in %s (%s): %d etcd members, %d scheduler(s) on %s, %d agents on network %s (%s)",
		c.Run, c.Up.Round(time.Millisecond), strings.Join(phases, " "), len(c.Etcd.Members),
		o.Schedulers, c.Net.Gateway, o.Agents, c.Net.Name, c.Net.Subnet)
	return c
}

// createNetwork makes a private bridge network with a subnet the engine
// picks from its own pools. Static container addresses need a
// user-configured subnet, so the network is created once to learn a free
// subnet and then re-created with that subnet spelled out.
func (c *Cluster) createNetwork(ctx context.Context) Network {
	c.t.Helper()
	name := "persys-cluster-" + c.Run
	labels := map[string]string{labelRun: c.Run}
	var lastErr error
	for attempt := range 5 {
		probe, err := c.Docker.NetworkCreate(ctx, name, client.NetworkCreateOptions{Driver: "bridge", Labels: labels})
		if err != nil {
			c.t.Fatalf("create network %s: %v", name, err)
		}
		infoRes, err := c.Docker.NetworkInspect(ctx, probe.ID, client.NetworkInspectOptions{})
		info := infoRes.Network
		if _, rmErr := c.Docker.NetworkRemove(ctx, probe.ID, client.NetworkRemoveOptions{}); rmErr != nil {
			c.t.Fatalf("remove probe network %s: %v", name, rmErr)
		}
		if err != nil {
			c.t.Fatalf("inspect network %s: %v", name, err)
		}
		if len(info.IPAM.Config) == 0 {
			c.t.Fatalf("network %s: the engine assigned no IPv4 subnet", name)
		}
		sub := info.IPAM.Config[0].Subnet
		if !sub.IsValid() {
			c.t.Fatalf("network %s: the engine assigned no valid subnet", name)
		}
		gw := info.IPAM.Config[0].Gateway
		if !gw.IsValid() {
			var err error
			gw, err = hostInSubnet(sub, 1)
			if err != nil {
				c.t.Fatal(err)
			}
		}
		created, err := c.Docker.NetworkCreate(ctx, name, client.NetworkCreateOptions{
			Driver: "bridge", Labels: labels,
			IPAM: &network.IPAM{Config: []network.IPAMConfig{{Subnet: sub, Gateway: gw}}},
		})
		if err != nil {
			// Another network took the subnet in between: try again.
			lastErr = err
			c.t.Logf("create network %s with %s (attempt %d): %v", name, sub, attempt+1, err)
			continue
		}
		return Network{ID: created.ID, Name: name, Subnet: sub, Gateway: gw}
	}
	c.t.Fatalf("create network %s: %v", name, lastErr)
	return Network{}
}

// hostInSubnet is the n-th address of the subnet.
func hostInSubnet(p netip.Prefix, n int) (netip.Addr, error) {
	a := p.Masked().Addr()
	for range n {
		a = a.Next()
	}
	if !p.Contains(a) || !a.IsValid() {
		return netip.Addr{}, fmt.Errorf("subnet %s has no host number %d", p, n)
	}
	return a, nil
}

// issueCertificates issues the daemons' identities with the cluster's CA
// that Start made.
func (c *Cluster) issueCertificates() {
	c.t.Helper()
	gw := c.Net.Gateway.String()
	for i := range c.Opts.Schedulers {
		c.run(c.persys, "ca", "issue", "--dir", c.pkiDir, "--role", "scheduler", "--name", fmt.Sprintf("scheduler-%d", i+1),
			"--ip", gw, "--ip", "127.0.0.1", "--dns", "localhost")
	}
	c.run(c.persys, "ca", "issue", "--dir", c.pkiDir, "--role", "gateway", "--name", "gateway", "--ip", "127.0.0.1", "--dns", "localhost")
	c.run(c.persys, "ca", "issue", "--dir", c.pkiDir, "--role", "admin", "--name", "admin")
	for _, a := range c.Agents {
		c.run(c.persys, "ca", "issue", "--dir", c.pkiDir, "--role", "agent", "--name", a.NodeID, "--ip", a.IP.String())
	}
}

func (c *Cluster) certFlags(name string) []string {
	return []string{"--ca", filepath.Join(c.pkiDir, "ca.crt"),
		"--cert", filepath.Join(c.pkiDir, name+".crt"), "--key", filepath.Join(c.pkiDir, name+".key")}
}

func (c *Cluster) run(bin string, args ...string) string {
	c.t.Helper()
	out, err := exec.Command(bin, args...).CombinedOutput()
	if err != nil {
		c.t.Fatalf("%s %s: %v\n%s", filepath.Base(bin), strings.Join(args, " "), err, out)
	}
	return string(out)
}

// freeAddr is host:port with a port the kernel just handed out on host.
func freeAddr(t *testing.T, host string) string {
	t.Helper()
	return freeport.Addr(t, host)
}

// flagValue returns the value after flag in args.
func flagValue(args []string, flag string) string {
	if i := slices.Index(args, flag); i >= 0 && i+1 < len(args) {
		return args[i+1]
	}
	return ""
}

func (c *Cluster) startProc(name string, args []string) *Proc {
	c.t.Helper()
	return c.startProcOf(c.persys, nil, name, args)
}

// startProcOf starts bin with env added to this process's environment.
func (c *Cluster) startProcOf(bin string, env []string, name string, args []string) *Proc {
	c.t.Helper()
	p := &Proc{Name: name, bin: bin, env: env, args: args, done: make(chan struct{}),
		Addr: flagValue(args, "--listen"), Metrics: flagValue(args, "--metrics-listen")}
	p.cmd = exec.Command(bin, args...)
	if len(env) > 0 {
		p.cmd.Env = append(os.Environ(), env...)
	}
	p.cmd.Stdout, p.cmd.Stderr = procWriter{p}, procWriter{p}
	if err := p.cmd.Start(); err != nil {
		c.t.Fatalf("start %s: %v", name, err)
	}
	go func() { _ = p.cmd.Wait(); close(p.done) }()
	c.mu.Lock()
	c.procs = append(c.procs, p)
	c.mu.Unlock()
	c.t.Cleanup(func() {
		if err := p.Stop(); err != nil {
			c.t.Error(err)
		}
		if c.t.Failed() {
			c.t.Logf("---- %s log (tail) ----\n%s", name, tail(p.Output(), 40))
		}
		logName := name
		if p.restart > 0 {
			// Each start its own file: a killed scheduler's log is the
			// one that shows where it died.
			logName = fmt.Sprintf("%s.%d", name, p.restart)
		}
		c.keepLog(logName, p.Output())
	})
	return p
}

// envLogs, when set, names a folder where every daemon's and agent's full
// log is written when its cluster ends, as <run>-<name>.log.
const envLogs = "PERSYS_CLUSTER_LOGS"

// keepLog writes a full log to $PERSYS_CLUSTER_LOGS, when set.
func (c *Cluster) keepLog(name, content string) {
	dir := os.Getenv(envLogs)
	if dir == "" {
		return
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		c.t.Logf("keep log %s: %v", name, err)
		return
	}
	path := filepath.Join(dir, c.Run+"-"+name+".log")
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		c.t.Logf("keep log %s: %v", name, err)
	}
}

// RestartProc stops p and starts it again with the same command line.
func (c *Cluster) RestartProc(p *Proc) *Proc {
	c.t.Helper()
	if err := p.Stop(); err != nil {
		c.t.Fatal(err)
	}
	np := c.startProcOf(p.bin, p.env, p.Name, p.args)
	np.restart = p.restart + 1
	for i, s := range c.Schedulers {
		if s == p {
			c.Schedulers[i] = np
		}
	}
	if c.Gateway == p {
		c.Gateway = np
	}
	return np
}

func (c *Cluster) waitHTTP(p *Proc, path string, timeout time.Duration) {
	c.t.Helper()
	hc := http.Client{Timeout: 2 * time.Second}
	c.WaitFor(p.Name+path, timeout, func() (bool, string) {
		resp, err := hc.Get("http://" + p.Metrics + path)
		if err != nil {
			return false, err.Error()
		}
		_ = resp.Body.Close()
		return resp.StatusCode == http.StatusOK, resp.Status
	})
}

func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// ---- agents ---------------------------------------------------------------

// createAgent creates and starts a's container on the cluster network with
// its fixed address, the engine's socket and its certificates.
func (c *Cluster) createAgent(ctx context.Context, a *Agent, schedulers string) {
	c.t.Helper()
	if err := os.MkdirAll(a.dataDir, 0o700); err != nil {
		c.t.Fatal(err)
	}
	args := []string{"agent", "--node-id", a.NodeID,
		"--advertise-address", a.Addr(),
		"--scheduler", schedulers,
		"--ca", agentPKIDir + "/ca.crt", "--cert", agentPKIDir + "/node.crt", "--key", agentPKIDir + "/node.key",
		"--data-dir", agentDataDir, "--metrics-listen", fmt.Sprintf("0.0.0.0:%d", agentMetrics),
		"--heartbeat-interval", c.Opts.HeartbeatInterval.String(), "--labels", "cluster.node=" + a.NodeID}
	args = append(args, c.Opts.AgentFlags...)
	if c.Opts.AgentFlagsFor != nil {
		args = append(args, c.Opts.AgentFlagsFor(slices.Index(c.Agents, a))...)
	}
	bind := func(host, ctr string, ro bool) string {
		if ro {
			return host + ":" + ctr + ":ro"
		}
		return host + ":" + ctr
	}
	created, err := c.Docker.ContainerCreate(ctx, client.ContainerCreateOptions{
		Config: &container.Config{
			Image: c.nodeImageID, Cmd: args, Hostname: a.NodeID,
			Labels: map[string]string{labelRun: c.Run, labelRole: "agent"},
		},
		HostConfig: &container.HostConfig{
			NetworkMode: container.NetworkMode(c.Net.Name),
			Binds: []string{
				bind(c.engineSocket(), "/var/run/docker.sock", false),
				bind(filepath.Join(c.pkiDir, "ca.crt"), agentPKIDir+"/ca.crt", true),
				bind(filepath.Join(c.pkiDir, a.NodeID+".crt"), agentPKIDir+"/node.crt", true),
				bind(filepath.Join(c.pkiDir, a.NodeID+".key"), agentPKIDir+"/node.key", true),
				bind(a.dataDir, agentDataDir, false),
			},
		},
		NetworkingConfig: &network.NetworkingConfig{EndpointsConfig: map[string]*network.EndpointSettings{
			c.Net.Name: c.endpoint(a),
		}},
		Name: a.Name,
	})
	if err != nil {
		c.t.Fatalf("create agent container %s: %v", a.Name, err)
	}
	a.ContainerID = created.ID
	if _, err := c.Docker.ContainerStart(ctx, a.ContainerID, client.ContainerStartOptions{}); err != nil {
		c.t.Fatalf("start agent container %s: %v", a.Name, err)
	}
}

// engineSocket is the host path of the engine's unix socket, which agent
// containers mount to drive the host engine.
func (c *Cluster) engineSocket() string {
	c.t.Helper()
	host := c.Docker.DaemonHost()
	path, ok := strings.CutPrefix(host, "unix://")
	if !ok {
		c.t.Fatalf("agent containers need the engine's unix socket; the engine is at %s", host)
	}
	return path
}

func (c *Cluster) endpoint(a *Agent) *network.EndpointSettings {
	return &network.EndpointSettings{IPAMConfig: &network.EndpointIPAMConfig{IPv4Address: a.IP}}
}

// AgentByNode finds the agent of a node id.
func (c *Cluster) AgentByNode(nodeID string) *Agent {
	for _, a := range c.Agents {
		if a.NodeID == nodeID {
			return a
		}
	}
	c.t.Fatalf("no agent for node %q", nodeID)
	return nil
}

// RestartAgent restarts the agent's container (SIGTERM, then start).
func (c *Cluster) RestartAgent(a *Agent) {
	c.t.Helper()
	timeout := 15
	if _, err := c.Docker.ContainerRestart(context.Background(), a.ContainerID, client.ContainerRestartOptions{Timeout: &timeout}); err != nil {
		c.t.Fatalf("restart agent %s: %v", a.NodeID, err)
	}
}

// KillAgent kills the agent's container with SIGKILL; what it started keeps
// running on the engine.
func (c *Cluster) KillAgent(a *Agent) {
	c.t.Helper()
	if _, err := c.Docker.ContainerKill(context.Background(), a.ContainerID, client.ContainerKillOptions{Signal: "SIGKILL"}); err != nil {
		c.t.Fatalf("kill agent %s: %v", a.NodeID, err)
	}
}

// StartAgent starts a stopped agent container again.
func (c *Cluster) StartAgent(a *Agent) {
	c.t.Helper()
	if _, err := c.Docker.ContainerStart(context.Background(), a.ContainerID, client.ContainerStartOptions{}); err != nil {
		c.t.Fatalf("start agent %s: %v", a.NodeID, err)
	}
}

// Partition cuts the agent off the network: it can no longer reach the
// schedulers nor be reached, but it and its workloads keep running.
func (c *Cluster) Partition(a *Agent) {
	c.t.Helper()
	if _, err := c.Docker.NetworkDisconnect(context.Background(), c.Net.ID, client.NetworkDisconnectOptions{Container: a.ContainerID, Force: true}); err != nil {
		c.t.Fatalf("partition %s: %v", a.NodeID, err)
	}
}

// Heal reconnects a partitioned agent with its old address.
func (c *Cluster) Heal(a *Agent) {
	c.t.Helper()
	if _, err := c.Docker.NetworkConnect(context.Background(), c.Net.ID, client.NetworkConnectOptions{Container: a.ContainerID, EndpointConfig: c.endpoint(a)}); err != nil {
		c.t.Fatalf("heal %s: %v", a.NodeID, err)
	}
}

// AgentStartedAt is when the agent's container last started.
func (c *Cluster) AgentStartedAt(a *Agent) time.Time {
	c.t.Helper()
	infoRes, err := c.Docker.ContainerInspect(context.Background(), a.ContainerID, client.ContainerInspectOptions{})
	info := infoRes.Container
	if err != nil {
		c.t.Fatal(err)
	}
	ts, err := time.Parse(time.RFC3339Nano, info.State.StartedAt)
	if err != nil {
		c.t.Fatalf("agent %s StartedAt %q: %v", a.NodeID, info.State.StartedAt, err)
	}
	return ts
}

// AgentLogs is the tail of the agent container's log (lines <= 0: all).
func (c *Cluster) AgentLogs(a *Agent, lines int) string {
	n := "all"
	if lines > 0 {
		n = fmt.Sprint(lines)
	}
	rc, err := c.Docker.ContainerLogs(context.Background(), a.ContainerID,
		client.ContainerLogsOptions{ShowStdout: true, ShowStderr: true, Tail: n})
	if err != nil {
		return err.Error()
	}
	defer rc.Close()
	var out bytes.Buffer
	if _, err := stdcopy.StdCopy(&out, &out, rc); err != nil {
		return out.String() + "\n" + err.Error()
	}
	return out.String()
}

// cleanupTimeout bounds removeContainers' calls to the engine.
const cleanupTimeout = 5 * time.Minute

// removeContainers removes the agents first, so nothing creates workloads
// any more, then every workload container of this run: those with the run
// label and, in case a manifest lacked it, those labelled with one of this
// run's node ids.
func (c *Cluster) removeContainers() {
	// Bounded: an engine that stopped answering (its network mutex once
	// deadlocked while hundreds of burst containers were removed) fails
	// the run in minutes with the calls that hung, not at the suite's
	// timeout.
	ctx, cancel := context.WithTimeout(context.Background(), cleanupTimeout)
	defer cancel()
	for _, a := range c.Agents {
		if a.ContainerID == "" {
			continue
		}
		if c.t.Failed() {
			c.t.Logf("---- agent %s log (tail) ----\n%s", a.NodeID, tail(c.AgentLogs(a, 40), 40))
		}
		if os.Getenv(envLogs) != "" {
			c.keepLog(a.NodeID, c.AgentLogs(a, 0))
		}
	}
	// One removal at a time, though a burst test leaves hundreds: Debian's
	// engine (docker.io 20.10.24) deadlocked twice while they were
	// force-removed four at a time. Its libnetwork takes the bridge
	// network's lock and then the controller's when a container leaves
	// the network (sandbox leave, service records), and the other way
	// round when its store watch handles an endpoint's deletion, so
	// concurrent exits on one network can hang every later network call.
	remove := func(list []container.Summary) {
		for _, ct := range list {
			if _, err := c.Docker.ContainerRemove(ctx, ct.ID, client.ContainerRemoveOptions{Force: true, RemoveVolumes: true}); err != nil && !cerrdefs.IsNotFound(err) {
				c.t.Errorf("cleanup: remove container %s: %v", ct.ID[:12], err)
			}
		}
	}
	list := func(f client.Filters) []container.Summary {
		lRes, err := c.Docker.ContainerList(ctx, client.ContainerListOptions{All: true, Filters: f})
		l := lRes.Items
		if err != nil {
			c.t.Errorf("cleanup: list containers: %v", err)
		}
		return l
	}
	remove(list(make(client.Filters).Add("label", labelRun+"="+c.Run).Add("label", labelRole+"=agent")))
	remove(list(make(client.Filters).Add("label", labelRun+"="+c.Run)))
	var strays []container.Summary
	for _, ct := range list(make(client.Filters).Add("label", "persys.managed=true")) {
		for _, a := range c.Agents {
			if ct.Labels["persys.node"] == a.NodeID {
				strays = append(strays, ct)
			}
		}
	}
	remove(strays)
}

// ---- driving and observing -----------------------------------------------

// Ctl runs persysctl against the cluster's gateway.
func (c *Cluster) Ctl(args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, c.persysctl, append([]string{"--config", c.config}, args...)...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	if ctx.Err() != nil {
		err = fmt.Errorf("persysctl %s timed out: %w", strings.Join(args, " "), ctx.Err())
	}
	return out.String(), err
}

// MustCtl runs persysctl and fails the test when it fails.
func (c *Cluster) MustCtl(args ...string) string {
	c.t.Helper()
	out, err := c.Ctl(args...)
	if err != nil {
		c.t.Fatalf("persysctl %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return out
}

func (c *Cluster) ctlJSON(m proto.Message, args ...string) error {
	out, err := c.Ctl(append(args, "-o", "json")...)
	if err != nil {
		return fmt.Errorf("persysctl %s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(out))
	}
	if err := contract.UnmarshalJSON(protojson.UnmarshalOptions{DiscardUnknown: true}, []byte(out), m); err != nil {
		return fmt.Errorf("decode persysctl %s: %w\n%s", strings.Join(args, " "), err, out)
	}
	return nil
}

// Nodes is `persysctl get nodes`.
func (c *Cluster) Nodes() ([]*persysv1.Node, error) {
	var resp persysv1.ListNodesResponse
	if err := c.ctlJSON(&resp, "get", "nodes"); err != nil {
		return nil, err
	}
	return resp.GetNodes(), nil
}

// Node is `persysctl get node ID`.
func (c *Cluster) Node(id string) (*persysv1.Node, error) {
	var n persysv1.Node
	if err := c.ctlJSON(&n, "get", "node", id); err != nil {
		return nil, err
	}
	return &n, nil
}

// Workloads is `persysctl get workloads -l cluster.run=RUN`, by name.
func (c *Cluster) Workloads() (map[string]*persysv1.WorkloadView, error) {
	var resp persysv1.ListWorkloadsResponse
	if err := c.ctlJSON(&resp, "get", "workloads", "-l", labelRun+"="+c.Run); err != nil {
		return nil, err
	}
	out := map[string]*persysv1.WorkloadView{}
	for _, w := range resp.GetWorkloads() {
		out[w.GetWorkload().GetName()] = w
	}
	return out, nil
}

// Leader is `persysctl get leader`.
func (c *Cluster) Leader() (*persysv1.LeaderInfo, error) {
	var l persysv1.LeaderInfo
	if err := c.ctlJSON(&l, "get", "leader"); err != nil {
		return nil, err
	}
	return &l, nil
}

// EventCounts is `persysctl events`, counted by type, of the events at or
// after since.
func (c *Cluster) EventCounts(since time.Time) map[string]int {
	c.t.Helper()
	var resp persysv1.ListEventsResponse
	if err := c.ctlJSON(&resp, "events", "--limit", "10000"); err != nil {
		c.t.Fatal(err)
	}
	out := map[string]int{}
	for _, e := range resp.GetEvents() {
		if !e.GetTime().AsTime().Before(since) {
			out[e.GetType()]++
		}
	}
	return out
}

// DirectLeader asks the scheduler process p itself (ControlService
// GetLeader over mTLS with the gateway's identity, not through the
// gateway) who leads.
func (c *Cluster) DirectLeader(ctx context.Context, p *Proc) (*persysv1.LeaderInfo, error) {
	c.mu.Lock()
	if c.direct == nil {
		c.direct = map[string]*grpc.ClientConn{}
	}
	conn := c.direct[p.Addr]
	c.mu.Unlock()
	if conn == nil {
		tlsCfg, err := pki.ClientTLS(pki.Files{CA: filepath.Join(c.pkiDir, "ca.crt"),
			Cert: filepath.Join(c.pkiDir, "gateway.crt"), Key: filepath.Join(c.pkiDir, "gateway.key")}, "")
		if err != nil {
			return nil, err
		}
		conn, err = grpc.NewClient(p.Addr, grpc.WithTransportCredentials(credentials.NewTLS(tlsCfg)))
		if err != nil {
			return nil, fmt.Errorf("dial %s: %w", p.Name, err)
		}
		c.mu.Lock()
		if prev := c.direct[p.Addr]; prev != nil {
			_ = conn.Close()
			conn = prev
		} else {
			c.direct[p.Addr] = conn
		}
		c.mu.Unlock()
	}
	return persysv1grpc.NewControlServiceClient(conn).GetLeader(ctx, &persysv1.GetLeaderRequest{})
}

// closeDirect closes DirectLeader's connections.
func (c *Cluster) closeDirect() {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, conn := range c.direct {
		_ = conn.Close()
	}
	c.direct = nil
}

// SchedulerAt finds the scheduler process listening on addr.
func (c *Cluster) SchedulerAt(addr string) *Proc {
	for _, s := range c.Schedulers {
		if s.Addr == addr {
			return s
		}
	}
	return nil
}

func (c *Cluster) readyNodes(nodes []*persysv1.Node) []string {
	var ready []string
	for _, n := range nodes {
		if n.GetState() == persysv1.NodeState_NODE_STATE_READY {
			ready = append(ready, n.GetId())
		}
	}
	sort.Strings(ready)
	return ready
}

// WorkloadSpec is what a test varies in a hello workload's manifest.
type WorkloadSpec struct {
	Image  string // default: the hello image
	CPU    string // default 100m
	Memory string // default 16Mi
}

// ManifestYAML is the manifest of a hello workload (no host ports, so two
// copies of one workload can run on one engine during a move). The run
// label is on the workload (for persysctl -l) and on its container (for
// cleanup and counting).
func (c *Cluster) ManifestYAML(name string, ws WorkloadSpec) []byte {
	if ws.Image == "" {
		ws.Image = c.HelloImg
	}
	if ws.CPU == "" {
		ws.CPU = "100m"
	}
	if ws.Memory == "" {
		ws.Memory = "16Mi"
	}
	return fmt.Appendf(nil, `kind: Workload
metadata:
  name: %[1]s
  labels: {%[2]s: %[3]q}
spec:
  type: container
  container:
    image: %[4]q
    env: {GREETING: %[1]q}
    restartPolicy: on-failure
    labels: {%[2]s: %[3]q}
  resources:
    cpu: %[5]s
    memory: %[6]s
`, name, labelRun, c.Run, ws.Image, ws.CPU, ws.Memory)
}

// ManifestFile writes ManifestYAML to a file and returns its path.
func (c *Cluster) ManifestFile(name string, ws WorkloadSpec) string {
	c.t.Helper()
	path := filepath.Join(c.Dir, name+".yaml")
	if err := os.WriteFile(path, c.ManifestYAML(name, ws), 0o600); err != nil {
		c.t.Fatal(err)
	}
	return path
}

// Manifest writes a default hello workload manifest and returns its path.
func (c *Cluster) Manifest(name string) string { return c.ManifestFile(name, WorkloadSpec{}) }

// ApplyWorkloads applies hello workloads name-1 … name-n with persysctl,
// one after the other (each apply returns once the workload is stored),
// then waits until all of them are RUNNING, and returns their names.
func (c *Cluster) ApplyWorkloads(prefix string, n int) []string {
	c.t.Helper()
	var names []string
	for i := range n {
		name := fmt.Sprintf("%s-%d", prefix, i+1)
		c.MustCtl("apply", "-f", c.Manifest(name))
		names = append(names, name)
	}
	c.waitAllRunning(names, 90*time.Second)
	return names
}

// Client is a gateway client (internal/client, the code persysctl runs) for
// the calls a test makes too often to start a persysctl process for each:
// a burst of applies, a tight poll of the leader.
func (c *Cluster) Client() *gwclient.Client {
	c.t.Helper()
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.api != nil {
		return c.api
	}
	cfg, _, err := gwclient.LoadConfig(c.config)
	if err != nil {
		c.t.Fatal(err)
	}
	cl, err := gwclient.New(cfg)
	if err != nil {
		c.t.Fatal(err)
	}
	c.api = cl
	c.t.Cleanup(cl.Close)
	return cl
}

// RunningContainers lists the running workload containers of this run on
// the engine, by workload name.
func (c *Cluster) RunningContainers() map[string][]container.Summary {
	c.t.Helper()
	return c.workloadContainers(false)
}

// AllContainers lists every workload container of this run on the engine,
// running or not, by workload name.
func (c *Cluster) AllContainers() map[string][]container.Summary {
	c.t.Helper()
	return c.workloadContainers(true)
}

func (c *Cluster) workloadContainers(all bool) map[string][]container.Summary {
	c.t.Helper()
	out, err := c.listWorkloadContainers(all)
	if err != nil {
		c.t.Fatal(err)
	}
	return out
}

// listWorkloadContainers is workloadContainers without failing the test,
// for goroutines.
func (c *Cluster) listWorkloadContainers(all bool) (map[string][]container.Summary, error) {
	f := make(client.Filters).Add("label", labelRun+"="+c.Run).Add("label", "persys.managed=true")
	if !all {
		f.Add("status", "running")
	}
	listRes, err := c.Docker.ContainerList(context.Background(), client.ContainerListOptions{All: all, Filters: f})
	list := listRes.Items
	if err != nil {
		return nil, fmt.Errorf("list workload containers: %w", err)
	}
	out := map[string][]container.Summary{}
	for _, ct := range list {
		name := ct.Labels["persys.workload"]
		out[name] = append(out[name], ct)
	}
	return out, nil
}

// Timing is one measured duration of a scenario.
type Timing struct {
	Name string
	D    time.Duration
}

// Summary is what a test observed at its end. Its String is the line
// `cluster: <scenario> submitted=N lost=N duplicated=N …` that
// scripts/cluster-test.sh collects.
type Summary struct {
	Scenario   string
	Submitted  int // workloads the test submitted
	Lost       int // of those expected RUNNING: no running container on the engine, or not RUNNING by persysctl
	Duplicated int // workloads of this run with more than one running container
	Nodes      int // READY nodes, by persysctl
	// Facts are further key=value observations (retries=12, attempts=4).
	Facts   []string
	Timings []Timing
}

func (s Summary) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "cluster: %s submitted=%d lost=%d duplicated=%d nodes=%d", s.Scenario, s.Submitted, s.Lost, s.Duplicated, s.Nodes)
	for _, f := range s.Facts {
		b.WriteString(" " + f)
	}
	for _, tm := range s.Timings {
		fmt.Fprintf(&b, " %s=%s", tm.Name, tm.D.Round(time.Millisecond))
	}
	return b.String()
}

// Observe counts what really runs: READY nodes and workload states through
// persysctl, running containers per workload on the engine. workloads are
// the names expected to run.
func (c *Cluster) Observe(workloads []string) Summary {
	c.t.Helper()
	nodes, err := c.Nodes()
	if err != nil {
		c.t.Fatal(err)
	}
	ws, err := c.Workloads()
	if err != nil {
		c.t.Fatal(err)
	}
	s := Summary{Nodes: len(c.readyNodes(nodes)), Submitted: len(workloads)}
	running := c.RunningContainers()
	for _, w := range workloads {
		if len(running[w]) == 0 || ws[w].GetStatus().GetState() != runningState {
			s.Lost++
		}
	}
	for _, cts := range running {
		if len(cts) > 1 {
			s.Duplicated++
		}
	}
	return s
}

// results collects every test's summary for the overall line TestMain
// prints.
var results struct {
	mu   sync.Mutex
	list []Summary
}

// Report observes the workloads, names the scenario, adds the timings and
// facts, logs the summary line and records it for the overall line.
func (c *Cluster) Report(scenario string, workloads []string, timings []Timing, facts ...string) Summary {
	c.t.Helper()
	s := c.Observe(workloads)
	s.Scenario, s.Timings, s.Facts = scenario, timings, facts
	return c.Record(s)
}

// Record logs a summary line and records it for the overall line.
func (c *Cluster) Record(s Summary) Summary {
	c.t.Helper()
	c.t.Log(s)
	results.mu.Lock()
	results.list = append(results.list, s)
	results.mu.Unlock()
	return s
}

// overall is the closing line of a run: every scenario's counts summed.
func overall(code int, wall time.Duration) string {
	results.mu.Lock()
	defer results.mu.Unlock()
	var sub, lost, dup int
	names := make([]string, 0, len(results.list))
	for _, s := range results.list {
		sub, lost, dup = sub+s.Submitted, lost+s.Lost, dup+s.Duplicated
		names = append(names, s.Scenario)
	}
	result := "PASS"
	if code != 0 {
		result = "FAIL"
	}
	return fmt.Sprintf("cluster: overall scenarios=%d submitted=%d lost=%d duplicated=%d result=%s wall=%s (%s)",
		len(results.list), sub, lost, dup, result, wall.Round(time.Second), strings.Join(names, ","))
}

// WaitFor polls cond until it holds; after timeout it fails the test with
// the last state cond described. A daemon that exits unexpectedly fails the
// test at once.
func (c *Cluster) WaitFor(what string, timeout time.Duration, cond func() (bool, string)) time.Duration {
	c.t.Helper()
	start := time.Now()
	deadline := start.Add(timeout)
	for {
		ok, state := cond()
		if ok {
			return time.Since(start)
		}
		if time.Now().After(deadline) {
			c.t.Fatalf("timed out after %s waiting for %s; last: %s", timeout, what, state)
		}
		c.mu.Lock()
		procs := slices.Clone(c.procs)
		c.mu.Unlock()
		for _, p := range procs {
			if p.unexpectedExit() {
				c.t.Fatalf("%s exited while waiting for %s:\n%s", p.Name, what, tail(p.Output(), 40))
			}
		}
		time.Sleep(200 * time.Millisecond)
	}
}
