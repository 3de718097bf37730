package docker

import (
	"context"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/moby/moby/client"

	persysv1 "github.com/persys-dev/compute/api/persys/v1"
	"github.com/persys-dev/compute/internal/runtime"
	"github.com/persys-dev/compute/internal/testutil/images"
)

// cutEventStream ends the follower's current event stream, as a broken
// connection to the engine would.
func (r *Runtime) cutEventStream() {
	r.fol.mu.Lock()
	cut := r.fol.cut
	r.fol.mu.Unlock()
	if cut != nil {
		cut()
	}
}

// newCountedEnv is newEnv on a client whose requests are counted, scoped
// to a node of its own so its cache holds only the test's containers.
// onGap, when set, runs in each event stream gap.
func newCountedEnv(t *testing.T, onGap func()) (*env, *apiCounter) {
	t.Helper()
	cli, tag := images.HelloImage(t)
	cc, counter := countingClient(t, cli)
	rt, err := New(Options{
		Client:      cc,
		Logger:      slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelDebug})),
		StopTimeout: 2 * time.Second,
		NodeID:      "t-" + randHex(t, 4),
		SecretsDir:  t.TempDir(),
	})
	if err != nil {
		t.Fatal(err)
	}
	rt.fol.onGap = onGap
	t.Cleanup(func() { _ = rt.Close() })
	return &env{t: t, cli: cli, rt: rt, img: tag}, counter
}

// watched collects the names a Watch sends.
type watched struct {
	mu    sync.Mutex
	names map[string]bool
}

func (w *watched) seen(name string) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.names[name]
}

// watchLive starts a Watch (as the agent does) and waits until the status
// cache answers.
func watchLive(t *testing.T, rt *Runtime) *watched {
	t.Helper()
	ctx, cancel := context.WithCancel(t.Context())
	t.Cleanup(cancel)
	ch, err := rt.Watch(ctx)
	if err != nil {
		t.Fatal(err)
	}
	w := &watched{names: map[string]bool{}}
	go func() {
		for n := range ch {
			w.mu.Lock()
			w.names[n] = true
			w.mu.Unlock()
		}
	}()
	eventually(t, 30*time.Second, "status cache live", func() (bool, string) {
		_, ok := rt.cache.list(rt.cluster.Owns)
		return ok, "cache not live"
	})
	return w
}

// listedState returns the workload's status in List, nil when absent.
func listedState(t *testing.T, rt *Runtime, name string) *persysv1.WorkloadStatus {
	t.Helper()
	ws, err := rt.List(t.Context())
	if err != nil {
		t.Fatalf("List: %v", err)
	}
	for _, w := range ws {
		if w.GetName() == name {
			return w
		}
	}
	return nil
}

func killedState(st *persysv1.WorkloadStatus) (bool, string) {
	return st.GetState() == persysv1.ActualState_ACTUAL_STATE_FAILED && st.GetExitCode() == 137, st.String()
}

// TestListFollowsEvents kills and then removes a container behind the
// runtime's back and expects List, answered from the cache without a
// single container list call, to show it exited and then gone.
func TestListFollowsEvents(t *testing.T) {
	t.Parallel()
	e, counter := newCountedEnv(t, nil)
	name, uid := e.workload("follow")
	st, _ := e.apply(runtime.Instance{Name: name, UID: uid, Revision: 1, Spec: e.spec(&persysv1.ContainerSpec{})})

	counter.reset()
	if got := listedState(t, e.rt, name); got.GetState() != persysv1.ActualState_ACTUAL_STATE_RUNNING {
		t.Fatalf("List before any Watch = %v, want RUNNING", got)
	}
	if counter.get("list") == 0 {
		t.Fatal("List without a Watch did not ask the engine")
	}

	w := watchLive(t, e.rt)
	counter.reset()
	if got := listedState(t, e.rt, name); got.GetState() != persysv1.ActualState_ACTUAL_STATE_RUNNING {
		t.Fatalf("List from the cache = %v, want RUNNING", got)
	}
	if counts, total := counter.counts(); total != 0 {
		t.Fatalf("List from the cache made engine calls: %v", counts)
	}

	if _, err := e.cli.ContainerKill(t.Context(), st.GetRuntimeId(), client.ContainerKillOptions{}); err != nil {
		t.Fatal(err)
	}
	eventually(t, 30*time.Second, "List shows the killed container exited", func() (bool, string) {
		return killedState(listedState(t, e.rt, name))
	})
	if !w.seen(name) {
		// The name is sent after the cache is updated, so it may come
		// just after; it must come.
		eventually(t, 30*time.Second, "Watch sends the killed workload", func() (bool, string) {
			return w.seen(name), "not sent"
		})
	}

	if _, err := e.cli.ContainerRemove(t.Context(), st.GetRuntimeId(), client.ContainerRemoveOptions{Force: true}); err != nil {
		t.Fatal(err)
	}
	eventually(t, 30*time.Second, "List drops the removed container", func() (bool, string) {
		got := listedState(t, e.rt, name)
		return got == nil, got.String()
	})
	if n := counter.get("list"); n != 0 {
		t.Fatalf("the runtime listed containers %d times while following events", n)
	}
}

