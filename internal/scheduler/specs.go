package scheduler

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/persys-dev/compute/api/persys/contract/rpcreason"
	persysv1 "github.com/persys-dev/compute/api/persys/v1"
	"github.com/persys-dev/compute/internal/authz"
	"github.com/persys-dev/compute/internal/cloudinit"
	"github.com/persys-dev/compute/internal/composespec"
	"github.com/persys-dev/compute/internal/gitsource"
	"github.com/persys-dev/compute/internal/hostaccess/specaccess"
	"github.com/persys-dev/compute/internal/manifest"
	"github.com/persys-dev/compute/internal/model"
	"github.com/persys-dev/compute/internal/principal"
	"github.com/persys-dev/compute/internal/store"
)

// prepareSpec checks what the manifest rules cannot see (the compose file,
// cloud-init documents) and fills in what the scheduler derives, before
// anything is stored: the commit a Git ref names (so a new commit becomes a
// new revision only when the ref is resolved again), for compose
// workloads that declare no resources, the sum of the services' limits,
// and for every workload what it asks of its host (host_access). Then it
// checks that p may ask for that (host access, the secrets referenced).
func (s *Scheduler) prepareSpec(ctx context.Context, p principal.Principal, spec *persysv1.WorkloadSpec) error {
	if vm := spec.GetVm(); vm != nil {
		if err := cloudinit.Validate(vm.GetCloudInit(), vm.GetLogin()); err != nil {
			return cloudInitError(err)
		}
	}
	if err := s.secrets.CheckUse(ctx, p, spec); err != nil {
		return err
	}
	spec.HostAccess = nil // derived here, never taken from the caller
	if cs := spec.GetCompose(); cs != nil {
		if err := s.prepareCompose(ctx, spec); err != nil {
			return err
		}
	} else {
		spec.HostAccess = specaccess.ToProto(specaccess.Of(spec))
	}
	if field, what, ok := specaccess.FromProto(spec.GetHostAccess()).HostField(); ok {
		return p.Require(authz.WorkloadsHost, field, what)
	}
	return nil
}

// prepareCompose validates a compose spec, resolves its Git ref, and
// derives its resources (when none are declared) and host access from
// the parsed file. The file is parsed with every host-level refusal
// relaxed: what it asks for is checked against the caller's permission
// (prepareSpec) and each node's policy (placement), with messages that
// say which.
func (s *Scheduler) prepareCompose(ctx context.Context, spec *persysv1.WorkloadSpec) error {
	cs := spec.GetCompose()
	opts := composespec.OptionsFor(true, []string{"/"})
	if err := composespec.ValidateSpecWith(ctx, cs, opts); err != nil {
		return composeError(err, cs.GetGit() == nil)
	}
	data := []byte(cs.GetInline())
	if g := cs.GetGit(); g != nil {
		commit, file, err := s.fetchComposeFile(ctx, g)
		if err != nil {
			return err
		}
		g.ResolvedCommit = commit
		data = file
	}
	p, err := composespec.ParseWithOptions(ctx, data, cs.GetEnv(), "persys-resources", opts)
	if err != nil {
		return composeError(err, cs.GetGit() == nil)
	}
	if r := spec.GetResources(); r.GetCpuMillis() == 0 && r.GetMemoryBytes() == 0 {
		cpu, mem := composespec.ResourcesOf(p)
		if spec.Resources == nil {
			spec.Resources = &persysv1.Resources{}
		}
		spec.Resources.CpuMillis, spec.Resources.MemoryBytes = cpu, mem
	}
	needs := composespec.Needs(p)
	needs.PrivilegedField = prefixField(needs.PrivilegedField)
	for i := range needs.HostPaths {
		needs.HostPaths[i].Field = prefixField(needs.HostPaths[i].Field)
	}
	for i := range needs.Ports {
		needs.Ports[i].Field = prefixField(needs.Ports[i].Field)
	}
	spec.HostAccess = specaccess.ToProto(needs)
	return nil
}

// prefixField places a compose file's field under spec.compose.
func prefixField(f string) string {
	if f == "" {
		return ""
	}
	return "spec.compose." + f
}

