package federation

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	dockerclient "github.com/moby/moby/client"

	persysv1 "github.com/persys-dev/compute/api/persys/v1"
	"github.com/persys-dev/compute/internal/client"
	"github.com/persys-dev/compute/internal/pki"
	"github.com/persys-dev/compute/internal/testutil/eventually"
	"github.com/persys-dev/compute/internal/testutil/freeport"
	"github.com/persys-dev/compute/internal/testutil/images"
)

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

// bins are the persys and persysctl binaries, built once per test process.
type bins struct{ persys, persysctl string }

var (
	buildOnce sync.Once
	built     bins
	buildErr  error
)

func build(t *testing.T) bins {
	t.Helper()
	buildOnce.Do(func() {
		root, err := images.ModuleRoot()
		if err != nil {
			buildErr = err
			return
		}
		dir, err := os.MkdirTemp("", "persys-federation-e2e-")
		if err != nil {
			buildErr = err
			return
		}
		for _, name := range []string{"persys", "persysctl"} {
			c := exec.Command("go", "build", "-o", filepath.Join(dir, name), "./cmd/"+name)
			c.Dir = root
			c.Env = append(os.Environ(), "CGO_ENABLED=0")
			if out, err := c.CombinedOutput(); err != nil {
				buildErr = fmt.Errorf("build %s: %v\n%s", name, err, out)
				return
			}
		}
		built = bins{persys: filepath.Join(dir, "persys"), persysctl: filepath.Join(dir, "persysctl")}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return built
}

// proc is one persys process with its log.
type proc struct {
	t    *testing.T
	name string
	cmd  *exec.Cmd
	log  *lockedBuffer
	done chan struct{}
}

func start(t *testing.T, name, bin string, args ...string) *proc {
	t.Helper()
	p := &proc{t: t, name: name, cmd: exec.Command(bin, args...), log: &lockedBuffer{}, done: make(chan struct{})}
	p.cmd.Stdout, p.cmd.Stderr = p.log, p.log
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { _ = p.cmd.Wait(); close(p.done) }()
	t.Cleanup(p.stop)
	return p
}

// stop interrupts the process and waits for it (killing it after 20 s).
func (p *proc) stop() {
	select {
	case <-p.done:
		return
	default:
	}
	_ = p.cmd.Process.Signal(os.Interrupt)
	select {
	case <-p.done:
	case <-time.After(20 * time.Second):
		_ = p.cmd.Process.Kill()
		<-p.done
	}
	if p.t.Failed() {
		p.t.Logf("---- %s log ----\n%s", p.name, tail(p.log.String(), 40))
	}
}

// kill ends the process as a crash would.
func (p *proc) kill() {
	_ = p.cmd.Process.Kill()
	<-p.done
}

func (p *proc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// member is one `persys dev` cluster.
type member struct {
	*proc
	dir, gateway string
	bin          string
	args         []string
}

func startMember(t *testing.T, b bins, name string, docker *dockerclient.Client) *member {
	t.Helper()
	m := &member{dir: t.TempDir(), gateway: freeport.Addr(t, "127.0.0.1")}
	node := fmt.Sprintf("fed-%s-%d", name, os.Getpid())
	// Registered before the process, so it runs after its stop: a killed
	// member leaves its containers behind.
	t.Cleanup(func() { removeContainers(docker, node) })
	m.bin, m.args = b.persys, []string{"dev", "--data-dir", m.dir, "--node-id", node,
		"--gateway-listen", m.gateway, "--scheduler-listen", freeport.Addr(t, "127.0.0.1"), "--metrics-port", "0"}
	m.proc = start(t, "persys dev "+name, m.bin, m.args...)
	return m
}

// restart starts the member again on its data dir and addresses, after
// kill: its agent finds what it left running.
func (m *member) restart(t *testing.T) {
	t.Helper()
	m.proc = start(t, m.proc.name, m.bin, m.args...)
}

func (m *member) config() string { return filepath.Join(m.dir, "persysctl.yaml") }

// waitReady waits until the member's node is ready.
func (m *member) waitReady(t *testing.T) {
	t.Helper()
	waitFor(t, m.proc, "a ready node in "+m.name, 90*time.Second, func() (bool, string) {
		cfg, _, err := client.LoadConfig(m.config())
		if err != nil {
			return false, err.Error()
		}
		c, err := client.New(cfg)
		if err != nil {
			return false, err.Error()
		}
		defer c.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		nodes, err := c.ListNodes(ctx)
		if err != nil {
			return false, err.Error()
		}
		for _, n := range nodes.GetNodes() {
			if n.GetState() == persysv1.NodeState_NODE_STATE_READY {
				return true, ""
			}
		}
		return false, fmt.Sprintf("%d nodes, none ready", len(nodes.GetNodes()))
	})
}

// expiredIdentity signs, with the member's CA key, an operator
// certificate for the federation that expired an hour ago, and writes it.
func (m *member) expiredIdentity(t *testing.T, dir string) (cert, key string) {
	t.Helper()
	ca, err := pki.LoadCA(filepath.Join(m.dir, "pki"))
	if err != nil {
		t.Fatal(err)
	}
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()),
		Subject:      pkix.Name{CommonName: "federation", OrganizationalUnit: []string{string(pki.RoleOperator)}},
		NotBefore:    time.Now().Add(-2 * time.Hour), NotAfter: time.Now().Add(-time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.Cert, &k.PublicKey, ca.Key)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalECPrivateKey(k)
	if err != nil {
		t.Fatal(err)
	}
	cert, key = filepath.Join(dir, "expired.crt"), filepath.Join(dir, "expired.key")
	if err := os.WriteFile(cert, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(key, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder}), 0o600); err != nil {
		t.Fatal(err)
	}
	return cert, key
}

// run runs a binary and returns its combined output and error.
func run(bin string, args ...string) (string, error) {
	out, err := exec.Command(bin, args...).CombinedOutput()
	return string(out), err
}

// must runs a binary and fails the test when it fails.
func must(t *testing.T, bin string, args ...string) string {
	t.Helper()
	out, err := run(bin, args...)
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", filepath.Base(bin), strings.Join(args, " "), err, out)
	}
	return out
}

// waitFor polls cond every 250 ms until it holds, p exits or timeout.
func waitFor(t *testing.T, p *proc, what string, timeout time.Duration, cond func() (bool, string)) {
	t.Helper()
	exited := false
	ok, detail := eventually.Within(timeout, 250*time.Millisecond, func() (bool, string) {
		if p != nil && p.exited() {
			exited = true
			return true, ""
		}
		return cond()
	})
	if exited {
		t.Fatalf("%s exited while waiting for %s; log:\n%s", p.name, what, tail(p.log.String(), 40))
	}
	if !ok {
		t.Fatalf("no %s after %s: %s", what, timeout, detail)
	}
}

func tail(s string, n int) string {
	lines := strings.Split(s, "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// removeContainers removes what a node of a dev member left on the engine.
func removeContainers(docker *dockerclient.Client, node string) {
	ctx := context.Background()
	res, err := docker.ContainerList(ctx, dockerclient.ContainerListOptions{All: true, Filters: make(dockerclient.Filters).Add("label", "persys.node="+node)})
	if err != nil {
		return
	}
	for _, c := range res.Items {
		_, _ = docker.ContainerRemove(ctx, c.ID, dockerclient.ContainerRemoveOptions{Force: true})
	}
}
