package scheduler

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	persysv1 "github.com/persys-dev/compute/api/persys/v1"
	"github.com/persys-dev/compute/internal/pki"
	"github.com/persys-dev/compute/internal/principal"
	"github.com/persys-dev/compute/internal/store/storetest"
	"github.com/persys-dev/compute/internal/testutil/gitserver"
)

// Many applies of one repository at once, at two branches whose compose
// files differ, over http and git://, on a cold and then a warm cache:
// every apply succeeds and stores its own branch's commit and the
// resources derived from that commit's compose file. (A shared work tree
// per URL once failed most of them and gave some the other branch's file.)
func TestConcurrentGitAppliesReadTheirOwnCommit(t *testing.T) {
	const perRound = 200
	// The user's cache folder must stay untouched.
	userCache := t.TempDir()
	t.Setenv("XDG_CACHE_HOME", userCache)
	cacheDir := filepath.Join(t.TempDir(), "data", "git-cache")

	srv := gitserver.New(t)
	repo := srv.Repo(t, "app", false)
	compose := func(cpus, mem string) string {
		return fmt.Sprintf("services:\n  web:\n    image: hello:1\n    cpus: %s\n    mem_limit: %s\n", cpus, mem)
	}
	type ref struct {
		name, commit string
		cpuMillis    int64
		memoryBytes  int64
	}
	refs := []ref{{name: "one", cpuMillis: 100, memoryBytes: 16 << 20}, {name: "two", cpuMillis: 200, memoryBytes: 32 << 20}}
	repo.Branch(t, "one")
	refs[0].commit = repo.Commit(t, map[string]string{"compose.yaml": compose("0.1", "16m")}, "one")
	repo.Branch(t, "two")
	refs[1].commit = repo.Commit(t, map[string]string{"compose.yaml": compose("0.2", "32m")}, "two")

	st, _ := storetest.New(t)
	s, err := New(Config{Store: st, Logger: slog.New(slog.DiscardHandler), GitCacheDir: cacheDir})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = s.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	for ready := time.Now().Add(30 * time.Second); s.Ready() != nil; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(ready) {
			t.Fatalf("scheduler not ready after 30s: %v", s.Ready())
		}
	}
	svc := s.Service()
	// Calls made in process carry the identity UnaryAuth would have set.
	ctx = principal.WithIdentity(ctx, pki.Identity{CommonName: "admin", Role: pki.RoleAdmin})

	for _, transport := range []struct{ name, url string }{
		{"http", repo.URL},
		{"git", repo.DaemonURL(t)},
	} {
		// The first round of a URL finds no cache, the second a warm one.
		for _, round := range []string{"cold", "warm"} {
			var wg sync.WaitGroup
			errs := make([]error, perRound)
			for i := range perRound {
				wg.Add(1)
				go func() {
					defer wg.Done()
					r := refs[i%2]
					_, errs[i] = svc.ApplyWorkload(ctx, &persysv1.ApplyRequest{
						Name: fmt.Sprintf("%s-%s-%d", transport.name, round, i),
						Spec: &persysv1.WorkloadSpec{
							Type:         persysv1.WorkloadType_WORKLOAD_TYPE_COMPOSE,
							DesiredState: persysv1.DesiredState_DESIRED_STATE_RUNNING,
							Compose:      &persysv1.ComposeSpec{Git: &persysv1.GitSource{Url: transport.url, Ref: r.name}},
						},
					})
				}()
			}
			wg.Wait()
			failed := 0
			for i, err := range errs {
				name := fmt.Sprintf("%s-%s-%d", transport.name, round, i)
				if err != nil {
					if failed++; failed <= 5 {
						t.Errorf("%s: apply: %v", name, err)
					}
					continue
				}
				w, _, err := st.GetWorkload(ctx, name)
				if err != nil {
					t.Errorf("%s: read back: %v", name, err)
					continue
				}
				want := refs[i%2]
				spec := w.GetSpec()
				if got := spec.GetCompose().GetGit().GetResolvedCommit(); got != want.commit {
					t.Errorf("%s (ref %s): resolved_commit %s, want %s", name, want.name, got, want.commit)
				}
				if cpu, mem := spec.GetResources().GetCpuMillis(), spec.GetResources().GetMemoryBytes(); cpu != want.cpuMillis || mem != want.memoryBytes {
					t.Errorf("%s (ref %s): resources from the compose file %d millicpu %d bytes, want %d and %d (the other branch's file?)",
						name, want.name, cpu, mem, want.cpuMillis, want.memoryBytes)
				}
			}
			if failed > 0 {
				t.Errorf("%s %s cache: %d of %d applies failed", transport.name, round, failed, perRound)
			}
		}
	}

	// One bare clone per URL, in the configured folder only.
	if fi, err := os.Stat(cacheDir); err != nil || fi.Mode().Perm() != 0o700 {
		t.Errorf("GitCacheDir: %v, %v; want a folder of mode 0700", fi, err)
	}
	clones, _ := filepath.Glob(filepath.Join(cacheDir, "*", "HEAD"))
	if len(clones) != 2 {
		t.Errorf("GitCacheDir holds %d bare clones, want 2 (http and git://): %v", len(clones), clones)
	}
	if left, _ := os.ReadDir(userCache); len(left) != 0 {
		t.Errorf("the user's cache folder holds %v", left)
	}
}
