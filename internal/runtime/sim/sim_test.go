package sim

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	persysv1 "github.com/persys-dev/compute/api/persys/v1"
	"github.com/persys-dev/compute/internal/runtime"
)

const (
	running = persysv1.ActualState_ACTUAL_STATE_RUNNING
	stopped = persysv1.ActualState_ACTUAL_STATE_STOPPED
	failed  = persysv1.ActualState_ACTUAL_STATE_FAILED
	missing = persysv1.ActualState_ACTUAL_STATE_MISSING
)

func inst(name, uid string, rev uint64, image string) runtime.Instance {
	return runtime.Instance{Name: name, UID: uid, Revision: rev, Spec: &persysv1.WorkloadSpec{
		Type:         persysv1.WorkloadType_WORKLOAD_TYPE_CONTAINER,
		DesiredState: persysv1.DesiredState_DESIRED_STATE_RUNNING,
		Container:    &persysv1.ContainerSpec{Image: image},
	}}
}

func stoppedInst(name, uid string, rev uint64) runtime.Instance {
	in := inst(name, uid, rev, "app:1")
	in.Spec.DesiredState = persysv1.DesiredState_DESIRED_STATE_STOPPED
	return in
}

func TestNew(t *testing.T) {
	tests := []struct {
		name    string
		opts    Options
		wantErr string
	}{
		{name: "zero options", opts: Options{}},
		{name: "delay and failures", opts: Options{ApplyDelay: time.Second, Seed: 7,
			FailImages: map[string]persysv1.FailureReason{"bad:1": persysv1.FailureReason_FAILURE_REASON_IMAGE_NOT_FOUND}}},
		{name: "negative delay", opts: Options{ApplyDelay: -time.Second}, wantErr: "ApplyDelay"},
		{name: "negative ready delay", opts: Options{ReadyDelay: -time.Second}, wantErr: "ReadyDelay"},
		{name: "empty image", opts: Options{FailImages: map[string]persysv1.FailureReason{"": persysv1.FailureReason_FAILURE_REASON_NETWORK}}, wantErr: "empty image"},
		{name: "unspecified reason", opts: Options{FailImages: map[string]persysv1.FailureReason{"x": 0}}, wantErr: `FailImages["x"]`},
		{name: "unknown reason", opts: Options{FailImages: map[string]persysv1.FailureReason{"x": 999}}, wantErr: `FailImages["x"]`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, err := New(tt.opts)
			if tt.wantErr == "" {
				if err != nil || r == nil {
					t.Fatalf("New = %v, %v", r, err)
				}
				if r.Type() != persysv1.WorkloadType_WORKLOAD_TYPE_CONTAINER {
					t.Fatalf("Type = %s", r.Type())
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("New error = %v, want it to contain %q", err, tt.wantErr)
			}
		})
	}
}

// step is one call on the runtime and what it must answer; after each
// step the runtime's Status of the step's workload is checked too.
type step struct {
	apply  *runtime.Instance
	delete *[2]string // name, uid
	kill   string

	wantState   persysv1.ActualState
	wantSkipped bool
	wantReason  persysv1.FailureReason // of the error (apply) or status
	wantExisted bool
	wantRev     uint64
	// sameID: the runtime id equals the one after the previous step.
	sameID bool
}

func ptr[T any](v T) *T { return &v }

