// Package e2e runs the real binaries — scheduler, gateway and agent as
// separate processes, mTLS on every hop — against the local Docker engine
// and an etcd the test starts, and drives them with persysctl.
package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/client"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/persys-dev/compute/internal/store"
	"github.com/persys-dev/compute/internal/testutil/freeport"
	"github.com/persys-dev/compute/internal/testutil/images"
)

var (
	buildOnce sync.Once
	binDir    string
	buildErr  error
)

// binaries builds persys and persysctl once per test process.
func binaries(t *testing.T) (persys, persysctl string) {
	t.Helper()
	buildOnce.Do(func() {
		binDir, buildErr = os.MkdirTemp("", "persys-e2e-bin-")
		if buildErr != nil {
			return
		}
		_, file, _, _ := runtime.Caller(0)
		root := filepath.Join(filepath.Dir(file), "..", "..")
		for _, cmd := range []string{"persys", "persysctl"} {
			c := exec.Command("go", "build", "-o", filepath.Join(binDir, cmd), "./cmd/"+cmd)
			c.Dir = root
			c.Env = append(os.Environ(), "CGO_ENABLED=0")
			if out, err := c.CombinedOutput(); err != nil {
				buildErr = fmt.Errorf("build %s: %v\n%s", cmd, err, out)
				return
			}
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return filepath.Join(binDir, "persys"), filepath.Join(binDir, "persysctl")
}

func freePort(t *testing.T) int {
	t.Helper()
	return freeport.Port(t, "127.0.0.1")
}

// proc is a daemon started by the test.
type proc struct {
	name string
	args []string
	cmd  *exec.Cmd
	log  *bytes.Buffer
	mu   *sync.Mutex
	done chan struct{}
}

type lockedWriter struct {
	mu *sync.Mutex
	b  *bytes.Buffer
}

func (w lockedWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.b.Write(p)
}

func (p *proc) output() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.log.String()
}

func (p *proc) alive() bool {
	select {
	case <-p.done:
		return false
	default:
		return true
	}
}

// stop sends SIGTERM and waits for the exit.
func (p *proc) stop(t *testing.T) {
	t.Helper()
	if !p.alive() {
		return
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(20 * time.Second):
		_ = p.cmd.Process.Kill()
		<-p.done
		t.Errorf("%s did not stop on SIGTERM", p.name)
	}
}

// cluster is one scheduler, one gateway and one agent.
type cluster struct {
	t          *testing.T
	dir        string
	persys     string
	persysctl  string
	etcd       *clientv3.Client
	docker     *client.Client
	image      string
	nodeID     string
	schedAddr  string
	gwAddr     string
	metrics    map[string]string
	config     string
	pkiDir     string
	procs      map[string]*proc
	agentFlags []string
	// poolDir is the agent's storage pool "default".
	poolDir string
}

func newCluster(t *testing.T) *cluster {
	t.Helper()
	return newClusterWith(t, clusterOptions{})
}

// clusterOptions change where the cluster's parts run.
type clusterOptions struct {
	// nat, when set, runs the agent in that network namespace, which
	// accepts no connection from outside: the scheduler listens on the
	// host's side of the namespace's link and cannot reach the agent.
	nat *natHost
}

func newClusterWith(t *testing.T, opts clusterOptions) *cluster {
	t.Helper()
	persys, persysctl := binaries(t)
	cli, image := images.HelloImage(t)

	dir := t.TempDir()
	c := &cluster{
		t: t, dir: dir, persys: persys, persysctl: persysctl, docker: cli, image: image,
		nodeID:    fmt.Sprintf("e2e-%d", time.Now().UnixNano()%1_000_000),
		schedAddr: fmt.Sprintf("127.0.0.1:%d", freePort(t)),
		gwAddr:    fmt.Sprintf("127.0.0.1:%d", freePort(t)),
		metrics: map[string]string{
			"scheduler": fmt.Sprintf("127.0.0.1:%d", freePort(t)),
			"gateway":   fmt.Sprintf("127.0.0.1:%d", freePort(t)),
			"agent":     fmt.Sprintf("127.0.0.1:%d", freePort(t)),
		},
		pkiDir:  filepath.Join(dir, "pki"),
		procs:   map[string]*proc{},
		poolDir: filepath.Join(dir, "pool"),
	}
	if err := os.MkdirAll(c.poolDir, 0o755); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.removeContainers)
	schedIPs := []string{"--ip", "127.0.0.1"}
	if opts.nat != nil {
		c.schedAddr = fmt.Sprintf("%s:%d", opts.nat.hostIP, freeport.Port(t, opts.nat.hostIP))
		c.metrics["agent"] = fmt.Sprintf("%s:%d", opts.nat.insideIP, 9103)
		schedIPs = append(schedIPs, "--ip", opts.nat.hostIP)
	}

	// Identities, issued with the CA's own command.
	c.run(persys, "ca", "init", "--dir", c.pkiDir)
	for _, id := range []struct{ role, name string }{
		{"scheduler", "scheduler"}, {"gateway", "gateway"}, {"agent", c.nodeID}, {"admin", "admin"},
	} {
		c.run(persys, append([]string{"ca", "issue", "--dir", c.pkiDir, "--role", id.role, "--name", id.name,
			"--dns", "localhost"}, schedIPs...)...)
	}
	ca := filepath.Join(c.pkiDir, "ca.crt")
	cert := func(n string) []string {
		return []string{"--ca", ca, "--cert", filepath.Join(c.pkiDir, n+".crt"), "--key", filepath.Join(c.pkiDir, n+".key")}
	}

	// etcd serves the scheduler's certificate and answers only
	// certificates of the CA, as the embedded one of persys scheduler.
	emb, err := store.StartEmbedded(store.EmbeddedOptions{Dir: filepath.Join(dir, "etcd"), UnsafeNoFsync: true,
		TLS: &store.EmbeddedTLS{CAFile: ca, CertFile: filepath.Join(c.pkiDir, "scheduler.crt"), KeyFile: filepath.Join(c.pkiDir, "scheduler.key")}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(emb.Close)
	if c.etcd, err = emb.Client(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.etcd.Close() })

	keyFile := filepath.Join(dir, "secrets.key")
	c.run(persys, "secrets-key", "generate", "--file", keyFile)
	etcdCert := []string{"--etcd-ca", ca, "--etcd-cert", filepath.Join(c.pkiDir, "scheduler.crt"), "--etcd-key", filepath.Join(c.pkiDir, "scheduler.key")}
	// --data-dir holds the scheduler's Git cache: in the test's folder,
	// never the working directory.
	c.start("scheduler", append(append([]string{"scheduler", "--listen", c.schedAddr, "--secrets-key-file", keyFile,
		"--data-dir", filepath.Join(dir, "scheduler-data"),
		"--etcd-endpoints", strings.Join(emb.Endpoints(), ","), "--metrics-listen", c.metrics["scheduler"],
		"--heartbeat-interval", "1s", "--lease-ttl", "4s"}, cert("scheduler")...), etcdCert...)...)
	c.start("gateway", append([]string{"gateway", "--listen", c.gwAddr, "--scheduler", c.schedAddr,
		"--metrics-listen", c.metrics["gateway"]}, cert("gateway")...)...)
	c.agentFlags = append([]string{"agent", "--node-id", c.nodeID, "--scheduler", c.schedAddr,
		"--data-dir", filepath.Join(dir, "agent"), "--metrics-listen", c.metrics["agent"], "--labels", "zone=e2e",
		"--heartbeat-interval", "1s", "--storage-pool", "default=" + c.poolDir}, cert(c.nodeID)...)
	if opts.nat != nil {
		// No --advertise-address: the agent finds its own, the local
		// address of its route to the scheduler.
		c.startIn(opts.nat.name, "agent", c.agentFlags...)
	} else {
		c.agentFlags = append(c.agentFlags, "--advertise-address", "127.0.0.1")
		c.start("agent", c.agentFlags...)
	}

	c.config = filepath.Join(dir, "persysctl.yaml")
	cfg := fmt.Sprintf("endpoint: https://%s\nca: %s\ncert: %s\nkey: %s\n", c.gwAddr, ca,
		filepath.Join(c.pkiDir, "admin.crt"), filepath.Join(c.pkiDir, "admin.key"))
	if err := os.WriteFile(c.config, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	c.waitFor("node "+c.nodeID+" ready", 60*time.Second, func() bool {
		out, err := c.ctl("get", "nodes", "-o", "json")
		return err == nil && strings.Contains(out, c.nodeID) && strings.Contains(out, `"READY"`)
	})
	return c
}

func (c *cluster) run(bin string, args ...string) string {
	c.t.Helper()
	out, err := exec.Command(bin, args...).CombinedOutput()
	if err != nil {
		c.t.Fatalf("%s %s: %v\n%s", filepath.Base(bin), strings.Join(args, " "), err, out)
	}
	return string(out)
}

func (c *cluster) start(name string, args ...string) *proc {
	c.t.Helper()
	return c.startIn("", name, args...)
}

// startIn starts persys in network namespace netns ("": the test's own).
// ip netns exec execs persys in place, so signals reach it directly.
func (c *cluster) startIn(netns, name string, args ...string) *proc {
	c.t.Helper()
	p := &proc{name: name, args: args, log: &bytes.Buffer{}, mu: &sync.Mutex{}, done: make(chan struct{})}
	p.cmd = exec.Command(c.persys, args...)
	if netns != "" {
		p.cmd = exec.Command("ip", append([]string{"netns", "exec", netns, c.persys}, args...)...)
	}
	p.cmd.Stdout = lockedWriter{p.mu, p.log}
	p.cmd.Stderr = lockedWriter{p.mu, p.log}
	if err := p.cmd.Start(); err != nil {
		c.t.Fatalf("start %s: %v", name, err)
	}
	go func() { _ = p.cmd.Wait(); close(p.done) }()
	c.procs[name] = p
	c.t.Cleanup(func() {
		p.stop(c.t)
		if c.t.Failed() {
			c.t.Logf("---- %s log ----\n%s", name, tail(p.output(), 60))
		}
	})
	return p
}

func tail(s string, n int) string {
	lines := strings.Split(s, "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// ctl runs persysctl against the cluster and returns stdout+stderr.
func (c *cluster) ctl(args ...string) (string, error) {
	cmd := exec.Command(c.persysctl, append([]string{"--config", c.config}, args...)...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	done := make(chan error, 1)
	if err := cmd.Start(); err != nil {
		return "", err
	}
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		return out.String(), err
	case <-ctx.Done():
		_ = cmd.Process.Kill()
		return out.String(), fmt.Errorf("persysctl %v timed out", args)
	}
}

func (c *cluster) mustCtl(args ...string) string {
	c.t.Helper()
	out, err := c.ctl(args...)
	if err != nil {
		c.t.Fatalf("persysctl %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return out
}

func (c *cluster) waitFor(what string, timeout time.Duration, cond func() bool) {
	c.t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			c.t.Fatalf("timed out after %s waiting for %s", timeout, what)
		}
		for name, p := range c.procs {
			if !p.alive() {
				c.t.Fatalf("%s exited while waiting for %s:\n%s", name, what, tail(p.output(), 40))
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// workload is the JSON view persysctl prints with -o json.
type workloadView struct {
	Workload struct {
		Name     string            `json:"name"`
		UID      string            `json:"uid"`
		Revision json.Number       `json:"revision"`
		Labels   map[string]string `json:"labels"`
	} `json:"workload"`
	Status struct {
		State     string `json:"state"`
		Reason    string `json:"reason"`
		Message   string `json:"message"`
		NodeID    string `json:"nodeId"`
		RuntimeID string `json:"runtimeId"`
		Revision  json.Number
	} `json:"status"`
}

func (c *cluster) getWorkload(name string) (workloadView, bool) {
	out, err := c.ctl("get", "workload", name, "-o", "json")
	var v workloadView
	if err != nil {
		return v, false
	}
	if jerr := json.Unmarshal([]byte(out), &v); jerr != nil {
		c.t.Fatalf("decode workload view: %v\n%s", jerr, out)
	}
	return v, true
}

// containers lists the managed containers of workload name.
func (c *cluster) containers(name string) []container.Summary {
	c.t.Helper()
	listRes, err := c.docker.ContainerList(context.Background(), client.ContainerListOptions{All: true,
		Filters: make(client.Filters).Add("label", "persys.workload="+name)})
	list := listRes.Items
	if err != nil {
		c.t.Fatal(err)
	}
	return list
}

func (c *cluster) removeContainers() {
	// Whatever the test left on its node: containers (compose ones too),
	// compose networks and QEMU processes, even when the test failed
	// before it deleted its workloads.
	ctx := context.Background()
	listRes, err := c.docker.ContainerList(ctx, client.ContainerListOptions{All: true,
		Filters: make(client.Filters).Add("label", "persys.managed=true").Add("label", "persys.node="+c.nodeID)})
	list := listRes.Items
	if err == nil {
		for _, ct := range list {
			_, _ = c.docker.ContainerRemove(ctx, ct.ID, client.ContainerRemoveOptions{Force: true, RemoveVolumes: true})
		}
	}
	if nets, err := c.docker.NetworkList(ctx, client.NetworkListOptions{}); err == nil {
		for _, n := range nets.Items {
			if strings.HasSuffix(n.Labels["com.docker.compose.project"], "-"+c.nodeID) {
				_, _ = c.docker.NetworkRemove(ctx, n.ID, client.NetworkRemoveOptions{})
			}
		}
	}
	pidfiles, _ := filepath.Glob(filepath.Join(c.dir, "agent", "vms", "*", "qemu.pid"))
	for _, f := range pidfiles {
		data, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		if pid, err := strconv.Atoi(strings.TrimSpace(string(data))); err == nil && pid > 0 {
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
	}
}

// etcdKeys lists the keys under the cluster prefix that mention name.
// clusterID is the cluster's id as the scheduler stored it in etcd.
func (c *cluster) clusterID() string {
	c.t.Helper()
	resp, err := c.etcd.Get(context.Background(), "/persys/cluster-id")
	if err != nil || len(resp.Kvs) == 0 {
		c.t.Fatalf("cluster id in etcd: %v (%d keys)", err, len(resp.Kvs))
	}
	return string(resp.Kvs[0].Value)
}

func (c *cluster) etcdKeys(name string) []string {
	c.t.Helper()
	resp, err := c.etcd.Get(context.Background(), "/persys/", clientv3.WithPrefix(), clientv3.WithKeysOnly())
	if err != nil {
		c.t.Fatal(err)
	}
	var keys []string
	for _, kv := range resp.Kvs {
		k := string(kv.Key)
		if strings.HasSuffix(k, "/"+name) {
			keys = append(keys, k)
		}
	}
	return keys
}

func httpGet(url string) (string, error) {
	cl := http.Client{Timeout: 3 * time.Second}
	resp, err := cl.Get(url)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	var b bytes.Buffer
	_, _ = b.ReadFrom(resp.Body)
	if resp.StatusCode != 200 {
		return b.String(), fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	return b.String(), nil
}
