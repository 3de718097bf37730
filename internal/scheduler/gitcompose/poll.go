package gitcompose

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	persysv1 "github.com/persys-dev/compute/api/persys/v1"
	"github.com/persys-dev/compute/internal/gitsource"
	"github.com/persys-dev/compute/internal/model"
	"github.com/persys-dev/compute/internal/principal"
	"github.com/persys-dev/compute/internal/store"
)

// pollTick is how often the poller looks for Git sources due a poll.
const pollTick = 5 * time.Second

// Poller re-resolves the ref of every compose workload whose Git source
// sets a poll interval, and writes a new revision when the commit moved.
// Events say which commit replaced which.
type Poller struct {
	Store   *store.Store
	Fetcher *Fetcher
	// Each calls fn with at least every workload whose Git source has a
	// poll interval (statecache.Cache.EachGitPolled).
	Each func(fn func(name string, w *persysv1.Workload, lastReason persysv1.FailureReason))
	// Prepare checks and completes a spec for who as an apply does,
	// resolving its Git ref again.
	Prepare func(ctx context.Context, who principal.Principal, spec *persysv1.WorkloadSpec) error
	// Written tells the scheduler of a revision the poller wrote at rev.
	Written func(w *persysv1.Workload, rev int64)
	// Event records an event.
	Event  func(t model.EventType, ev *persysv1.Event)
	Logger *slog.Logger
	Now    func() time.Time
}

// Run polls until ctx ends.
func (p *Poller) Run(ctx context.Context) {
	last := map[string]time.Time{}
	t := time.NewTicker(pollTick)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		now := p.Now()
		type due struct {
			name string
			w    *persysv1.Workload
		}
		var todo []due
		p.Each(func(name string, w *persysv1.Workload, _ persysv1.FailureReason) {
			g := w.GetSpec().GetCompose().GetGit()
			if g.GetPollIntervalSeconds() <= 0 || w.GetDeleting() {
				return
			}
			if now.Sub(last[name]) >= time.Duration(g.GetPollIntervalSeconds())*time.Second {
				todo = append(todo, due{name, w})
			}
		})
		for _, d := range todo {
			last[d.name] = now
			p.poll(ctx, d.name, d.w)
		}
	}
}

func (p *Poller) poll(ctx context.Context, name string, w *persysv1.Workload) {
	g := w.GetSpec().GetCompose().GetGit()
	auth, err := p.Fetcher.Auth(ctx, g)
	if err == nil {
		var commit string
		commit, err = gitsource.Resolve(ctx, g, auth)
		if err == nil && commit == g.GetResolvedCommit() {
			return
		}
		if err == nil {
			next := proto.Clone(w).(*persysv1.Workload)
			spec := next.GetSpec()
			if err = p.Prepare(ctx, principal.OfWorkload(w), spec); err == nil {
				err = p.writeRevision(ctx, name, w, next, g.GetResolvedCommit(), spec.GetCompose().GetGit().GetResolvedCommit())
			}
		}
	}
	if err != nil && ctx.Err() == nil {
		p.Logger.Warn("git poll failed", "workload", name, "url", gitsource.RedactURL(g.GetUrl()), "ref", g.GetRef(), "err", err)
		p.Event(model.EventGitPollFailed, &persysv1.Event{Workload: name, Revision: w.GetRevision(),
			Reason: persysv1.FailureReason_FAILURE_REASON_GIT_FETCH_FAILED, Message: err.Error()})
	}
}

// writeRevision stores next as a new revision unless the workload changed
// meanwhile (a user's apply wins; the next poll looks again).
func (p *Poller) writeRevision(ctx context.Context, name string, cur, next *persysv1.Workload, from, to string) error {
	stored, rev, err := p.Store.GetWorkload(ctx, name)
	if err != nil {
		return err
	}
	if stored.GetRevision() != cur.GetRevision() || stored.GetUid() != cur.GetUid() || stored.GetDeleting() {
		return nil
	}
	next.Revision = cur.GetRevision() + 1
	next.UpdatedAt = timestamppb.New(p.Now())
	newRev, err := p.Store.UpdateWorkload(ctx, next, rev)
	if errors.Is(err, store.ErrConflict) {
		return nil
	}
	if err != nil {
		return err
	}
	p.Written(next, newRev)
	ref := next.GetSpec().GetCompose().GetGit().GetRef()
	p.Logger.Info("git ref moved", "workload", name, "ref", ref, "from", from, "to", to, "revision", next.GetRevision())
	p.Event(model.EventGitCommitChanged, &persysv1.Event{Workload: name, Revision: next.GetRevision(),
		Message: fmt.Sprintf("ref %s moved from %.12s to %.12s: revision %d", ref, from, to, next.GetRevision())})
	return nil
}