// fetchComposeFile resolves a Git source's ref and reads its compose file
// from that commit in the scheduler's cache. Concurrent applies of one
// repository share its bare clone; each reads its own commit's tree.
func (s *Scheduler) fetchComposeFile(ctx context.Context, g *persysv1.GitSource) (string, []byte, error) {
	auth, err := s.gitAuth(ctx, g)
	if err != nil {
		return "", nil, err
	}
	commit, err := gitsource.Resolve(ctx, g, auth)
	if err != nil {
		return "", nil, gitError(err)
	}
	cache, err := s.gitCacheDir(g.GetUrl())
	if err != nil {
		return "", nil, err
	}
	data, _, err := gitsource.ReadComposeAt(ctx, g, commit, cache, auth)
	if err != nil {
		return "", nil, gitError(err)
	}
	return commit, data, nil
}

// gitAuth opens the Git credentials secret a source names, if any.
func (s *Scheduler) gitAuth(ctx context.Context, g *persysv1.GitSource) (*gitsource.Auth, error) {
	if g.GetCredentialsSecret() == "" {
		return nil, nil
	}
	// The scheduler itself reads the repository; whether the workload's
	// principal may use the secret was checked at apply (secretsvc CheckUse)
	// and is checked again when the secret is delivered.
	vals, err := s.secrets.ValuesFor(ctx, principal.Scheduler, &persysv1.WorkloadSpec{Compose: &persysv1.ComposeSpec{
		Git: &persysv1.GitSource{CredentialsSecret: g.GetCredentialsSecret()}}})
	if err != nil {
		return nil, rpcreason.Error(codes.FailedPrecondition, persysv1.FailureReason_FAILURE_REASON_SECRET_NOT_FOUND,
			fmt.Sprintf("spec.compose.git.credentialsSecret: %v", err))
	}
	var sv *persysv1.SecretValue
	for _, v := range vals {
		if v.GetName() == g.GetCredentialsSecret() {
			sv = v
		}
	}
	auth, err := gitsource.AuthFromSecret(sv)
	if err != nil {
		return nil, rpcreason.Error(codes.FailedPrecondition, persysv1.FailureReason_FAILURE_REASON_SECRET_NOT_FOUND,
			fmt.Sprintf("spec.compose.git.credentialsSecret %q: %v", g.GetCredentialsSecret(), err))
	}
	return auth, nil
}

// gitCache is the folder of the scheduler's bare clones, made on first use.
type gitCache struct {
	once sync.Once
	dir  string
	err  error
}

// gitCacheDir is the scheduler's clone folder of one repository, inside
// Config.GitCacheDir (made mode 0700 on first use), never the user's cache
// folder: that one is shared with other processes and outlives the data
// folder.
func (s *Scheduler) gitCacheDir(url string) (string, error) {
	c := &s.git
	c.once.Do(func() {
		if c.dir = s.cfg.GitCacheDir; c.dir == "" {
			c.dir, c.err = os.MkdirTemp("", "persys-scheduler-git-")
			return
		}
		if c.err = os.MkdirAll(c.dir, 0o700); c.err == nil {
			c.err = os.Chmod(c.dir, 0o700)
		}
	})
	if c.err != nil {
		return "", rpcreason.Error(codes.Internal, persysv1.FailureReason_FAILURE_REASON_STORAGE, fmt.Sprintf("git cache folder %s: %v", c.dir, c.err))
	}
	return filepath.Join(c.dir, cacheKey(url)), nil
}

// cacheKey turns a URL into a file name without its credentials: the
// end of the URL for people, a hash of all of it so that two URLs never
// share a folder.
func cacheKey(url string) string {
	clean := gitsource.RedactURL(url)
	var b strings.Builder
	for _, r := range clean {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9', r == '.', r == '-':
			b.WriteRune(r)
		default:
			b.WriteByte('_')
		}
	}
	out := b.String()
	if len(out) > 80 {
		out = out[len(out)-80:]
	}
	sum := sha256.Sum256([]byte(clean))
	return out + "-" + hex.EncodeToString(sum[:8])
}

func gitError(err error) error {
	return rpcreason.Error(codes.FailedPrecondition, persysv1.FailureReason_FAILURE_REASON_GIT_FETCH_FAILED,
		"spec.compose.git: "+err.Error())
}

// composeError maps a compose-spec error to a manifest error whose field
// is the path inside the workload spec.
func composeError(err error, inline bool) error {
	var ce *composespec.Error
	if !errors.As(err, &ce) {
		return &manifest.Error{Fields: []manifest.FieldError{{Field: "spec.compose", Reason: err.Error()}}}
	}
	field := "spec.compose.inline"
	if !inline {
		field = "spec.compose.git"
	}
	switch {
	case strings.HasPrefix(ce.Path, "compose"):
		field = "spec." + ce.Path
	case ce.Path != "":
		field += "." + ce.Path
	}
	return &manifest.Error{Fields: []manifest.FieldError{{Field: field, Reason: ce.Reason}}}
}

