// Package devproc runs, for end-to-end tests, the real persys and
// persysctl binaries: it builds them once per test process, starts persys
// processes with their output kept (shown when the test failed), and runs
// `persys dev` clusters on temporary data dirs and free loopback ports,
// removing what their node left on the Docker engine when the test ends.
// Production code must not import it.
package devproc

import (
	"bytes"
	"context"
	"fmt"
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
	"github.com/persys-dev/compute/internal/testutil/eventually"
	"github.com/persys-dev/compute/internal/testutil/freeport"
	"github.com/persys-dev/compute/internal/testutil/images"
)

// Bins are the paths of the built binaries.
type Bins struct{ Persys, Persysctl string }

var (
	buildOnce sync.Once
	built     Bins
	buildErr  error
)

// Build compiles persys and persysctl once per test process.
func Build(t testing.TB) Bins {
	t.Helper()
	buildOnce.Do(func() {
		root, err := images.ModuleRoot()
		if err != nil {
			buildErr = err
			return
		}
		dir, err := os.MkdirTemp("", "persys-e2e-bin-")
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
		built = Bins{Persys: filepath.Join(dir, "persys"), Persysctl: filepath.Join(dir, "persysctl")}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return built
}

// LockedBuffer is a bytes.Buffer safe for a process's two output streams.
type LockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *LockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *LockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// Proc is one running process with its output.
type Proc struct {
	t    testing.TB
	Name string
	Cmd  *exec.Cmd
	Log  *LockedBuffer
	done chan struct{}
	// LogLines is how much of the log a failed test shows; 40 by default.
	LogLines int
}

// Start runs bin with args; the process is interrupted when the test ends.
func Start(t testing.TB, name, bin string, args ...string) *Proc {
	t.Helper()
	p := &Proc{t: t, Name: name, Cmd: exec.Command(bin, args...), Log: &LockedBuffer{}, done: make(chan struct{}), LogLines: 40}
	p.Cmd.Stdout, p.Cmd.Stderr = p.Log, p.Log
	if err := p.Cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { _ = p.Cmd.Wait(); close(p.done) }()
	t.Cleanup(p.Stop)
	return p
}

// Stop interrupts the process and waits for it (killing it after 20 s);
// a failed test gets the log's tail.
func (p *Proc) Stop() {
	select {
	case <-p.done:
		return
	default:
	}
	_ = p.Cmd.Process.Signal(os.Interrupt)
	select {
	case <-p.done:
	case <-time.After(20 * time.Second):
		_ = p.Cmd.Process.Kill()
		<-p.done
	}
	if p.t.Failed() {
		p.t.Logf("---- %s log ----\n%s", p.Name, Tail(p.Log.String(), p.LogLines))
	}
}

// Kill ends the process as a crash would.
func (p *Proc) Kill() {
	_ = p.Cmd.Process.Kill()
	<-p.done
}

// Exited reports whether the process has ended.
func (p *Proc) Exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// WaitFor polls cond every 250 ms until it holds, p exits (p may be nil)
// or timeout passes; the last two fail the test.
func WaitFor(t testing.TB, p *Proc, what string, timeout time.Duration, cond func() (bool, string)) {
	t.Helper()
	exited := false
	ok, detail := eventually.Within(timeout, 250*time.Millisecond, func() (bool, string) {
		if p != nil && p.Exited() {
			exited = true
			return true, ""
		}
		return cond()
	})
	if exited {
		t.Fatalf("%s exited while waiting for %s; log:\n%s", p.Name, what, Tail(p.Log.String(), 40))
	}
	if !ok {
		t.Fatalf("no %s after %s: %s", what, timeout, detail)
	}
}

// Dev is one `persys dev` cluster: scheduler, gateway and a Docker agent
// in one process, real mTLS, on a temporary data dir.
type Dev struct {
	*Proc
	Dir, Gateway string
	// NodeID is the node's id: the one asked for, or the one WaitReady
	// found.
	NodeID string
	bin    string
	args   []string
}

// StartDev starts `persys dev` named name; nodeID "" lets persys choose.
// When the test ends the containers its node left on docker are removed
// (after the process stopped: a killed dev leaves them running).
func StartDev(t testing.TB, b Bins, name, nodeID string, docker *dockerclient.Client) *Dev {
	t.Helper()
	d := &Dev{Dir: t.TempDir(), Gateway: freeport.Addr(t, "127.0.0.1"), NodeID: nodeID, bin: b.Persys}
	// Registered before the process, so it runs after its stop.
	t.Cleanup(func() {
		if d.NodeID != "" && docker != nil {
			RemoveContainers(docker, d.NodeID)
		}
	})
	d.args = []string{"dev", "--data-dir", d.Dir, "--gateway-listen", d.Gateway,
		"--scheduler-listen", freeport.Addr(t, "127.0.0.1"), "--metrics-port", "0"}
	if nodeID != "" {
		d.args = append(d.args, "--node-id", nodeID)
	}
	d.Proc = Start(t, "persys dev "+name, d.bin, d.args...)
	return d
}

// Restart starts the dev again on its data dir and addresses, after
// Kill: its agent finds what it left running.
func (d *Dev) Restart(t testing.TB) {
	t.Helper()
	d.Proc = Start(t, d.Proc.Name, d.bin, d.args...)
}

// Config is the dev's persysctl config for its admin.
func (d *Dev) Config() string { return filepath.Join(d.Dir, "persysctl.yaml") }

// WaitReady waits until the dev's node is ready and records its id.
func (d *Dev) WaitReady(t testing.TB) {
	t.Helper()
	WaitFor(t, d.Proc, "a ready node in "+d.Name, 90*time.Second, func() (bool, string) {
		id, err := d.readyNode()
		if err != nil {
			return false, err.Error()
		}
		d.NodeID = id
		return true, ""
	})
}

func (d *Dev) readyNode() (string, error) {
	cfg, _, err := client.LoadConfig(d.Config())
	if err != nil {
		return "", err
	}
	c, err := client.New(cfg)
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

// RemoveContainers removes the containers a node left on the engine.
func RemoveContainers(docker *dockerclient.Client, node string) {
	ctx := context.Background()
	res, err := docker.ContainerList(ctx, dockerclient.ContainerListOptions{All: true, Filters: make(dockerclient.Filters).Add("label", "persys.node="+node)})
	if err != nil {
		return
	}
	for _, c := range res.Items {
		_, _ = docker.ContainerRemove(ctx, c.ID, dockerclient.ContainerRemoveOptions{Force: true})
	}
}

// Run runs a binary and returns its combined output and error.
func Run(bin string, args ...string) (string, error) {
	out, err := exec.Command(bin, args...).CombinedOutput()
	return string(out), err
}

// Tail is the last n lines of s.
func Tail(s string, n int) string {
	lines := strings.Split(s, "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
