package gitcompose

import (
	"context"
	"log/slog"
	"testing"
	"time"

	persysv1 "github.com/persys-dev/compute/api/persys/v1"
	"github.com/persys-dev/compute/internal/model"
	"github.com/persys-dev/compute/internal/principal"
	"github.com/persys-dev/compute/internal/store/storetest"
	"github.com/persys-dev/compute/internal/testutil/gitserver"
)

// A poll finds the ref moved, reads the new commit's file and writes a
// new revision naming it; a poll that finds it where it was writes
// nothing.
func TestPollWritesARevisionWhenTheRefMoves(t *testing.T) {
	ctx := context.Background()
	st, _ := storetest.New(t)
	repo := gitserver.New(t).Repo(t, "app", false)
	first := repo.Commit(t, map[string]string{"compose.yaml": "services:\n  web:\n    image: hello:1\n"}, "first")

	f := NewFetcher(t.TempDir(), nil)
	var written []*persysv1.Workload
	var events []model.EventType
	p := &Poller{Store: st, Fetcher: f, Logger: slog.New(slog.DiscardHandler), Now: time.Now,
		Prepare: func(ctx context.Context, _ principal.Principal, spec *persysv1.WorkloadSpec) error {
			commit, _, err := f.Fetch(ctx, spec.GetCompose().GetGit())
			spec.GetCompose().GetGit().ResolvedCommit = commit
			return err
		},
		Written: func(w *persysv1.Workload, _ int64) { written = append(written, w) },
		Event:   func(t model.EventType, _ *persysv1.Event) { events = append(events, t) },
	}
	w := &persysv1.Workload{Name: "app", Uid: "u1", Revision: 1, Spec: &persysv1.WorkloadSpec{
		Type: persysv1.WorkloadType_WORKLOAD_TYPE_COMPOSE,
		Compose: &persysv1.ComposeSpec{Git: &persysv1.GitSource{Url: repo.URL, Ref: "main", Path: "compose.yaml",
			ResolvedCommit: first, PollIntervalSeconds: 1}}}}
	if _, err := st.CreateWorkload(ctx, w); err != nil {
		t.Fatal(err)
	}

	p.poll(ctx, "app", w)
	if len(written) != 0 || len(events) != 0 {
		t.Fatalf("a poll of an unmoved ref wrote %d revisions and %v", len(written), events)
	}
	second := repo.Commit(t, map[string]string{"compose.yaml": "services:\n  web:\n    image: hello:2\n"}, "second")
	p.poll(ctx, "app", w)
	stored, _, err := st.GetWorkload(ctx, "app")
	if err != nil {
		t.Fatal(err)
	}
	if stored.GetRevision() != 2 || stored.GetSpec().GetCompose().GetGit().GetResolvedCommit() != second {
		t.Fatalf("stored revision %d at %s, want 2 at %s", stored.GetRevision(),
			stored.GetSpec().GetCompose().GetGit().GetResolvedCommit(), second)
	}
	if len(written) != 1 || len(events) != 1 || events[0] != model.EventGitCommitChanged {
		t.Fatalf("wrote %d revisions to the cache and events %v, want 1 and [%s]", len(written), events, model.EventGitCommitChanged)
	}
}
