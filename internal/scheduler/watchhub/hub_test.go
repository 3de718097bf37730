package watchhub_test

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	persysv1 "github.com/persys-dev/compute/api/persys/v1"
	"github.com/persys-dev/compute/internal/scheduler/watchhub"
	"github.com/persys-dev/compute/internal/store"
	"github.com/persys-dev/compute/internal/store/storetest"
)

func startHub(t testing.TB, cfg watchhub.Config) (*watchhub.Hub, *store.Store) {
	t.Helper()
	st, _ := storetest.New(t)
	cfg.Source = st
	h := watchhub.New(cfg)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = h.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	return h, st
}

func workload(name string, labels map[string]string) *persysv1.Workload {
	return &persysv1.Workload{Name: name, Uid: "uid-" + name, Labels: labels, Revision: 1}
}

// next reads one item, failing the test after a generous bound instead
// of hanging.
func next(t *testing.T, w *watchhub.Watcher) *watchhub.Item {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	it, err := w.Next(ctx)
	if err != nil {
		t.Fatalf("next: %v", err)
	}
	return it
}

// nextChange skips bookmarks.
func nextChange(t *testing.T, w *watchhub.Watcher) *watchhub.Item {
	t.Helper()
	for {
		if it := next(t, w); it.Op != watchhub.OpBookmark {
			return it
		}
	}
}

func describe(it *watchhub.Item) string {
	op := map[watchhub.Op]string{watchhub.OpSnapshot: "SNAPSHOT", watchhub.OpPut: "PUT", watchhub.OpDelete: "DELETE"}[it.Op]
	return op + " " + it.Workload.GetWorkload().GetName()
}

func TestSnapshotThenChangesAndResume(t *testing.T) {
	h, st := startHub(t, watchhub.Config{})
	ctx := context.Background()
	if _, err := st.CreateWorkload(ctx, workload("a", nil)); err != nil {
		t.Fatal(err)
	}
	// The hub may load before or after "a": wait until a list shows it.
	var w *watchhub.Watcher
	for range 100 {
		var err error
		w, err = h.Watch(ctx, watchhub.Request{Kind: watchhub.Workloads})
		if err != nil {
			t.Fatal(err)
		}
		if it := next(t, w); it.Op == watchhub.OpSnapshot {
			break
		}
		w.Close()
		w = nil
		time.Sleep(20 * time.Millisecond)
	}
	if w == nil {
		t.Fatal("the list never showed workload a")
	}
	if it := next(t, w); it.Op != watchhub.OpBookmark {
		t.Fatalf("after the snapshot: %v, want a bookmark", describe(it))
	}
	res := st.CreateWorkloads(ctx, []*persysv1.Workload{workload("b", nil), workload("c", nil)})
	for _, r := range res {
		if r.Err != nil {
			t.Fatal(r.Err)
		}
	}
	b := nextChange(t, w)
	c := nextChange(t, w)
	if describe(b) != "PUT b" || describe(c) != "PUT c" || b.Revision != c.Revision || b.Index != 0 || c.Index != 1 {
		t.Fatalf("got %s@%d.%d, %s@%d.%d; want PUT b and PUT c in one revision, indexes 0 and 1",
			describe(b), b.Revision, b.Index, describe(c), c.Revision, c.Index)
	}
	w.Close()

	// Resume after b: only c, exactly once.
	r, err := h.Watch(ctx, watchhub.Request{Kind: watchhub.Workloads, Since: watchhub.Position{Revision: b.Revision, Index: b.Index}})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	if it := nextChange(t, r); describe(it) != "PUT c" {
		t.Fatalf("resumed with %s, want PUT c", describe(it))
	}
	if _, err := st.CreateWorkload(ctx, workload("d", nil)); err != nil {
		t.Fatal(err)
	}
	if it := nextChange(t, r); describe(it) != "PUT d" {
		t.Fatalf("then %s, want PUT d", describe(it))
	}
}

func TestCompactedPosition(t *testing.T) {
	h, st := startHub(t, watchhub.Config{RingSize: 4})
	ctx := context.Background()
	w, err := h.Watch(ctx, watchhub.Request{Kind: watchhub.Workloads})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	var first *watchhub.Item
	for i := range 10 {
		if _, err := st.CreateWorkload(ctx, workload(fmt.Sprintf("w%d", i), nil)); err != nil {
			t.Fatal(err)
		}
		if it := nextChange(t, w); first == nil {
			first = it
		}
	}
	_, err = h.Watch(ctx, watchhub.Request{Kind: watchhub.Workloads, Since: watchhub.Position{Revision: first.Revision, Index: watchhub.WholeRevision}})
	if !errors.Is(err, watchhub.ErrCompacted) {
		t.Fatalf("resume from an evicted revision: %v, want ErrCompacted", err)
	}
	_, err = h.Watch(ctx, watchhub.Request{Kind: watchhub.Workloads, Since: watchhub.Position{Revision: 1, Index: watchhub.WholeRevision}})
	if !errors.Is(err, watchhub.ErrCompacted) {
		t.Fatalf("resume from before the load: %v, want ErrCompacted", err)
	}
}

func TestSlowWatcherIsCutOff(t *testing.T) {
	h, st := startHub(t, watchhub.Config{Buffer: 4})
	ctx := context.Background()
	slow, err := h.Watch(ctx, watchhub.Request{Kind: watchhub.Workloads})
	if err != nil {
		t.Fatal(err)
	}
	defer slow.Close()
	fast, err := h.Watch(ctx, watchhub.Request{Kind: watchhub.Workloads})
	if err != nil {
		t.Fatal(err)
	}
	defer fast.Close()
	for i := range 10 {
		if _, err := st.CreateWorkload(ctx, workload(fmt.Sprintf("w%d", i), nil)); err != nil {
			t.Fatal(err)
		}
		nextChange(t, fast) // keeps up
	}
	var got int
	for {
		cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		it, err := slow.Next(cctx)
		cancel()
		if err != nil {
			if !errors.Is(err, watchhub.ErrFellBehind) {
				t.Fatalf("slow watcher ended with %v, want ErrFellBehind", err)
			}
			break
		}
		if it.Op == watchhub.OpPut {
			got++
		}
	}
	if got >= 10 {
		t.Fatalf("slow watcher got all %d changes; want it cut off", got)
	}
}

func TestSelectorSeesLeaveAsDelete(t *testing.T) {
	h, st := startHub(t, watchhub.Config{})
	ctx := context.Background()
	w, err := h.Watch(ctx, watchhub.Request{Kind: watchhub.Workloads, Selector: map[string]string{"app": "web"}})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	rev, err := st.CreateWorkload(ctx, workload("x", map[string]string{"app": "web"}))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := st.CreateWorkload(ctx, workload("y", map[string]string{"app": "db"})); err != nil {
		t.Fatal(err)
	}
	if _, err := st.UpdateWorkload(ctx, workload("x", map[string]string{"app": "db"}), rev); err != nil {
		t.Fatal(err)
	}
	var got []string
	for range 2 {
		got = append(got, describe(nextChange(t, w)))
	}
	if got[0] != "PUT x" || got[1] != "DELETE x" {
		t.Fatalf("got %v, want [PUT x DELETE x]", got)
	}
}