func TestRuntime(t *testing.T) {
	failing := map[string]persysv1.FailureReason{
		"missing:1": persysv1.FailureReason_FAILURE_REASON_IMAGE_NOT_FOUND,
		"crash:1":   persysv1.FailureReason_FAILURE_REASON_CONTAINER_EXITED,
	}
	tests := []struct {
		name  string
		steps []step
	}{
		{name: "apply runs", steps: []step{
			{apply: ptr(inst("web", "u1", 1, "app:1")), wantState: running, wantRev: 1},
		}},
		{name: "same revision is skipped", steps: []step{
			{apply: ptr(inst("web", "u1", 1, "app:1")), wantState: running, wantRev: 1},
			{apply: ptr(inst("web", "u1", 1, "app:1")), wantState: running, wantSkipped: true, wantRev: 1, sameID: true},
		}},
		{name: "new revision replaces", steps: []step{
			{apply: ptr(inst("web", "u1", 1, "app:1")), wantState: running, wantRev: 1},
			{apply: ptr(inst("web", "u1", 2, "app:2")), wantState: running, wantRev: 2},
		}},
		{name: "new uid replaces", steps: []step{
			{apply: ptr(inst("web", "u1", 1, "app:1")), wantState: running, wantRev: 1},
			{apply: ptr(inst("web", "u2", 1, "app:1")), wantState: running, wantRev: 1},
		}},
		{name: "desired stopped", steps: []step{
			{apply: ptr(stoppedInst("web", "u1", 1)), wantState: stopped, wantRev: 1},
			{apply: ptr(stoppedInst("web", "u1", 1)), wantState: stopped, wantSkipped: true, wantRev: 1, sameID: true},
		}},
		{name: "scripted failure and its retry", steps: []step{
			{apply: ptr(inst("web", "u1", 1, "missing:1")), wantState: failed,
				wantReason: persysv1.FailureReason_FAILURE_REASON_IMAGE_NOT_FOUND, wantRev: 1},
			{apply: ptr(inst("web", "u1", 1, "missing:1")), wantState: failed,
				wantReason: persysv1.FailureReason_FAILURE_REASON_IMAGE_NOT_FOUND, wantRev: 1},
			{apply: ptr(inst("web", "u1", 2, "app:1")), wantState: running, wantRev: 2},
		}},
		{name: "scripted exit", steps: []step{
			{apply: ptr(inst("web", "u1", 1, "crash:1")), wantState: failed,
				wantReason: persysv1.FailureReason_FAILURE_REASON_CONTAINER_EXITED, wantRev: 1},
		}},
		{name: "kill fails a running workload and re-apply recovers it", steps: []step{
			{apply: ptr(inst("web", "u1", 1, "app:1")), wantState: running, wantRev: 1},
			{kill: "web", wantState: failed, wantReason: persysv1.FailureReason_FAILURE_REASON_CONTAINER_EXITED, wantRev: 1, sameID: true},
			{kill: "web", wantState: failed, wantReason: persysv1.FailureReason_FAILURE_REASON_CONTAINER_EXITED, wantRev: 1, sameID: true},
			{apply: ptr(inst("web", "u1", 1, "app:1")), wantState: running, wantRev: 1},
		}},
		{name: "kill of an unknown workload does nothing", steps: []step{
			{kill: "ghost", wantState: missing},
		}},
		{name: "delete", steps: []step{
			{apply: ptr(inst("web", "u1", 1, "app:1")), wantState: running, wantRev: 1},
			{delete: &[2]string{"web", ""}, wantExisted: true, wantState: missing},
			{delete: &[2]string{"web", ""}, wantState: missing},
		}},
		{name: "delete by uid keeps another uid", steps: []step{
			{apply: ptr(inst("web", "u2", 1, "app:1")), wantState: running, wantRev: 1},
			{delete: &[2]string{"web", "u1"}, wantState: running, wantRev: 1, sameID: true},
			{delete: &[2]string{"web", "u2"}, wantExisted: true, wantState: missing},
		}},
		{name: "invalid: no name", steps: []step{
			{apply: ptr(inst("", "u1", 1, "app:1")), wantReason: persysv1.FailureReason_FAILURE_REASON_INVALID_SPEC, wantState: missing},
		}},
		{name: "invalid: no uid", steps: []step{
			{apply: ptr(inst("web", "", 1, "app:1")), wantReason: persysv1.FailureReason_FAILURE_REASON_INVALID_SPEC, wantState: missing},
		}},
		{name: "invalid: no image", steps: []step{
			{apply: ptr(inst("web", "u1", 1, "")), wantReason: persysv1.FailureReason_FAILURE_REASON_INVALID_SPEC, wantState: missing},
		}},
		{name: "invalid: VM type", steps: []step{
			{apply: func() *runtime.Instance {
				in := inst("web", "u1", 1, "app:1")
				in.Spec.Type = persysv1.WorkloadType_WORKLOAD_TYPE_VM
				return &in
			}(), wantReason: persysv1.FailureReason_FAILURE_REASON_INVALID_SPEC, wantState: missing},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, err := New(Options{FailImages: failing, Seed: 1})
			if err != nil {
				t.Fatal(err)
			}
			ctx := t.Context()
			lastID := ""
			for i, s := range tt.steps {
				name := s.kill
				switch {
				case s.apply != nil:
					name = s.apply.Name
					st, skipped, err := r.Apply(ctx, *s.apply)
					if s.wantReason != 0 {
						if runtime.ReasonOf(err) != s.wantReason {
							t.Fatalf("step %d: Apply err = %v, want reason %s", i, err, s.wantReason)
						}
					} else if err != nil {
						t.Fatalf("step %d: Apply: %v", i, err)
					}
					if skipped != s.wantSkipped {
						t.Fatalf("step %d: skipped = %v, want %v", i, skipped, s.wantSkipped)
					}
					if err == nil && st.GetState() != s.wantState {
						t.Fatalf("step %d: Apply state = %s, want %s", i, st.GetState(), s.wantState)
					}
				case s.delete != nil:
					name = s.delete[0]
					existed, err := r.Delete(ctx, s.delete[0], s.delete[1])
					if err != nil || existed != s.wantExisted {
						t.Fatalf("step %d: Delete = %v, %v; want %v", i, existed, err, s.wantExisted)
					}
				default:
					r.Kill(s.kill)
				}
				if name == "" {
					continue
				}
				st, err := r.Status(ctx, name)
				if err != nil {
					t.Fatal(err)
				}
				if st.GetState() != s.wantState || st.GetRevision() != s.wantRev {
					t.Fatalf("step %d: Status = %v, want %s at revision %d", i, st, s.wantState, s.wantRev)
				}
				if st.GetState() == failed && st.GetReason() != s.wantReason {
					t.Fatalf("step %d: reason = %s, want %s", i, st.GetReason(), s.wantReason)
				}
				if st.GetState() != missing {
					if st.GetRuntimeId() == "" || st.GetUpdatedAt() == nil {
						t.Fatalf("step %d: status without runtime id or time: %v", i, st)
					}
					if s.sameID != (st.GetRuntimeId() == lastID) {
						t.Fatalf("step %d: runtime id %s, previous %s, want same = %v", i, st.GetRuntimeId(), lastID, s.sameID)
					}
				}
				lastID = st.GetRuntimeId()
			}
		})
	}
}

