// Package privatedocker runs a Docker engine of a test's own: its own
// data and exec roots, its own socket, inside a network namespace the test
// creates. A test can then restart or kill the engine under running
// workloads without touching the machine's engine, which other test
// packages use at the same time.
package privatedocker

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/moby/moby/client"

	"github.com/persys-dev/compute/internal/testutil/need"
)

// readyBound is how long an engine may take to answer after it starts.
const readyBound = 60 * time.Second

// Engine is one private Docker engine.
type Engine struct {
	// Host is the DOCKER_HOST value that reaches the engine.
	Host string
	// Client talks to the engine (API version negotiated).
	Client *client.Client

	t       testing.TB
	dir     string
	netns   string
	driver  string
	cmd     *exec.Cmd
	exited  chan struct{}
	logFile *os.File
}

// Start runs a private engine with the same storage driver as the
// machine's engine (host answers for it) and loads images into it from
// host. It is stopped, and everything it made removed, when the test ends.
// Without root, dockerd, nsenter or ip it fails the test under CI and
// skips it otherwise.
func Start(t testing.TB, host *client.Client, images ...string) *Engine {
	t.Helper()
	for _, bin := range []string{"dockerd", "nsenter", "ip"} {
		if _, err := exec.LookPath(bin); err != nil {
			need.Missing(t, "%s (a private Docker engine needs it)", bin)
		}
	}
	if os.Geteuid() != 0 {
		need.Missing(t, "root (a private Docker engine needs it)")
	}
	ctx := context.Background()
	info, err := host.Info(ctx, client.InfoOptions{})
	if err != nil {
		t.Fatalf("privatedocker: read the machine engine's storage driver: %v", err)
	}
	e := &Engine{t: t, dir: shortTempDir(t), netns: "persys-pd-" + randomSuffix(t), driver: info.Info.Driver}
	e.Host = "unix://" + filepath.Join(e.dir, "docker.sock")
	if out, err := exec.Command("ip", "netns", "add", e.netns).CombinedOutput(); err != nil {
		t.Fatalf("privatedocker: ip netns add: %v: %s", err, out)
	}
	t.Cleanup(e.cleanup)
	_ = exec.Command("ip", "netns", "exec", e.netns, "ip", "link", "set", "lo", "up").Run()
	if err := os.WriteFile(filepath.Join(e.dir, "daemon.json"), e.daemonConfig(), 0o600); err != nil {
		t.Fatal(err)
	}
	e.Client, err = client.NewClientWithOpts(client.WithHost(e.Host), client.WithAPIVersionNegotiation())
	if err != nil {
		t.Fatal(err)
	}
	e.start()
	for _, img := range images {
		e.load(host, img)
	}
	return e
}

// shortTempDir is a directory under /tmp with a short path: a unix
// socket path must stay under 108 bytes, and t.TempDir's can be longer.
func shortTempDir(t testing.TB) string {
	dir, err := os.MkdirTemp("", "persys-pd-")
	if err != nil {
		t.Fatal(err)
	}
	return dir
}

func randomSuffix(t testing.TB) string {
	b := make([]byte, 4)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(b)
}

// daemonConfig is the engine's whole configuration: the machine's
// /etc/docker/daemon.json is not read (it names the machine engine's
// data root).
func (e *Engine) daemonConfig() []byte {
	b, _ := json.Marshal(map[string]any{"storage-driver": e.driver, "mtu": 1400})
	return b
}

