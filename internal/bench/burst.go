package bench

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/client"
	"golang.org/x/sync/errgroup"

	persysv1 "github.com/persys-dev/compute/api/persys/v1"
	persysclient "github.com/persys-dev/compute/internal/client"
)

// The real-engine burst: one real node (persys dev, its own process, the
// local Docker engine) is asked for Workloads containers at once through
// the gateway, as persysctl apply -f does with a file of many documents,
// and the time until all are RUNNING is set against Workloads concurrent
// `docker run -d` of the same image with the same options through the
// Engine API, round after round. Everything the run makes carries the
// label BurstLabel=<run id>; it is removed at the end however the run
// ends, with the dev cluster's data folder.

// BurstLabel is the label key every container, and every workload, of a
// burst run carries, valued with the run's id.
const BurstLabel = "bench-burst"

// burstRoundLabel tells one round's workloads and containers from the
// others of the same run.
const burstRoundLabel = "bench-burst-round"

// burstStopTimeout matches the docker runtime's stop timeout (seconds),
// so both sides create the same container.
const burstStopTimeout = 10

// BurstOptions configure RunBurst.
type BurstOptions struct {
	// Persys is the persys binary whose `dev` command runs the node.
	Persys string
	// Image is run on both sides; it must be on the engine already (the
	// bench never pulls).
	Image string
	// Workloads per round and side (1-1000, default 100).
	Workloads int
	// Rounds of persys then docker (1-100, default 3).
	Rounds int
	// CPUMillis and MemoryBytes are each container's limits on both sides
	// (default 10m and 8 MiB, the bench workload's).
	CPUMillis, MemoryBytes int64
	// DockerConcurrency bounds the docker side's creates and starts in
	// flight (0: all at once, as many `docker run -d` started together).
	// Set to the scheduler's per-node bound it shows what that bound
	// costs on this engine.
	DockerConcurrency int
	// Dir holds the dev cluster's data folder, made fresh and removed at
	// the end.
	Dir string
	// Timeout bounds each wait (default 5m).
	Timeout time.Duration
	// Progress receives a line per phase; nil is silent.
	Progress io.Writer
}

func (o *BurstOptions) defaults() error {
	if o.Persys == "" {
		return errors.New("bench: burst: persys binary: empty")
	}
	if strings.TrimSpace(o.Image) == "" {
		return errors.New("bench: burst: image: empty")
	}
	if o.Workloads == 0 {
		o.Workloads = 100
	}
	if o.Workloads < 1 || o.Workloads > 1000 {
		return fmt.Errorf("bench: burst: workloads %d: must be between 1 and 1000", o.Workloads)
	}
	if o.Rounds == 0 {
		o.Rounds = 3
	}
	if o.Rounds < 1 || o.Rounds > 100 {
		return fmt.Errorf("bench: burst: rounds %d: must be between 1 and 100", o.Rounds)
	}
	if o.CPUMillis == 0 {
		o.CPUMillis = 10
	}
	if o.MemoryBytes == 0 {
		o.MemoryBytes = 8 << 20
	}
	if o.CPUMillis < 0 || o.MemoryBytes < 6<<20 {
		return fmt.Errorf("bench: burst: cpu %dm, memory %d bytes: cpu must not be negative, memory at least 6 MiB (the engine's minimum)", o.CPUMillis, o.MemoryBytes)
	}
	if o.DockerConcurrency < 0 {
		return fmt.Errorf("bench: burst: docker concurrency %d: must not be negative", o.DockerConcurrency)
	}
	if o.Dir == "" {
		return errors.New("bench: burst: data dir: empty")
	}
	if o.Timeout < 0 {
		return fmt.Errorf("bench: burst: timeout %s: must not be negative", o.Timeout)
	}
	if o.Timeout == 0 {
		o.Timeout = 5 * time.Minute
	}
	if o.Progress == nil {
		o.Progress = io.Discard
	}
	return nil
}