func TestListOrderedSnapshots(t *testing.T) {
	r, err := New(Options{})
	if err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()
	for _, n := range []string{"c", "a", "b"} {
		if _, _, err := r.Apply(ctx, inst(n, "u", 1, "app:1")); err != nil {
			t.Fatal(err)
		}
	}
	ws, err := r.List(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, w := range ws {
		names = append(names, w.GetName())
	}
	if strings.Join(names, ",") != "a,b,c" {
		t.Fatalf("List names = %v, want a,b,c", names)
	}
	// What List returned is a snapshot: a later change replaces the
	// status held instead of changing the one handed out.
	r.Kill("a")
	if ws[0].GetState() != running {
		t.Fatalf("a kill changed a status List had returned: %v", ws[0])
	}
	again, err := r.List(ctx)
	if err != nil || again[0].GetState() != failed {
		t.Fatalf("List after the kill: %v (%v), want a FAILED", again, err)
	}
	// Names that come and go keep the order, and a name applied again
	// lists its new revision once.
	if _, err := r.Delete(ctx, "b", ""); err != nil {
		t.Fatal(err)
	}
	for _, in := range []runtime.Instance{inst("bb", "u", 1, "app:1"), inst("a", "u", 2, "app:2"), inst("0", "u", 1, "app:1")} {
		if _, _, err := r.Apply(ctx, in); err != nil {
			t.Fatal(err)
		}
	}
	ws, err = r.List(ctx)
	if err != nil {
		t.Fatal(err)
	}
	names = names[:0]
	for _, w := range ws {
		names = append(names, fmt.Sprintf("%s@%d", w.GetName(), w.GetRevision()))
	}
	if got := strings.Join(names, ","); got != "0@1,a@2,bb@1,c@1" {
		t.Fatalf("List after a delete and three applies = %s, want 0@1,a@2,bb@1,c@1", got)
	}
}

func TestSeedMakesIDsReproducible(t *testing.T) {
	ids := func(seed int64) string {
		r, err := New(Options{Seed: seed})
		if err != nil {
			t.Fatal(err)
		}
		var out []string
		for i := range 3 {
			st, _, err := r.Apply(t.Context(), inst(fmt.Sprint("w", i), "u", 1, "app:1"))
			if err != nil {
				t.Fatal(err)
			}
			out = append(out, st.GetRuntimeId())
		}
		return strings.Join(out, ",")
	}
	a, b, c := ids(42), ids(42), ids(43)
	if a != b {
		t.Fatalf("same seed, different ids: %s vs %s", a, b)
	}
	if a == c {
		t.Fatalf("different seeds, same ids: %s", a)
	}
}

// waitState polls Status until the workload reaches want.
func waitState(t *testing.T, r *Runtime, name string, want persysv1.ActualState) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		st, err := r.Status(t.Context(), name)
		if err != nil {
			t.Fatal(err)
		}
		if st.GetState() == want {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s is %s, want %s", name, st.GetState(), want)
		}
		time.Sleep(time.Millisecond)
	}
}