// start runs dockerd in the engine's network namespace (nsenter switches
// only the network namespace: the cgroup mounts stay visible) and waits
// until it answers.
func (e *Engine) start() {
	e.t.Helper()
	log, err := os.OpenFile(filepath.Join(e.dir, "dockerd.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		e.t.Fatal(err)
	}
	e.logFile = log
	e.cmd = exec.Command("nsenter", "--net=/var/run/netns/"+e.netns, "dockerd",
		"--config-file", filepath.Join(e.dir, "daemon.json"),
		"--host", e.Host, "--data-root", filepath.Join(e.dir, "data"),
		"--exec-root", filepath.Join(e.dir, "exec"), "--pidfile", filepath.Join(e.dir, "docker.pid"))
	e.cmd.Stdout, e.cmd.Stderr = log, log
	if err := e.cmd.Start(); err != nil {
		e.t.Fatalf("privatedocker: start dockerd: %v", err)
	}
	exited := make(chan struct{})
	e.exited = exited
	go func(c *exec.Cmd) { _ = c.Wait(); close(exited) }(e.cmd)
	e.waitReady()
}

func (e *Engine) waitReady() {
	e.t.Helper()
	deadline := time.Now().Add(readyBound)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		_, err := e.Client.Ping(ctx, client.PingOptions{})
		cancel()
		if err == nil {
			return
		}
		select {
		case <-e.exited:
			e.t.Fatalf("privatedocker: dockerd exited: %s", e.logTail())
		default:
		}
		if time.Now().After(deadline) {
			e.t.Fatalf("privatedocker: no answer after %s: %v\n%s", readyBound, err, e.logTail())
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// load copies image from host into the engine.
func (e *Engine) load(host *client.Client, image string) {
	e.t.Helper()
	ctx := context.Background()
	saved, err := host.ImageSave(ctx, []string{image})
	if err != nil {
		e.t.Fatalf("privatedocker: save %s: %v", image, err)
	}
	defer saved.Close()
	res, err := e.Client.ImageLoad(ctx, saved)
	if err != nil {
		e.t.Fatalf("privatedocker: load %s: %v", image, err)
	}
	defer res.Close()
	// The load is done when its answer is.
	if _, err := io.Copy(io.Discard, res); err != nil {
		e.t.Fatalf("privatedocker: load %s: %v", image, err)
	}
	if _, err := e.Client.ImageInspect(ctx, image); err != nil {
		e.t.Fatalf("privatedocker: %s not loaded: %v", image, err)
	}
}

// Restart stops the engine as a service manager would (SIGTERM: it stops
// its containers, which have no restart policy of their own) and starts
// it again on the same data root.
func (e *Engine) Restart() {
	e.t.Helper()
	e.stop(syscall.SIGTERM, 30*time.Second)
	e.start()
}

// Kill ends the engine with SIGKILL, as a crash would, with the
// containerd it runs (a service manager restarting the engine's unit ends
// both; a containerd left behind keeps the new engine from starting its
// own), and starts it again. The containers' shims live on.
func (e *Engine) Kill() {
	e.t.Helper()
	e.stop(syscall.SIGKILL, 30*time.Second)
	e.killAll("^containerd --config " + e.dir)
	// The killed containerd may linger as a zombie until init reaps it; an
	// engine that finds its pid alive waits for it in vain.
	_ = os.Remove(filepath.Join(e.dir, "exec", "containerd", "containerd.pid"))
	e.start()
}

// stop signals dockerd (not nsenter, which execs it: they are one
// process) and waits for it to exit, then for its containerd to go.
func (e *Engine) stop(sig syscall.Signal, bound time.Duration) {
	if e.cmd == nil || e.cmd.Process == nil {
		return
	}
	_ = e.cmd.Process.Signal(sig)
	select {
	case <-e.exited:
	case <-time.After(bound):
		_ = e.cmd.Process.Kill()
		<-e.exited
	}
	e.cmd = nil
	if e.logFile != nil {
		_ = e.logFile.Close()
	}
}

// cleanup stops the engine (its containers with it), removes its
// namespace, mounts and files.
func (e *Engine) cleanup() {
	e.stop(syscall.SIGTERM, 30*time.Second)
	// A killed engine leaves containerd and its shims: end everything
	// whose command line names this engine's directory.
	e.killAll(e.dir)
	e.unmountAll()
	_ = exec.Command("ip", "netns", "del", e.netns).Run()
	if os.Getenv("PD_KEEP") != "" {
		return
	}
	if err := os.RemoveAll(e.dir); err != nil {
		e.t.Logf("privatedocker: remove %s: %v", e.dir, err)
	}
}

// killAll sends SIGKILL to every process whose command line matches
// pattern and waits until none is left (a new engine that finds the old
// containerd alive waits for it in vain).
func (e *Engine) killAll(pattern string) {
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		_ = exec.Command("pkill", "-KILL", "-f", pattern).Run()
		if exec.Command("pgrep", "-f", pattern).Run() != nil {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	e.t.Logf("privatedocker: processes matching %q outlived SIGKILL", pattern)
}

// unmountAll lazily unmounts whatever is still mounted under the engine's
// directory, deepest first.
func (e *Engine) unmountAll() {
	data, err := os.ReadFile("/proc/self/mounts")
	if err != nil {
		return
	}
	var under []string
	for _, line := range strings.Split(string(data), "\n") {
		if f := strings.Fields(line); len(f) > 1 && strings.HasPrefix(f[1], e.dir+"/") {
			under = append(under, f[1])
		}
	}
	for i := len(under) - 1; i >= 0; i-- {
		_ = syscall.Unmount(under[i], syscall.MNT_DETACH)
	}
}

func (e *Engine) logTail() string {
	b, _ := os.ReadFile(filepath.Join(e.dir, "dockerd.log"))
	s := string(b)
	if len(s) > 3000 {
		s = s[len(s)-3000:]
	}
	return fmt.Sprintf("---- dockerd log ----\n%s", s)
}
