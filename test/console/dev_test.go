package console

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/moby/moby/client"

	persysv1 "github.com/persys-dev/compute/api/persys/v1"
	pclient "github.com/persys-dev/compute/internal/client"
	"github.com/persys-dev/compute/internal/testutil/freeport"
	"github.com/persys-dev/compute/internal/testutil/images"
)

// dev is one `persys dev` (scheduler, gateway and a Docker agent in one
// process, real mTLS) on a temporary data dir.
type dev struct {
	t         *testing.T
	persysctl string
	dir, gw   string
	image     string
	docker    *client.Client
	proc      *exec.Cmd
	log       *lockedBuffer
	done      chan struct{}
	nodeID    string
}

type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// build compiles persys and persysctl into a temporary folder.
func build(t *testing.T) (persys, persysctl string) {
	t.Helper()
	root, err := images.ModuleRoot()
	if err != nil {
		t.Fatal(err)
	}
	bin := t.TempDir()
	for _, name := range []string{"persys", "persysctl"} {
		c := exec.Command("go", "build", "-o", filepath.Join(bin, name), "./cmd/"+name)
		c.Dir = root
		c.Env = append(os.Environ(), "CGO_ENABLED=0")
		if out, err := c.CombinedOutput(); err != nil {
			t.Fatalf("build %s: %v\n%s", name, err, out)
		}
	}
	return filepath.Join(bin, "persys"), filepath.Join(bin, "persysctl")
}

// startDev runs persys dev and waits until its node is ready.
func startDev(t *testing.T) *dev {
	t.Helper()
	cli, image := images.PollerImage(t)
	persys, persysctl := build(t)
	d := &dev{t: t, persysctl: persysctl, dir: t.TempDir(), image: image, docker: cli,
		gw: freeport.Addr(t, "127.0.0.1"), log: &lockedBuffer{}, done: make(chan struct{})}
	d.proc = exec.Command(persys, "dev", "--data-dir", d.dir, "--gateway-listen", d.gw,
		"--scheduler-listen", freeport.Addr(t, "127.0.0.1"), "--metrics-port", "0")
	d.proc.Stdout, d.proc.Stderr = d.log, d.log
	if err := d.proc.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { _ = d.proc.Wait(); close(d.done) }()
	t.Cleanup(d.cleanup)
	d.waitNodeReady()
	return d
}

func (d *dev) waitNodeReady() {
	d.t.Helper()
	deadline := time.Now().Add(90 * time.Second)
	detail := ""
	for time.Now().Before(deadline) {
		select {
		case <-d.done:
			d.t.Fatalf("persys dev exited; log:\n%s", tail(d.log.String(), 40))
		case <-time.After(200 * time.Millisecond):
		}
		id, err := d.readyNode()
		if err == nil && id != "" {
			d.nodeID = id
			return
		}
		if err != nil {
			detail = err.Error()
		}
	}
	d.t.Fatalf("no ready node after 90s: %s; log:\n%s", detail, tail(d.log.String(), 40))
}

func (d *dev) readyNode() (string, error) {
	cfg, _, err := pclient.LoadConfig(filepath.Join(d.dir, "persysctl.yaml"))
	if err != nil {
		return "", err
	}
	c, err := pclient.New(cfg)
	if err != nil {
		return "", err
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	nodes, err := c.ListNodes(ctx)
	if err != nil {
		return "", err
	}
	for _, n := range nodes.GetNodes() {
		if n.GetState() == persysv1.NodeState_NODE_STATE_READY {
			return n.GetId(), nil
		}
	}
	return "", fmt.Errorf("%d nodes, none ready", len(nodes.GetNodes()))
}

func (d *dev) cleanup() {
	if d.proc.Process != nil {
		_ = d.proc.Process.Signal(os.Interrupt)
		select {
		case <-d.done:
		case <-time.After(20 * time.Second):
			_ = d.proc.Process.Kill()
			<-d.done
		}
	}
	if d.t.Failed() {
		d.t.Logf("---- persys dev log ----\n%s", tail(d.log.String(), 80))
	}
	if d.nodeID == "" {
		return
	}
	// Containers this dev's node made (labelled with its node id).
	f := make(client.Filters).Add("label", "persys.node="+d.nodeID)
	res, err := d.docker.ContainerList(context.Background(), client.ContainerListOptions{All: true, Filters: f})
	if err != nil {
		return
	}
	for _, c := range res.Items {
		_, _ = d.docker.ContainerRemove(context.Background(), c.ID, client.ContainerRemoveOptions{Force: true})
	}
}

func (d *dev) ctl(args ...string) string {
	d.t.Helper()
	cmd := exec.Command(d.persysctl, append([]string{"--config", filepath.Join(d.dir, "persysctl.yaml")}, args...)...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		d.t.Fatalf("persysctl %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

var tokenLine = regexp.MustCompile(`(?m)^Token:\s+(psy_\S+)$`)

// token creates an API token for user with role.
func (d *dev) token(user, role string) string {
	d.t.Helper()
	out := d.ctl("token", "create", "--user", user, "--role", role, "--ttl", "1h")
	m := tokenLine.FindStringSubmatch(out)
	if m == nil {
		d.t.Fatalf("no token in persysctl output:\n%s", out)
	}
	return m[1]
}

// httpClient trusts the cluster CA and presents no certificate.
func (d *dev) httpClient() *http.Client {
	d.t.Helper()
	cfg, _, err := pclient.LoadConfig(filepath.Join(d.dir, "persysctl.yaml"))
	if err != nil {
		d.t.Fatal(err)
	}
	ca := cfg.CA
	if !filepath.IsAbs(ca) {
		ca = filepath.Join(d.dir, ca)
	}
	pem, err := os.ReadFile(ca)
	if err != nil {
		d.t.Fatalf("cluster CA: %v", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		d.t.Fatal("cluster CA: no certificate in " + ca)
	}
	return &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}},
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
}

func tail(s string, n int) string {
	lines := strings.Split(s, "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