func TestApplyDelay(t *testing.T) {
	t.Run("creating until the delay passes", func(t *testing.T) {
		r, err := New(Options{ApplyDelay: 100 * time.Millisecond})
		if err != nil {
			t.Fatal(err)
		}
		done := make(chan error, 1)
		go func() {
			st, _, err := r.Apply(context.Background(), inst("web", "u", 1, "app:1"))
			if err == nil && st.GetState() != running {
				err = fmt.Errorf("state %s", st.GetState())
			}
			done <- err
		}()
		waitState(t, r, "web", persysv1.ActualState_ACTUAL_STATE_CREATING)
		if err := <-done; err != nil {
			t.Fatalf("Apply: %v", err)
		}
		waitState(t, r, "web", running)
	})

	t.Run("cancelled during the delay", func(t *testing.T) {
		r, err := New(Options{ApplyDelay: time.Hour})
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() {
			_, _, err := r.Apply(ctx, inst("web", "u", 1, "app:1"))
			done <- err
		}()
		waitState(t, r, "web", persysv1.ActualState_ACTUAL_STATE_CREATING)
		cancel()
		if err := <-done; runtime.ReasonOf(err) != persysv1.FailureReason_FAILURE_REASON_RUNTIME_ERROR || err == nil {
			t.Fatalf("Apply err = %v, want RUNTIME_ERROR", err)
		}
		waitState(t, r, "web", failed)
	})

	t.Run("killed while creating", func(t *testing.T) {
		r, err := New(Options{ApplyDelay: time.Hour})
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		done := make(chan error, 1)
		go func() {
			_, _, err := r.Apply(ctx, inst("web", "u", 1, "app:1"))
			done <- err
		}()
		waitState(t, r, "web", persysv1.ActualState_ACTUAL_STATE_CREATING)
		r.Kill("web")
		cancel()
		if err := <-done; runtime.ReasonOf(err) != persysv1.FailureReason_FAILURE_REASON_CONTAINER_EXITED {
			t.Fatalf("Apply err = %v, want CONTAINER_EXITED", err)
		}
	})

	t.Run("superseded by a delete", func(t *testing.T) {
		r, err := New(Options{ApplyDelay: time.Hour})
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() {
			_, _, err := r.Apply(ctx, inst("web", "u", 1, "app:1"))
			done <- err
		}()
		waitState(t, r, "web", persysv1.ActualState_ACTUAL_STATE_CREATING)
		if existed, err := r.Delete(ctx, "web", ""); err != nil || !existed {
			t.Fatalf("Delete = %v, %v", existed, err)
		}
		cancel()
		if err := <-done; err == nil {
			t.Fatal("superseded Apply succeeded")
		}
		waitState(t, r, "web", missing)
	})
}