// cloudInitError turns "invalid cloud-init input: FIELD: reason" into a
// manifest error on that field.
func cloudInitError(err error) error {
	msg := strings.TrimPrefix(err.Error(), cloudinit.ErrInvalid.Error()+": ")
	field, reason, ok := strings.Cut(msg, ": ")
	if !ok || !strings.HasPrefix(field, "spec.") {
		field, reason = "spec.vm.cloudInit", msg
	}
	return &manifest.Error{Fields: []manifest.FieldError{{Field: field, Reason: reason}}}
}

// gitPollTick is how often the leader looks for Git sources due a poll.
const gitPollTick = 5 * time.Second

// gitPollLoop re-resolves the ref of every compose workload whose Git
// source sets a poll interval, and writes a new revision when the commit
// moved. Events say which commit replaced which.
func (s *Scheduler) gitPollLoop(ctx context.Context) {
	last := map[string]time.Time{}
	t := time.NewTicker(gitPollTick)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		now := s.cfg.Now()
		type due struct {
			name string
			w    *persysv1.Workload
		}
		var todo []due
		s.eachWorkload(func(name string, e *workloadEntry) {
			g := e.w.GetSpec().GetCompose().GetGit()
			if g.GetPollIntervalSeconds() <= 0 || e.w.GetDeleting() {
				return
			}
			if now.Sub(last[name]) >= time.Duration(g.GetPollIntervalSeconds())*time.Second {
				todo = append(todo, due{name, e.w})
			}
		})
		for _, d := range todo {
			last[d.name] = now
			s.pollGit(ctx, d.name, d.w)
		}
	}
}

func (s *Scheduler) pollGit(ctx context.Context, name string, w *persysv1.Workload) {
	g := w.GetSpec().GetCompose().GetGit()
	auth, err := s.gitAuth(ctx, g)
	if err == nil {
		var commit string
		commit, err = gitsource.Resolve(ctx, g, auth)
		if err == nil && commit == g.GetResolvedCommit() {
			return
		}
		if err == nil {
			next := proto.Clone(w).(*persysv1.Workload)
			spec := next.GetSpec()
			if err = s.prepareSpec(ctx, principal.OfWorkload(w), spec); err == nil {
				err = s.writePolledRevision(ctx, name, w, next, g.GetResolvedCommit(), spec.GetCompose().GetGit().GetResolvedCommit())
			}
		}
	}
	if err != nil && ctx.Err() == nil {
		s.log.Warn("git poll failed", "workload", name, "url", gitsource.RedactURL(g.GetUrl()), "ref", g.GetRef(), "err", err)
		s.events.Add(model.EventGitPollFailed, &persysv1.Event{Workload: name, Revision: w.GetRevision(),
			Reason: persysv1.FailureReason_FAILURE_REASON_GIT_FETCH_FAILED, Message: err.Error()})
	}
}

// writePolledRevision stores next as a new revision unless the workload
// changed meanwhile (a user's apply wins; the next poll looks again).
func (s *Scheduler) writePolledRevision(ctx context.Context, name string, cur, next *persysv1.Workload, from, to string) error {
	stored, rev, err := s.store.GetWorkload(ctx, name)
	if err != nil {
		return err
	}
	if stored.GetRevision() != cur.GetRevision() || stored.GetUid() != cur.GetUid() || stored.GetDeleting() {
		return nil
	}
	next.Revision = cur.GetRevision() + 1
	next.UpdatedAt = timestamppb.New(s.cfg.Now())
	newRev, err := s.store.UpdateWorkload(ctx, next, rev)
	if errors.Is(err, store.ErrConflict) {
		return nil
	}
	if err != nil {
		return err
	}
	s.cacheWorkload(next, newRev)
	s.log.Info("git ref moved", "workload", name, "ref", next.GetSpec().GetCompose().GetGit().GetRef(), "from", from, "to", to, "revision", next.GetRevision())
	s.events.Add(model.EventGitCommitChanged, &persysv1.Event{Workload: name, Revision: next.GetRevision(),
		Message: fmt.Sprintf("ref %s moved from %.12s to %.12s: revision %d", next.GetSpec().GetCompose().GetGit().GetRef(), from, to, next.GetRevision())})
	return nil
}