// BurstRound is one round's figures, in seconds.
type BurstRound struct {
	Round int `json:"round"`
	// PersysRunning is from the apply request until the last of the
	// workloads was seen RUNNING; PersysDeleted until their containers
	// were gone.
	PersysRunning float64 `json:"persys_running_s"`
	PersysDeleted float64 `json:"persys_deleted_s"`
	// DockerRunning is from the first create until every container
	// inspected running; DockerRemoved until all were removed.
	DockerRunning float64 `json:"docker_running_s"`
	DockerRemoved float64 `json:"docker_removed_s"`
	// Persys and Docker say, from the engine's own records, where each
	// side's time went.
	Persys EngineTimes `json:"persys_engine"`
	Docker EngineTimes `json:"docker_engine"`
}

// EngineTimes are the engine's records of a round's containers, in
// seconds from the side's start (the apply request, or the first create):
// the first created, the last created and the last started. For persys,
// the rest up to all RUNNING is the status's way back to the watcher.
type EngineTimes struct {
	FirstCreated float64 `json:"first_created_s"`
	LastCreated  float64 `json:"last_created_s"`
	LastStarted  float64 `json:"last_started_s"`
}

// Spread is min, median and max of n samples.
type Spread struct {
	N      int     `json:"n"`
	Min    float64 `json:"min"`
	Median float64 `json:"median"`
	Max    float64 `json:"max"`
}