func TestWatch(t *testing.T) {
	r, err := New(Options{})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	ch, err := r.Watch(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range []string{"a", "b"} {
		if _, _, err := r.Apply(ctx, inst(n, "u", 1, "app:1")); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := r.Delete(ctx, "a", ""); err != nil {
		t.Fatal(err)
	}
	r.Kill("ghost") // unknown: no notification
	r.Kill("b")
	if got := <-ch; got != "b" {
		t.Fatalf("watch sent %q, want b (applies, deletes and unknown kills send nothing)", got)
	}
	cancel()
	for range ch {
		t.Fatal("watch sent after its context ended")
	}
	if _, err := r.Watch(ctx); err == nil {
		t.Fatal("Watch with an ended context succeeded")
	}
	r.Kill("b") // no watcher left; must not panic on a closed channel
}

func TestConcurrentUse(t *testing.T) {
	r, err := New(Options{ApplyDelay: time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	ch, err := r.Watch(ctx)
	if err != nil {
		t.Fatal(err)
	}
	go func() {
		for range ch {
		}
	}()
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 50 {
				name := fmt.Sprint("w", (g+i)%5)
				_, _, _ = r.Apply(ctx, inst(name, "u", uint64(i%3+1), "app:1"))
				r.Kill(name)
				_, _ = r.List(ctx)
				_, _ = r.Status(ctx, name)
				if i%7 == 0 {
					_, _ = r.Delete(ctx, name, "")
				}
			}
		}()
	}
	wg.Wait()
}

func TestVerifyAndZombies(t *testing.T) {
	ctx := t.Context()
	tests := []struct {
		name      string
		setup     func(r *Runtime)
		wantAlive bool
		wantState persysv1.ActualState
		detail    string
	}{
		{name: "running is alive", setup: func(r *Runtime) {}, wantAlive: true, wantState: running},
		{name: "zombie is reported running but is dead", setup: func(r *Runtime) { r.MakeZombie("web") },
			wantState: running, detail: "simulated zombie"},
		{name: "killed is dead", setup: func(r *Runtime) { r.Kill("web") }, wantState: failed, detail: "FAILED"},
		{name: "killing a zombie ends it", setup: func(r *Runtime) { r.MakeZombie("web"); r.Kill("web") },
			wantState: failed, detail: "FAILED"},
		{name: "same instance again stays a zombie (skipped)", setup: func(r *Runtime) {
			r.MakeZombie("web")
			if _, skipped, err := r.Apply(ctx, inst("web", "u", 1, "app:1")); err != nil || !skipped {
				t.Fatalf("re-apply of the zombie: skipped=%v err=%v", skipped, err)
			}
		}, wantState: running, detail: "simulated zombie"},
		{name: "new revision replaces a zombie", setup: func(r *Runtime) {
			r.MakeZombie("web")
			if _, _, err := r.Apply(ctx, inst("web", "u", 2, "app:1")); err != nil {
				t.Fatal(err)
			}
		}, wantAlive: true, wantState: running},
		{name: "deleted is dead", setup: func(r *Runtime) { r.MakeZombie("web"); _, _ = r.Delete(ctx, "web", "") },
			wantState: missing, detail: "no instance"},
		{name: "stopped cannot become a zombie", setup: func(r *Runtime) {
			if _, _, err := r.Apply(ctx, stoppedInst("web", "u", 2)); err != nil {
				t.Fatal(err)
			}
			r.MakeZombie("web")
		}, wantState: stopped, detail: "STOPPED"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, err := New(Options{})
			if err != nil {
				t.Fatal(err)
			}
			if _, _, err := r.Apply(ctx, inst("web", "u", 1, "app:1")); err != nil {
				t.Fatal(err)
			}
			tt.setup(r)
			alive, detail, err := r.Verify(ctx, "web")
			if err != nil || alive != tt.wantAlive || !strings.Contains(detail, tt.detail) {
				t.Fatalf("Verify = %v, %q, %v; want %v with %q", alive, detail, err, tt.wantAlive, tt.detail)
			}
			if st, _ := r.Status(ctx, "web"); st.GetState() != tt.wantState {
				t.Fatalf("Status = %v, want %s", st, tt.wantState)
			}
		})
	}
	r, _ := New(Options{})
	if _, _, err := r.Verify(ctx, ""); runtime.ReasonOf(err) != persysv1.FailureReason_FAILURE_REASON_INVALID_SPEC {
		t.Fatalf("Verify of an empty name: %v", err)
	}
}

// TestReadyDelay: a running instance is not ready (STARTING) until the
// delay passes, then ready (HEALTHY) and the watchers hear of it; without
// a delay no health is reported at all.
func TestReadyDelay(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	r, err := New(Options{ReadyDelay: 200 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	ch, err := r.Watch(ctx)
	if err != nil {
		t.Fatal(err)
	}
	st, _, err := r.Apply(ctx, inst("web", "u1", 1, "app:1"))
	if err != nil {
		t.Fatal(err)
	}
	if st.GetState() != running || st.GetReady() || st.GetHealth() != persysv1.HealthState_HEALTH_STATE_STARTING {
		t.Fatalf("right after apply: %s ready=%v health=%s, want RUNNING, not ready, STARTING", st.GetState(), st.GetReady(), st.GetHealth())
	}
	select {
	case name := <-ch:
		if name != "web" {
			t.Fatalf("watch sent %q, want web", name)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no notification after the ready delay")
	}
	st, err = r.Status(ctx, "web")
	if err != nil {
		t.Fatal(err)
	}
	if !st.GetReady() || st.GetHealth() != persysv1.HealthState_HEALTH_STATE_HEALTHY {
		t.Fatalf("after the delay: ready=%v health=%s, want ready, HEALTHY", st.GetReady(), st.GetHealth())
	}

	// A kill during the delay: never reported ready.
	if _, _, err := r.Apply(ctx, inst("db", "u2", 1, "app:1")); err != nil {
		t.Fatal(err)
	}
	r.Kill("db")
	<-ch // the kill
	time.Sleep(400 * time.Millisecond)
	if st, _ := r.Status(ctx, "db"); st.GetState() != failed || st.GetReady() {
		t.Fatalf("killed: %s ready=%v, want FAILED, not ready", st.GetState(), st.GetReady())
	}

	plain, err := New(Options{})
	if err != nil {
		t.Fatal(err)
	}
	st, _, err = plain.Apply(ctx, inst("web", "u1", 1, "app:1"))
	if err != nil {
		t.Fatal(err)
	}
	if st.GetReady() || st.GetHealth() != persysv1.HealthState_HEALTH_STATE_UNSPECIFIED {
		t.Fatalf("without a delay: ready=%v health=%s, want no health reported", st.GetReady(), st.GetHealth())
	}
}
