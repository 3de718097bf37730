// Package crash kills `persys dev` at the named failpoints of the apply
// path (internal/failpoint; the binary is built with -tags failpoints),
// starts it again on the same data dir, and checks that the cluster
// converges: every workload of the scenario RUNNING at its latest revision
// with exactly one container, and nothing left after delete. It prints
// the crash matrix: failpoint, converged, seconds to converge, leftovers,
// duplicates.
package crash

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/moby/moby/client"

	persysv1 "github.com/persys-dev/compute/api/persys/v1"
	pclient "github.com/persys-dev/compute/internal/client"
	"github.com/persys-dev/compute/internal/failpoint"
	"github.com/persys-dev/compute/internal/testutil/freeport"
	"github.com/persys-dev/compute/internal/testutil/images"
)

// convergeBound is how long a restarted cluster may take to bring every
// workload back: the agent repairs at start, the scheduler applies what
// is missing at once.
const convergeBound = 90 * time.Second

var (
	buildOnce sync.Once
	binDir    string
	buildErr  error
)

// binaries builds persys with failpoints, and persysctl, once.
func binaries(t *testing.T) (persys, persysctl string) {
	t.Helper()
	buildOnce.Do(func() {
		binDir, buildErr = os.MkdirTemp("", "persys-crash-bin-")
		if buildErr != nil {
			return
		}
		_, file, _, _ := runtime.Caller(0)
		root := filepath.Join(filepath.Dir(file), "..", "..")
		for _, b := range []struct{ name, tags string }{{"persys", "failpoints"}, {"persysctl", ""}} {
			c := exec.Command("go", "build", "-tags", b.tags, "-o", filepath.Join(binDir, b.name), "./cmd/"+b.name)
			c.Dir = root
			c.Env = append(os.Environ(), "CGO_ENABLED=0")
			if out, err := c.CombinedOutput(); err != nil {
				buildErr = fmt.Errorf("build %s: %v\n%s", b.name, err, out)
				return
			}
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return filepath.Join(binDir, "persys"), filepath.Join(binDir, "persysctl")
}

// dev is one `persys dev` on a data dir that outlives its processes.
type dev struct {
	t                 *testing.T
	persys, persysctl string
	dir               string
	gw, sched         string
	image             string
	docker            *client.Client
	dockerHost        string
	// services holds the number of containers of each compose workload
	// (one for every other workload).
	services            map[string]int
	proc                *exec.Cmd
	log                 *bytes.Buffer
	logMu               *sync.Mutex
	done                chan struct{}
	nodeID              string
	startedAt, killedAt time.Time
}

type lockedWriter struct {
	mu *sync.Mutex
	w  *bytes.Buffer
}

func (l lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

func newDev(t *testing.T) *dev {
	cli, image := images.HelloImage(t)
	return newDevOn(t, cli, "", image)
}

// newDevOn is a dev whose agent uses the engine at dockerHost ("": the
// machine's), which cli reaches and which holds image.
func newDevOn(t *testing.T, cli *client.Client, dockerHost, image string) *dev {
	persys, persysctl := binaries(t)
	d := &dev{t: t, persys: persys, persysctl: persysctl, dir: t.TempDir(), image: image, docker: cli, dockerHost: dockerHost,
		gw: freeport.Addr(t, "127.0.0.1"), sched: freeport.Addr(t, "127.0.0.1")}
	t.Cleanup(d.cleanup)
	return d
}

// start runs persys dev with failpoints armed as spec ("" for none) and
// waits until its node is ready.
func (d *dev) start(spec string) {
	d.t.Helper()
	d.log, d.logMu, d.done = &bytes.Buffer{}, &sync.Mutex{}, make(chan struct{})
	d.proc = exec.Command(d.persys, "dev", "--data-dir", d.dir, "--gateway-listen", d.gw,
		"--scheduler-listen", d.sched, "--metrics-port", "0")
	d.proc.Env = append(os.Environ(), failpoint.Env+"="+spec, failpoint.ArmEnv+"="+d.armFile())
	if d.dockerHost != "" {
		d.proc.Env = append(d.proc.Env, "DOCKER_HOST="+d.dockerHost)
	}
	d.proc.Stdout = lockedWriter{d.logMu, d.log}
	d.proc.Stderr = lockedWriter{d.logMu, d.log}
	if err := d.proc.Start(); err != nil {
		d.t.Fatal(err)
	}
	d.startedAt = time.Now()
	go func() { _ = d.proc.Wait(); close(d.done) }()
	d.waitFor("node ready", 60*time.Second, func(c *pclient.Client) (bool, string) {
		nodes, err := c.ListNodes(context.Background())
		if err != nil {
			return false, err.Error()
		}
		for _, n := range nodes.GetNodes() {
			if n.GetState() == persysv1.NodeState_NODE_STATE_READY {
				d.nodeID = n.GetId()
				return true, ""
			}
		}
		return false, fmt.Sprintf("%d nodes, none ready", len(nodes.GetNodes()))
	})
}

// armFile is the file whose existence arms the failpoints (ArmEnv).
func (d *dev) armFile() string { return filepath.Join(d.dir, "failpoints-armed") }

func (d *dev) arm() {
	d.t.Helper()
	if err := os.WriteFile(d.armFile(), nil, 0o600); err != nil {
		d.t.Fatal(err)
	}
}

func (d *dev) disarm() {
	d.t.Helper()
	if err := os.Remove(d.armFile()); err != nil {
		d.t.Fatal(err)
	}
}

func (d *dev) output() string {
	d.logMu.Lock()
	defer d.logMu.Unlock()
	return d.log.String()
}

// waitKilled waits for the process to die at point.
func (d *dev) waitKilled(point string) {
	d.t.Helper()
	select {
	case <-d.done:
	case <-time.After(2 * time.Minute):
		d.t.Fatalf("persys dev did not die at failpoint %s; log tail:\n%s", point, tail(d.output(), 40))
	}
	d.killedAt = time.Now()
	if want := "failpoint " + point + ": killing the process"; !strings.Contains(d.output(), want) {
		d.t.Fatalf("persys dev exited without reaching failpoint %s; log tail:\n%s", point, tail(d.output(), 40))
	}
}

func (d *dev) stop() {
	if d.proc == nil || d.proc.Process == nil {
		return
	}
	select {
	case <-d.done:
		return
	default:
	}
	_ = d.proc.Process.Signal(os.Interrupt)
	select {
	case <-d.done:
	case <-time.After(20 * time.Second):
		_ = d.proc.Process.Kill()
		<-d.done
	}
}

func (d *dev) cleanup() {
	d.stop()
	if d.t.Failed() && d.log != nil {
		d.t.Logf("---- persys dev log ----\n%s", tail(d.output(), 80))
	}
	for _, c := range d.containers("") {
		_, _ = d.docker.ContainerRemove(context.Background(), c, client.ContainerRemoveOptions{Force: true})
	}
}

func (d *dev) client() (*pclient.Client, error) {
	cfg, _, err := pclient.LoadConfig(filepath.Join(d.dir, "persysctl.yaml"))
	if err != nil {
		return nil, err
	}
	return pclient.New(cfg)
}

// containersLeftAfter waits up to timeout for the node to hold no
// container of the cluster and returns how many it still holds.
func (d *dev) containersLeftAfter(timeout time.Duration) int {
	deadline := time.Now().Add(timeout)
	for {
		n := len(d.containers(""))
		if n == 0 || time.Now().After(deadline) {
			return n
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// waitFor polls cond with a fresh client every 100 ms until it holds.
func (d *dev) waitFor(what string, timeout time.Duration, cond func(*pclient.Client) (bool, string)) {
	d.t.Helper()
	deadline := time.Now().Add(timeout)
	detail := ""
	for time.Now().Before(deadline) {
		if c, err := d.client(); err != nil {
			detail = err.Error()
		} else {
			ok, det := cond(c)
			c.Close()
			if ok {
				return
			}
			detail = det
		}
		select {
		case <-d.done:
			d.t.Fatalf("persys dev exited while waiting for %s; log tail:\n%s", what, tail(d.output(), 40))
		case <-time.After(100 * time.Millisecond):
		}
	}
	d.t.Fatalf("timed out after %s waiting for %s: %s", timeout, what, detail)
}

func (d *dev) ctl(args ...string) (string, error) {
	cmd := exec.Command(d.persysctl, append([]string{"--config", filepath.Join(d.dir, "persysctl.yaml")}, args...)...)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

func (d *dev) mustCtl(args ...string) string {
	d.t.Helper()
	out, err := d.ctl(args...)
	if err != nil {
		d.t.Fatalf("persysctl %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return out
}

// manifest writes a workload of the hello image with greeting as its
// revision's mark.
func (d *dev) manifest(name, greeting string) string {
	d.t.Helper()
	m := fmt.Sprintf(`kind: Workload
metadata: {name: %s}
spec:
  type: container
  container:
    image: %s
    env: {GREETING: %s}
  resources: {cpu: 50m, memory: 32Mi}
`, name, d.image, greeting)
	path := filepath.Join(d.dir, name+"-"+greeting+".yaml")
	if err := os.WriteFile(path, []byte(m), 0o600); err != nil {
		d.t.Fatal(err)
	}
	return path
}

// composeManifest writes a compose workload of two services of the hello
// image, both carrying greeting.
func (d *dev) composeManifest(name, greeting string) string {
	d.t.Helper()
	m := fmt.Sprintf(`kind: Workload
metadata: {name: %s}
spec:
  type: compose
  compose:
    inline: |
      services:
        web:
          image: %s
          environment: {GREETING: %s}
          stop_grace_period: 1s
        api:
          image: %s
          environment: {GREETING: %s}
          stop_grace_period: 1s
`, name, d.image, greeting, d.image, greeting)
	if d.services == nil {
		d.services = map[string]int{}
	}
	d.services[name] = 2
	path := filepath.Join(d.dir, name+"-"+greeting+".yaml")
	if err := os.WriteFile(path, []byte(m), 0o600); err != nil {
		d.t.Fatal(err)
	}
	return path
}

// containersOf is how many containers workload n runs when converged.
func (d *dev) containersOf(n string) int {
	if k, ok := d.services[n]; ok {
		return k
	}
	return 1
}

// greetingOf is the GREETING a spec's revision carries: the container's
// env, or the first one named in a compose file.
func greetingOf(spec *persysv1.WorkloadSpec) string {
	if c := spec.GetContainer(); c != nil {
		return c.GetEnv()["GREETING"]
	}
	inline := spec.GetCompose().GetInline()
	_, rest, ok := strings.Cut(inline, "GREETING: ")
	if !ok {
		return ""
	}
	g, _, _ := strings.Cut(rest, "}")
	return g
}

// containers lists the ids of the containers of workload name ("" for
// all) that this dev's node made.
func (d *dev) containers(name string) []string {
	if d.nodeID == "" {
		return nil
	}
	f := make(client.Filters).Add("label", "persys.node="+d.nodeID)
	if name != "" {
		f.Add("label", "persys.workload="+name)
	}
	res, err := d.docker.ContainerList(context.Background(), client.ContainerListOptions{All: true, Filters: f})
	if err != nil {
		d.t.Fatalf("container list: %v", err)
	}
	ids := make([]string, 0, len(res.Items))
	for _, c := range res.Items {
		ids = append(ids, c.ID)
	}
	return ids
}

// row is one line of the crash matrix.
type row struct {
	point      string
	converged  bool
	seconds    float64
	leftovers  int
	duplicates int
}

var (
	matrixMu sync.Mutex
	matrix   []row
)

func record(r row) {
	matrixMu.Lock()
	defer matrixMu.Unlock()
	matrix = append(matrix, r)
}

func TestMain(m *testing.M) {
	code := m.Run()
	if len(matrix) > 0 {
		fmt.Println("crash matrix (persys dev killed with SIGKILL at the point, restarted on its data dir):")
		fmt.Printf("%-34s %-9s %-8s %-9s %s\n", "FAILPOINT", "CONVERGED", "SECONDS", "LEFTOVERS", "DUPLICATES")
		for _, r := range matrix {
			fmt.Printf("%-34s %-9v %-8.1f %-9d %d\n", r.point, r.converged, r.seconds, r.leftovers, r.duplicates)
		}
	}
	if binDir != "" {
		_ = os.RemoveAll(binDir)
	}
	os.Exit(code)
}

// step is what a crash case does once the point is armed.
type step int

const (
	addFourth   step = iota // apply a fourth workload, without waiting
	updateFirst             // apply a new revision of w1, without waiting
	deleteThird             // delete w3, without waiting
	addCompose              // apply a compose workload of two services, without waiting
)

// TestCrashMatrix: for each failpoint of the container path (agent and
// scheduler; persys dev runs both in one process), three workloads run,
// the point is armed, one change is made without waiting (a fourth
// workload, a new revision of w1, or the delete of w3), persys dev dies at
// the point, and a restart on the same data dir must converge: every
// workload RUNNING at its latest revision with exactly one container, a
// deleted one without any; after deleting everything, no container and
// no workload left.
func TestCrashMatrix(t *testing.T) {
	cases := []struct {
		point string
		step  step
	}{
		{failpoint.DockerAfterImage, addFourth},
		{failpoint.DockerAfterCreate, addFourth},
		{failpoint.DockerAfterStart, addFourth},
		{failpoint.DockerBetweenStopAndRemove, updateFirst},
		{failpoint.SchedulerAfterWorkloadWrite, addFourth},
		{failpoint.SchedulerAfterGroupCommit, addFourth},
		{failpoint.SchedulerAfterAssign, addFourth},
		{failpoint.SchedulerAfterAgentAnswer, addFourth},
		{failpoint.SchedulerAfterNodeDelete, deleteThird},
		{failpoint.ComposeAfterCreate, addCompose},
		{failpoint.ComposeBetweenServices, addCompose},
	}
	for _, tc := range cases {
		t.Run(strings.ReplaceAll(tc.point, "/", "-"), func(t *testing.T) {
			r := row{point: tc.point}
			defer func() { record(r) }()
			d := newDev(t)
			d.start(tc.point + "=kill")
			want := map[string]string{}
			for _, n := range []string{"w1", "w2", "w3"} {
				d.mustCtl("apply", "-f", d.manifest(n, "one"), "--wait", "--timeout", "90s")
				want[n] = "one"
			}
			d.arm()
			gone := d.change(tc.step, want)
			d.waitKilled(tc.point)
			d.disarm()

			d.start("")
			d.waitConverged(want)
			r.converged, r.seconds = true, time.Since(d.startedAt).Seconds()
			d.checkAndDeleteAll(&r, want, gone)
		})
	}
}

// checkAndDeleteAll counts duplicates of the converged workloads in want,
// waits for gone ("" for none) to be removed, deletes every workload and
// counts what is left on the engine.
func (d *dev) checkAndDeleteAll(r *row, want map[string]string, gone string) {
	t := d.t
	t.Helper()
	for n := range want {
		if k, w := len(d.containers(n)), d.containersOf(n); k > w {
			r.duplicates += k - w
		}
	}
	if r.duplicates > 0 {
		t.Errorf("%d duplicate containers after convergence", r.duplicates)
	}
	if gone != "" {
		d.waitFor(gone+" removed", convergeBound, func(c *pclient.Client) (bool, string) {
			_, err := c.GetWorkload(context.Background(), gone, false)
			return err != nil && len(d.containers(gone)) == 0, fmt.Sprintf("%d containers", len(d.containers(gone)))
		})
	}

	for n := range want {
		d.mustCtl("delete", "workload", n, "--wait", "--timeout", "90s")
	}
	// A workload deleted while its node was lost (a slow restart
	// can miss the lease) is gone from the cluster at once and from
	// the node when it reports again: orphan cleanup, bounded.
	r.leftovers = d.containersLeftAfter(convergeBound)
	if r.leftovers > 0 {
		t.Errorf("%d containers left after deleting every workload", r.leftovers)
	}
	if out := d.mustCtl("get", "workloads", "-o", "name"); strings.TrimSpace(out) != "" {
		t.Errorf("workloads left after delete: %s", out)
	}
}

// change makes the step's change without waiting for it, updates want,
// and returns the workload it deletes ("" for none). The apply of a
// workload whose write is the crash point gets no answer; the write is in
// etcd all the same, so the workload must come up after the restart.
func (d *dev) change(st step, want map[string]string) (deleted string) {
	d.t.Helper()
	switch st {
	case updateFirst:
		d.mustCtl("apply", "-f", d.manifest("w1", "two"))
		want["w1"] = "two"
	case deleteThird:
		d.mustCtl("delete", "workload", "w3")
		delete(want, "w3")
		return "w3"
	case addCompose:
		d.mustCtl("apply", "-f", d.composeManifest("c4", "one"))
		want["c4"] = "one"
	default:
		_, _ = d.ctl("apply", "-f", d.manifest("w4", "one"))
		want["w4"] = "one"
	}
	return ""
}

// waitConverged waits until every workload in want runs the revision
// that carries its greeting, with one running container.
func (d *dev) waitConverged(want map[string]string) {
	d.t.Helper()
	d.waitFor("every workload running its latest revision", convergeBound, func(c *pclient.Client) (bool, string) {
		list, err := c.ListWorkloads(context.Background())
		if err != nil {
			return false, err.Error()
		}
		seen := map[string]bool{}
		for _, v := range list.GetWorkloads() {
			w, st := v.GetWorkload(), v.GetStatus()
			name := w.GetName()
			seen[name] = true
			if g := greetingOf(w.GetSpec()); g != want[name] {
				return false, fmt.Sprintf("%s holds greeting %q, want %q", name, g, want[name])
			}
			if st.GetState() != persysv1.ActualState_ACTUAL_STATE_RUNNING || st.GetRevision() != w.GetRevision() {
				return false, fmt.Sprintf("%s is %s at revision %d of %d (%s)", name, st.GetState(), st.GetRevision(), w.GetRevision(), st.GetMessage())
			}
		}
		for n := range want {
			if !seen[n] {
				return false, n + " is not listed"
			}
		}
		return true, ""
	})
}

func tail(s string, n int) string {
	lines := strings.Split(s, "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