func spreadOf(xs []float64) Spread {
	if len(xs) == 0 {
		return Spread{}
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	mid := s[len(s)/2]
	if len(s)%2 == 0 {
		mid = (s[len(s)/2-1] + s[len(s)/2]) / 2
	}
	return Spread{N: len(s), Min: s[0], Median: mid, Max: s[len(s)-1]}
}

// BurstReport is a burst run's result.
type BurstReport struct {
	// Run is the value of BurstLabel on everything the run made.
	Run       string `json:"run"`
	Image     string `json:"image"`
	Workloads int    `json:"workloads"`
	Engine    string `json:"engine_version"`
	// DockerConcurrency is the docker side's bound (0: all at once).
	DockerConcurrency int          `json:"docker_concurrency"`
	Rounds            []BurstRound `json:"rounds"`
	Persys            Spread       `json:"persys_running_s"`
	Docker            Spread       `json:"docker_running_s"`
	// Ratio is the persys median over the docker median (goal ≤ 1.10).
	Ratio float64 `json:"ratio"`
}

// WriteTable writes the rounds and the summary.
func (r *BurstReport) WriteTable(w io.Writer) error {
	var b strings.Builder
	fmt.Fprintf(&b, "burst: %d containers of %s at once on one node, engine %s\n", r.Workloads, r.Image, r.Engine)
	if r.DockerConcurrency > 0 {
		fmt.Fprintf(&b, "docker side: at most %d creates and starts in flight\n", r.DockerConcurrency)
	}
	if len(r.Rounds) == 0 {
		b.WriteString("no round finished\n")
		_, err := io.WriteString(w, b.String())
		return err
	}
	fmt.Fprintf(&b, "%6s %16s %16s %16s %16s\n", "ROUND", "PERSYS_RUNNING", "DOCKER_RUNNING", "PERSYS_DELETED", "DOCKER_REMOVED")
	for _, x := range r.Rounds {
		fmt.Fprintf(&b, "%6d %15.2fs %15.2fs %15.2fs %15.2fs\n", x.Round, x.PersysRunning, x.DockerRunning, x.PersysDeleted, x.DockerRemoved)
	}
	fmt.Fprintf(&b, "engine records (s from each side's start): first created / last created / last started\n")
	for _, x := range r.Rounds {
		fmt.Fprintf(&b, "%6d  persys %.2f / %.2f / %.2f (RUNNING seen %.2f)   docker %.2f / %.2f / %.2f\n", x.Round,
			x.Persys.FirstCreated, x.Persys.LastCreated, x.Persys.LastStarted, x.PersysRunning,
			x.Docker.FirstCreated, x.Docker.LastCreated, x.Docker.LastStarted)
	}
	for _, s := range []struct {
		name string
		sp   Spread
	}{{"persys apply → all RUNNING", r.Persys}, {"docker run -d → all running", r.Docker}} {
		fmt.Fprintf(&b, "%-28s n=%d  min %.2fs  median %.2fs  max %.2fs\n", s.name, s.sp.N, s.sp.Min, s.sp.Median, s.sp.Max)
	}
	if r.Ratio > 0 {
		fmt.Fprintf(&b, "persys / docker (medians)    %.2f  (goal ≤ 1.10)\n", r.Ratio)
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// RunBurst runs the burst. The report holds the rounds done when it
// fails part way.
func RunBurst(ctx context.Context, o BurstOptions) (rep *BurstReport, err error) {
	if err := o.defaults(); err != nil {
		return nil, err
	}
	docker, err := client.NewClientWithOpts(client.FromEnv, client.WithAPIVersionNegotiation())
	if err != nil {
		return nil, fmt.Errorf("bench: burst: docker client: %w", err)
	}
	defer docker.Close()
	ver, err := docker.ServerVersion(ctx, client.ServerVersionOptions{})
	if err != nil {
		return nil, fmt.Errorf("bench: burst: docker engine: %w", err)
	}
	if _, err := docker.ImageInspect(ctx, o.Image); err != nil {
		return nil, fmt.Errorf("bench: burst: image %s: %w (the bench never pulls: build it first, e.g. scripts/build-images.sh %s)", o.Image, err, o.Image)
	}
	id, err := runID()
	if err != nil {
		return nil, err
	}
	b := &burst{o: o, docker: docker, run: id}
	// Cleanup runs however the run ends, Ctrl-C included: it gets a
	// context of its own.
	defer func() {
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Minute)
		defer cancel()
		if cerr := b.cleanup(cctx); cerr != nil && err == nil {
			err = cerr
		}
	}()
	rep = &BurstReport{Run: id, Image: o.Image, Workloads: o.Workloads, Engine: ver.Version, DockerConcurrency: o.DockerConcurrency}
	if err := b.startDev(ctx); err != nil {
		return rep, err
	}
	var ps, ds []float64
	for r := 1; r <= o.Rounds; r++ {
		round := BurstRound{Round: r}
		if round.PersysRunning, round.PersysDeleted, err = b.persysRound(ctx, r); err != nil {
			return rep, fmt.Errorf("bench: burst: round %d, persys: %w", r, err)
		}
		round.Persys = b.lastTimes
		fmt.Fprintf(o.Progress, "burst: round %d: persys %d RUNNING in %.2fs (engine: last started at %.2fs), gone in %.2fs\n", r, o.Workloads, round.PersysRunning, round.Persys.LastStarted, round.PersysDeleted)
		if round.DockerRunning, round.DockerRemoved, err = b.dockerRound(ctx, r); err != nil {
			return rep, fmt.Errorf("bench: burst: round %d, docker: %w", r, err)
		}
		round.Docker = b.lastTimes
		fmt.Fprintf(o.Progress, "burst: round %d: docker %d running in %.2fs (engine: last started at %.2fs), removed in %.2fs\n", r, o.Workloads, round.DockerRunning, round.Docker.LastStarted, round.DockerRemoved)
		rep.Rounds = append(rep.Rounds, round)
		ps, ds = append(ps, round.PersysRunning), append(ds, round.DockerRunning)
		rep.Persys, rep.Docker = spreadOf(ps), spreadOf(ds)
		if rep.Docker.Median > 0 {
			rep.Ratio = rep.Persys.Median / rep.Docker.Median
		}
	}
	return rep, nil
}

// burst is one run: its engine client, the dev cluster and its id.
type burst struct {
	o      BurstOptions
	docker *client.Client
	run    string
	dev    *devProc
	api    *persysclient.Client
	// lastTimes are the engine records of the last round side run.
	lastTimes EngineTimes
}

func runID() (string, error) {
	var b [4]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", fmt.Errorf("bench: burst: run id: %w", err)
	}
	return hex.EncodeToString(b[:]), nil
}

func (b *burst) startDev(ctx context.Context) error {
	if err := os.MkdirAll(b.o.Dir, 0o700); err != nil {
		return fmt.Errorf("bench: burst: data dir: %w", err)
	}
	dir, err := os.MkdirTemp(b.o.Dir, "burst-dev-")
	if err != nil {
		return fmt.Errorf("bench: burst: data dir: %w", err)
	}
	b.dev = &devProc{dir: dir}
	fmt.Fprintf(b.o.Progress, "burst: starting %s dev in %s\n", b.o.Persys, dir)
	start := time.Now()
	if err := b.dev.start(ctx, b.o.Persys); err != nil {
		return err
	}
	wctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	if b.api, err = b.dev.waitReady(wctx); err != nil {
		return err
	}
	fmt.Fprintf(b.o.Progress, "burst: dev cluster ready in %.1fs\n", time.Since(start).Seconds())
	return nil
}

func (b *burst) roundLabels(round int, side string) map[string]string {
	return map[string]string{BurstLabel: b.run, burstRoundLabel: fmt.Sprintf("%s-%d", side, round)}
}

// manifests is round's workloads as one YAML stream of documents.
func (b *burst) manifests(round int) ([]byte, []string) {
	names := make([]string, b.o.Workloads)
	var s strings.Builder
	labels := b.roundLabels(round, "persys")
	for i := range names {
		names[i] = fmt.Sprintf("burst-%s-%d-%03d", b.run, round, i)
		if i > 0 {
			s.WriteString("---\n")
		}
		fmt.Fprintf(&s, `apiVersion: persys/v1
kind: Workload
metadata:
  name: %s
  labels: {%s: "%s", %s: "%s"}
spec:
  type: container
  container:
    image: %q
    restartPolicy: "no"
    labels: {%s: "%s", %s: "%s"}
  resources: {cpu: %dm, memory: "%d"}
`, names[i], BurstLabel, labels[BurstLabel], burstRoundLabel, labels[burstRoundLabel], b.o.Image,
			BurstLabel, labels[BurstLabel], burstRoundLabel, labels[burstRoundLabel], b.o.CPUMillis, b.o.MemoryBytes)
	}
	return []byte(s.String()), names
}

// persysRound applies the round's workloads in one request and waits,
// through a watch of them, until all are RUNNING; then deletes them and
// waits until the engine holds none of their containers.
func (b *burst) persysRound(ctx context.Context, round int) (running, deleted float64, err error) {
	ctx, cancel := context.WithTimeout(ctx, b.o.Timeout)
	defer cancel()
	doc, names := b.manifests(round)
	labels := b.roundLabels(round, "persys")
	allRunning := make(chan struct{})
	watchErr := make(chan error, 1)
	wctx, stopWatch := context.WithCancel(ctx)
	defer stopWatch()
	go func() {
		seen := map[string]bool{}
		closed := false
		watchErr <- b.api.Watch(wctx, "workloads", persysclient.WatchOptions{Selector: labels}, func(it persysclient.WatchItem) error {
			if it.Type == persysclient.WatchRelist {
				clear(seen)
				return nil
			}
			st := it.Workload.GetStatus()
			name := it.Workload.GetWorkload().GetName()
			if name == "" {
				return nil
			}
			if st.GetState() == persysv1.ActualState_ACTUAL_STATE_FAILED {
				return fmt.Errorf("workload %s FAILED: %s: %s", name, st.GetReason(), st.GetMessage())
			}
			seen[name] = it.Type != persysclient.WatchDelete && st.GetState() == persysv1.ActualState_ACTUAL_STATE_RUNNING
			n := 0
			for _, ok := range seen {
				if ok {
					n++
				}
			}
			if n == len(names) && !closed {
				closed = true
				close(allRunning)
			}
			return nil
		})
	}()
	start := time.Now()
	resp, err := b.api.ApplyAll(ctx, doc)
	if err != nil {
		return 0, 0, fmt.Errorf("apply: %w", err)
	}
	for i, r := range resp.GetResults() {
		if r.GetErrorCode() != 0 {
			return 0, 0, fmt.Errorf("apply: documents[%d]: %s", i, r.GetErrorMessage())
		}
	}
	select {
	case <-allRunning:
		running = time.Since(start).Seconds()
	case err := <-watchErr:
		if err == nil {
			err = ctx.Err()
		}
		return 0, 0, fmt.Errorf("waiting for RUNNING: %w", err)
	case <-ctx.Done():
		return 0, 0, fmt.Errorf("waiting for RUNNING: %w", ctx.Err())
	}
	stopWatch()
	if b.lastTimes, err = b.engineTimes(ctx, labels, start); err != nil {
		return running, 0, err
	}

	start = time.Now()
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(16)
	for _, n := range names {
		g.Go(func() error { return b.api.DeleteWorkload(gctx, n) })
	}
	if err := g.Wait(); err != nil {
		return running, 0, fmt.Errorf("delete: %w", err)
	}
	if err := b.waitGone(ctx, labels); err != nil {
		return running, 0, err
	}
	return running, time.Since(start).Seconds(), nil
}

// dockerRound creates and starts the round's containers, each in its own
// goroutine as many `docker run -d` would, and waits until every one
// inspects running; then removes them.
func (b *burst) dockerRound(ctx context.Context, round int) (running, removed float64, err error) {
	ctx, cancel := context.WithTimeout(ctx, b.o.Timeout)
	defer cancel()
	labels := b.roundLabels(round, "docker")
	ids := make([]string, b.o.Workloads)
	start := time.Now()
	g, gctx := errgroup.WithContext(ctx)
	if b.o.DockerConcurrency > 0 {
		g.SetLimit(b.o.DockerConcurrency)
	}
	for i := range ids {
		g.Go(func() error {
			cfg, host := b.containerSpec(labels)
			name := fmt.Sprintf("burst-%s-d%d-%03d", b.run, round, i)
			c, err := b.docker.ContainerCreate(gctx, client.ContainerCreateOptions{Config: cfg, HostConfig: host, Name: name})
			if err != nil {
				return fmt.Errorf("create %s: %w", name, err)
			}
			ids[i] = c.ID
			if _, err := b.docker.ContainerStart(gctx, c.ID, client.ContainerStartOptions{}); err != nil {
				return fmt.Errorf("start %s: %w", name, err)
			}
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return 0, 0, err
	}
	for _, id := range ids {
		for {
			res, err := b.docker.ContainerInspect(ctx, id, client.ContainerInspectOptions{})
			if err != nil {
				return 0, 0, fmt.Errorf("inspect: %w", err)
			}
			if st := res.Container.State; st != nil && st.Running {
				break
			} else if st != nil && st.Status == container.StateExited {
				return 0, 0, fmt.Errorf("container %s exited (%d) instead of running", shortContainerID(id), st.ExitCode)
			}
			if !sleepCtx(ctx, 10*time.Millisecond) {
				return 0, 0, ctx.Err()
			}
		}
	}
	running = time.Since(start).Seconds()
	if b.lastTimes, err = b.engineTimes(ctx, labels, start); err != nil {
		return running, 0, err
	}

	start = time.Now()
	g, gctx = errgroup.WithContext(ctx)
	for _, id := range ids {
		g.Go(func() error { return removeContainer(gctx, b.docker, id) })
	}
	if err := g.Wait(); err != nil {
		return running, 0, err
	}
	return running, time.Since(start).Seconds(), nil
}

// containerSpec is what the docker runtime creates for a burst workload
// (internal/runtime/docker spec.go): the same image, limits, init, stop
// timeout and restart policy.
func (b *burst) containerSpec(labels map[string]string) (*container.Config, *container.HostConfig) {
	init, stop := true, burstStopTimeout
	return &container.Config{Image: b.o.Image, Labels: labels, StopTimeout: &stop},
		&container.HostConfig{
			RestartPolicy: container.RestartPolicy{Name: container.RestartPolicyDisabled},
			Init:          &init,
			Resources:     container.Resources{NanoCPUs: b.o.CPUMillis * 1_000_000, Memory: b.o.MemoryBytes},
		}
}

// engineTimes reads the engine's created and started times of the
// containers with labels, relative to start.
func (b *burst) engineTimes(ctx context.Context, labels map[string]string, start time.Time) (EngineTimes, error) {
	ids, err := b.containers(ctx, labels)
	if err != nil {
		return EngineTimes{}, err
	}
	var t EngineTimes
	for i, id := range ids {
		res, err := b.docker.ContainerInspect(ctx, id, client.ContainerInspectOptions{})
		if err != nil {
			return EngineTimes{}, fmt.Errorf("inspect: %w", err)
		}
		created, err1 := time.Parse(time.RFC3339Nano, res.Container.Created)
		var started time.Time
		var err2 error
		if res.Container.State != nil {
			started, err2 = time.Parse(time.RFC3339Nano, res.Container.State.StartedAt)
		}
		if err := errors.Join(err1, err2); err != nil {
			return EngineTimes{}, fmt.Errorf("container %s: engine times: %w", shortContainerID(id), err)
		}
		c, s := created.Sub(start).Seconds(), started.Sub(start).Seconds()
		if i == 0 || c < t.FirstCreated {
			t.FirstCreated = c
		}
		t.LastCreated, t.LastStarted = max(t.LastCreated, c), max(t.LastStarted, s)
	}
	return t, nil
}

// waitGone waits until the engine holds no container with labels.
func (b *burst) waitGone(ctx context.Context, labels map[string]string) error {
	for {
		ids, err := b.containers(ctx, labels)
		if err != nil {
			return err
		}
		if len(ids) == 0 {
			return nil
		}
		if !sleepCtx(ctx, 50*time.Millisecond) {
			return fmt.Errorf("waiting for %d containers to go: %w", len(ids), ctx.Err())
		}
	}
}

// containers lists the ids of the containers, in any state, that carry
// every one of labels.
func (b *burst) containers(ctx context.Context, labels map[string]string) ([]string, error) {
	f := make(client.Filters)
	for k, v := range labels {
		f.Add("label", k+"="+v)
	}
	res, err := b.docker.ContainerList(ctx, client.ContainerListOptions{All: true, Filters: f})
	if err != nil {
		return nil, fmt.Errorf("container list: %w", err)
	}
	ids := make([]string, 0, len(res.Items))
	for _, c := range res.Items {
		ids = append(ids, c.ID)
	}
	return ids, nil
}

// cleanup stops the dev cluster, removes every container of the run (the
// dev node's too: an agent that stops leaves its containers running) and
// the dev cluster's data folder.
func (b *burst) cleanup(ctx context.Context) error {
	var errs []error
	if b.api != nil {
		b.api.Close()
	}
	if b.dev != nil {
		errs = append(errs, b.dev.stop())
	}
	ids, err := b.containers(ctx, map[string]string{BurstLabel: b.run})
	errs = append(errs, err)
	var mu sync.Mutex
	var wg sync.WaitGroup
	for _, id := range ids {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := removeContainer(ctx, b.docker, id); err != nil {
				mu.Lock()
				errs = append(errs, err)
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	if len(ids) > 0 {
		fmt.Fprintf(b.o.Progress, "burst: removed %d containers left by the run\n", len(ids))
	}
	if b.dev != nil && b.dev.dir != "" {
		errs = append(errs, os.RemoveAll(b.dev.dir))
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("bench: burst: cleanup: %w", err)
	}
	return nil
}

func removeContainer(ctx context.Context, docker *client.Client, id string) error {
	_, err := docker.ContainerRemove(ctx, id, client.ContainerRemoveOptions{Force: true, RemoveVolumes: true})
	if err != nil && !cerrdefs.IsNotFound(err) && !(cerrdefs.IsConflict(err) && strings.Contains(err.Error(), "already in progress")) {
		return fmt.Errorf("remove %s: %w", shortContainerID(id), err)
	}
	return nil
}

func shortContainerID(id string) string {
	if len(id) > 12 {
		return id[:12]
	}
	return id
}

// devLog is the dev cluster's output file in its data folder.
func devLog(dir string) string { return filepath.Join(dir, "dev.log") }