// TestListRelistsAfterGap breaks the event stream, kills one container
// and removes another while the runtime is cut off, and expects List to
// be right during the gap (live) and after it (from the re-listed cache).
func TestListRelistsAfterGap(t *testing.T) {
	t.Parallel()
	inGap, resume := make(chan struct{}), make(chan struct{})
	var gapOnce, resumeOnce sync.Once
	release := func() { resumeOnce.Do(func() { close(resume) }) }
	e, counter := newCountedEnv(t, func() {
		gapOnce.Do(func() {
			close(inGap)
			<-resume
		})
	})
	t.Cleanup(release) // runs before Close, which waits for the follower
	killName, uid := e.workload("gapkill")
	killed, _ := e.apply(runtime.Instance{Name: killName, UID: uid, Revision: 1, Spec: e.spec(&persysv1.ContainerSpec{})})
	rmName, uid2 := e.workload("gaprm")
	removed, _ := e.apply(runtime.Instance{Name: rmName, UID: uid2, Revision: 1, Spec: e.spec(&persysv1.ContainerSpec{})})
	w := watchLive(t, e.rt)

	e.rt.cutEventStream()
	<-inGap
	if _, err := e.cli.ContainerKill(t.Context(), killed.GetRuntimeId(), client.ContainerKillOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := e.cli.ContainerRemove(t.Context(), removed.GetRuntimeId(), client.ContainerRemoveOptions{Force: true}); err != nil {
		t.Fatal(err)
	}
	// In the gap the cache is stale: List asks the engine.
	if _, live := e.rt.cache.list(e.rt.cluster.Owns); live {
		t.Fatal("cache still answers in an event stream gap")
	}
	if ok, detail := killedState(listedState(t, e.rt, killName)); !ok {
		t.Fatalf("List in the gap: killed workload = %s", detail)
	}
	if got := listedState(t, e.rt, rmName); got != nil {
		t.Fatalf("List in the gap: removed workload = %v", got)
	}

	counter.reset()
	release()
	eventually(t, 30*time.Second, "cache re-listed", func() (bool, string) {
		_, live := e.rt.cache.list(e.rt.cluster.Owns)
		return live && counter.get("list") > 0, "not re-listed"
	})
	if ok, detail := killedState(listedState(t, e.rt, killName)); !ok {
		t.Errorf("List after the re-list: killed workload = %s", detail)
	}
	if got := listedState(t, e.rt, rmName); got != nil {
		t.Errorf("List after the re-list: removed workload = %v", got)
	}
	eventually(t, 30*time.Second, "Watch sends both workloads changed in the gap", func() (bool, string) {
		return w.seen(killName) && w.seen(rmName), "not both sent"
	})
	if n := counter.get("list"); n != 1 {
		t.Errorf("container lists after the gap = %d, want the one re-list", n)
	}
}

// TestCloseStopsFollowing: after Close the cache no longer answers and
// List asks the engine again.
func TestCloseStopsFollowing(t *testing.T) {
	t.Parallel()
	e, counter := newCountedEnv(t, nil)
	name, uid := e.workload("close")
	e.apply(runtime.Instance{Name: name, UID: uid, Revision: 1, Spec: e.spec(&persysv1.ContainerSpec{})})
	watchLive(t, e.rt)
	if err := e.rt.Close(); err != nil {
		t.Fatal(err)
	}
	counter.reset()
	if got := listedState(t, e.rt, name); got == nil {
		t.Fatal("List after Close lost the workload")
	}
	if counter.get("list") == 0 {
		t.Fatal("List after Close answered from a cache nobody feeds")
	}
	e.rt.fol.lifeMu.Lock()
	running := e.rt.fol.cancel != nil
	e.rt.fol.lifeMu.Unlock()
	if running {
		t.Fatal("follower still running after Close")
	}
}

// TestCacheFollowsClusterID: the agent learns its cluster id after the
// runtime started following; the cache then lists the cluster's
// containers at once, without a re-list.
func TestCacheFollowsClusterID(t *testing.T) {
	t.Parallel()
	e, counter := newCountedEnv(t, nil)
	cluster := runtime.NewCluster()
	e.rt.cluster = cluster // not yet known, as at the agent's start
	known := runtime.NewCluster()
	known.Set("cluster-"+randHex(t, 4), false)
	other, err := New(Options{Client: e.cli, StopTimeout: 2 * time.Second, NodeID: e.rt.nodeID, Cluster: known, SecretsDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	name, uid := e.workload("clusterid")
	if _, _, err := other.Apply(t.Context(), runtime.Instance{Name: name, UID: uid, Revision: 1, Spec: e.spec(&persysv1.ContainerSpec{})}); err != nil {
		t.Fatal(err)
	}
	// Let the container's events fall out of the window the follower
	// replays when it opens, so only the re-list can bring it in.
	time.Sleep(replayMargin + 100*time.Millisecond)
	watchLive(t, e.rt)
	if got := listedState(t, e.rt, name); got != nil {
		t.Fatalf("listed before the cluster id is known: %v", got)
	}
	counter.reset()
	cluster.Set(known.ID(), false)
	if got := listedState(t, e.rt, name); got.GetState() != persysv1.ActualState_ACTUAL_STATE_RUNNING {
		t.Fatalf("after the cluster id is known: %v, want RUNNING", got)
	}
	if counts, total := counter.counts(); total != 0 {
		t.Fatalf("List after the cluster id asked the engine: %v", counts)
	}
}
