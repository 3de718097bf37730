// Package gitsource fetches the compose file of a Git-sourced COMPOSE
// workload with go-git: Resolve turns a branch, tag or commit into a commit
// hash (the scheduler records it as resolved_commit). The scheduler reads
// the compose file with ReadComposeAt, straight from that commit's tree in
// a bare clone shared by every caller of one URL. The agent uses Checkout,
// which puts the commit into a per-workload folder (reusing the clone and
// fetching only when the commit is missing; callers must not check out
// into one folder concurrently), and ReadComposeFile, which reads the
// compose file from the checkout without leaving it.
//
// Only http(s), git:// and file:// URLs are accepted. Errors are
// *runtime.Failure values of reason GIT_FETCH_FAILED (or INVALID_SPEC for a
// bad URL or path) whose message names the URL without credentials and the
// ref; their cause matches ErrUnreachable, ErrRefNotFound or ErrAuth with
// errors.Is. Credentials never appear in errors or logs.
package gitsource

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"strings"
	"time"

	git "github.com/go-git/go-git/v5"
	"github.com/go-git/go-git/v5/config"
	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/transport"
	githttp "github.com/go-git/go-git/v5/plumbing/transport/http"
	"github.com/go-git/go-git/v5/storage/memory"

	persysv1 "github.com/persys-dev/compute/api/persys/v1"
	"github.com/persys-dev/compute/internal/runtime"
)

// Sentinel causes inside the returned failures.
var (
	// ErrUnreachable: the URL does not resolve, refuses connections, or
	// names no repository.
	ErrUnreachable = errors.New("repository unreachable")
	// ErrRefNotFound: the branch, tag or commit does not exist.
	ErrRefNotFound = errors.New("ref not found")
	// ErrAuth: the remote wants credentials, or refused the ones given.
	ErrAuth = errors.New("authentication refused")
)

// Timeout bounds each network operation (list, clone, fetch) when the
// caller's context has no earlier deadline.
var Timeout = 2 * time.Minute

// MaxComposeFileBytes is the largest compose file ReadComposeFile reads.
const MaxComposeFileBytes = 1 << 20

// Auth is HTTP basic authentication for a repository. Its String never
// shows the password.
type Auth struct {
	Username string
	Password string
}

func (a *Auth) String() string {
	if a == nil {
		return "<none>"
	}
	return a.Username + ":<redacted>"
}

// AuthFromSecret reads a GIT secret: key "token" (sent as the password of
// HTTP basic auth with user "persys", which GitHub, GitLab and Gitea
// accept), or keys "username" and "password". A nil secret means no auth.
func AuthFromSecret(sv *persysv1.SecretValue) (*Auth, error) {
	if sv == nil {
		return nil, nil
	}
	d := sv.GetData()
	if tok, ok := d["token"]; ok {
		if len(tok) == 0 {
			return nil, errors.New("git credentials: key token is empty")
		}
		user := "persys"
		if u := d["username"]; len(u) > 0 {
			user = string(u)
		}
		return &Auth{Username: user, Password: string(tok)}, nil
	}
	u, p := d["username"], d["password"]
	if len(u) == 0 || len(p) == 0 {
		return nil, errors.New(`git credentials: the secret needs key "token", or keys "username" and "password"`)
	}
	return &Auth{Username: string(u), Password: string(p)}, nil
}

func (a *Auth) method(u *url.URL) transport.AuthMethod {
	if a == nil || (u.Scheme != "http" && u.Scheme != "https") {
		return nil
	}
	return &githttp.BasicAuth{Username: a.Username, Password: a.Password}
}

// RedactURL returns raw without user information (a token in the URL
// stays out of messages).
func RedactURL(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return "<unparsable url>"
	}
	u.User = nil
	return u.String()
}

// parseURL checks the scheme and splits credentials embedded in the URL
// off into an Auth (unless auth is given).
func parseURL(raw string, auth *Auth) (*url.URL, *Auth, error) {
	if raw == "" {
		return nil, nil, runtime.Fail(persysv1.FailureReason_FAILURE_REASON_INVALID_SPEC, nil, "compose.git.url is empty")
	}
	u, err := url.Parse(raw)
	if err != nil {
		return nil, nil, runtime.Fail(persysv1.FailureReason_FAILURE_REASON_INVALID_SPEC, nil, "compose.git.url is not a URL")
	}
	switch u.Scheme {
	case "http", "https", "git":
		if u.Host == "" {
			return nil, nil, runtime.Fail(persysv1.FailureReason_FAILURE_REASON_INVALID_SPEC, nil, "compose.git.url %s has no host", RedactURL(raw))
		}
	case "file":
		if u.Path == "" {
			return nil, nil, runtime.Fail(persysv1.FailureReason_FAILURE_REASON_INVALID_SPEC, nil, "compose.git.url %s has no path", RedactURL(raw))
		}
	default:
		return nil, nil, runtime.Fail(persysv1.FailureReason_FAILURE_REASON_INVALID_SPEC, nil,
			"compose.git.url %s: scheme %q is not supported (use https, http, git or file)", RedactURL(raw), u.Scheme)
	}
	if u.User != nil {
		if auth == nil {
			p, _ := u.User.Password()
			auth = &Auth{Username: u.User.Username(), Password: p}
		}
		u.User = nil
	}
	return u, auth, nil
}

var hexRef = regexp.MustCompile(`^[0-9a-f]{4,40}$`)

// Resolve returns the commit hash src.Ref names on the remote: a branch,
// a tag (annotated tags are peeled to their commit), a full ref name, a
// full or short commit hash, or (empty ref) the remote's default branch.
// A hash the remote does not advertise is looked up in a fetch of the
// repository.
func Resolve(ctx context.Context, src *persysv1.GitSource, auth *Auth) (string, error) {
	u, auth, err := parseURL(src.GetUrl(), auth)
	if err != nil {
		return "", err
	}
	ref := src.GetRef()
	ctx, cancel := withTimeout(ctx)
	defer cancel()

	remote := git.NewRemote(memory.NewStorage(), &config.RemoteConfig{Name: "origin", URLs: []string{u.String()}})
	refs, err := remote.ListContext(ctx, &git.ListOptions{Auth: auth.method(u), PeelingOption: git.AppendPeeled})
	if err != nil {
		return "", fetchFailure(err, u, ref, "list refs")
	}
	byName := make(map[plumbing.ReferenceName]*plumbing.Reference, len(refs))
	for _, r := range refs {
		byName[r.Name()] = r
	}
	target := func(name plumbing.ReferenceName) (string, bool) {
		// An annotated tag: prefer the peeled commit.
		if r, ok := byName[name+"^{}"]; ok {
			return r.Hash().String(), true
		}
		r, ok := byName[name]
		for i := 0; ok && r.Type() == plumbing.SymbolicReference && i < 5; i++ {
			r, ok = byName[r.Target()]
		}
		if !ok || r.Hash().IsZero() {
			return "", false
		}
		return r.Hash().String(), true
	}

	if ref == "" || ref == "HEAD" {
		if h, ok := target(plumbing.HEAD); ok {
			return h, nil
		}
		return "", runtime.Fail(persysv1.FailureReason_FAILURE_REASON_GIT_FETCH_FAILED, ErrRefNotFound, "%s has no default branch (HEAD)", u)
	}
	for _, name := range []plumbing.ReferenceName{
		plumbing.ReferenceName(ref),
		plumbing.NewBranchReferenceName(ref),
		plumbing.NewTagReferenceName(ref),
	} {
		if h, ok := target(name); ok {
			return h, nil
		}
	}
	if !hexRef.MatchString(strings.ToLower(ref)) {
		return "", runtime.Fail(persysv1.FailureReason_FAILURE_REASON_GIT_FETCH_FAILED, ErrRefNotFound, "ref %q not found at %s", ref, u)
	}
	h := strings.ToLower(ref)
	// A hash the remote advertises (the tip of some ref).
	var match string
	for _, r := range refs {
		if r.Type() == plumbing.HashReference && strings.HasPrefix(r.Hash().String(), h) {
			if match != "" && match != r.Hash().String() {
				return "", runtime.Fail(persysv1.FailureReason_FAILURE_REASON_GIT_FETCH_FAILED, ErrRefNotFound, "short commit %q at %s is ambiguous", ref, u)
			}
			match = r.Hash().String()
		}
	}
	if match != "" {
		return match, nil
	}
	// Otherwise fetch the history and look the commit up.
	repo, err := git.CloneContext(ctx, memory.NewStorage(), nil, &git.CloneOptions{
		URL: u.String(), Auth: auth.method(u), NoCheckout: true, Tags: git.AllTags,
	})
	if err != nil {
		return "", fetchFailure(err, u, ref, "fetch")
	}
	if err := fetchAll(ctx, repo, auth.method(u)); err != nil {
		return "", fetchFailure(err, u, ref, "fetch")
	}
	hash, err := repo.ResolveRevision(plumbing.Revision(h))
	if err != nil {
		return "", runtime.Fail(persysv1.FailureReason_FAILURE_REASON_GIT_FETCH_FAILED, ErrRefNotFound, "commit %q not found at %s", ref, u)
	}
	return hash.String(), nil
}

// Checkout makes cacheDir a clone of src.Url with commit checked out and
// returns it. An existing clone of the same URL is reused and fetched
// only when the commit is missing; a clone of another URL is replaced.
// commit may be a full or short hash; empty resolves src.Ref first.
func Checkout(ctx context.Context, src *persysv1.GitSource, commit, cacheDir string, auth *Auth) (string, error) {
	u, auth, err := parseURL(src.GetUrl(), auth)
	if err != nil {
		return "", err
	}
	if cacheDir == "" {
		return "", errors.New("git checkout: cacheDir is empty")
	}
	if commit == "" {
		commit, err = Resolve(ctx, src, auth)
		if err != nil {
			return "", err
		}
	}
	ctx, cancel := withTimeout(ctx)
	defer cancel()
	ref := src.GetRef()
	if ref == "" {
		ref = commit
	}

	repo, err := git.PlainOpen(cacheDir)
	if err == nil {
		rem, rerr := repo.Remote("origin")
		if rerr != nil || len(rem.Config().URLs) == 0 || rem.Config().URLs[0] != u.String() {
			repo = nil
		}
	}
	if repo == nil || err != nil {
		if err := os.RemoveAll(cacheDir); err != nil {
			return "", runtime.Fail(persysv1.FailureReason_FAILURE_REASON_STORAGE, err, "clear git cache %s", cacheDir)
		}
		if err := os.MkdirAll(filepath.Dir(cacheDir), 0o700); err != nil {
			return "", runtime.Fail(persysv1.FailureReason_FAILURE_REASON_STORAGE, err, "create git cache %s", cacheDir)
		}
		repo, err = git.PlainCloneContext(ctx, cacheDir, false, &git.CloneOptions{
			URL: u.String(), Auth: auth.method(u), NoCheckout: true, Tags: git.AllTags,
		})
		if err != nil {
			_ = os.RemoveAll(cacheDir)
			return "", fetchFailure(err, u, ref, "clone")
		}
	}

	hash, err := repo.ResolveRevision(plumbing.Revision(commit))
	if err == nil {
		_, err = repo.CommitObject(*hash)
	}
	if err != nil {
		if ferr := fetchAll(ctx, repo, auth.method(u)); ferr != nil {
			return "", fetchFailure(ferr, u, ref, "fetch")
		}
		hash, err = repo.ResolveRevision(plumbing.Revision(commit))
		if err != nil {
			return "", runtime.Fail(persysv1.FailureReason_FAILURE_REASON_GIT_FETCH_FAILED, ErrRefNotFound, "commit %q (ref %q) not found at %s", commit, src.GetRef(), u)
		}
	}
	wt, err := repo.Worktree()
	if err != nil {
		return "", runtime.Fail(persysv1.FailureReason_FAILURE_REASON_GIT_FETCH_FAILED, err, "open worktree of %s", u)
	}
	if err := wt.Checkout(&git.CheckoutOptions{Hash: *hash, Force: true}); err != nil {
		return "", runtime.Fail(persysv1.FailureReason_FAILURE_REASON_GIT_FETCH_FAILED, err, "check out %s of %s", hash, u)
	}
	if err := wt.Clean(&git.CleanOptions{Dir: true}); err != nil {
		return "", runtime.Fail(persysv1.FailureReason_FAILURE_REASON_GIT_FETCH_FAILED, err, "clean worktree of %s", u)
	}
	return cacheDir, nil
}

func fetchAll(ctx context.Context, repo *git.Repository, auth transport.AuthMethod) error {
	err := repo.FetchContext(ctx, &git.FetchOptions{
		RemoteName: "origin",
		Auth:       auth,
		RefSpecs: []config.RefSpec{
			"+refs/heads/*:refs/remotes/origin/*",
			"+refs/tags/*:refs/tags/*",
		},
		Tags:  git.AllTags,
		Force: true,
	})
	if errors.Is(err, git.NoErrAlreadyUpToDate) {
		return nil
	}
	return err
}

// ReadComposeFile reads the compose file at rel inside dir (empty rel:
// compose.yaml, then docker-compose.yml, then compose.yml, then
// docker-compose.yaml) and returns its content and path relative to dir.
// Paths that leave dir, also through symbolic links, are refused.
func ReadComposeFile(dir, rel string) (data []byte, file string, err error) {
	candidates := []string{rel}
	if rel == "" {
		candidates = []string{"compose.yaml", "docker-compose.yml", "compose.yml", "docker-compose.yaml"}
	}
	root, err := filepath.EvalSymlinks(dir)
	if err != nil {
		return nil, "", runtime.Fail(persysv1.FailureReason_FAILURE_REASON_GIT_FETCH_FAILED, err, "open checkout")
	}
	for _, c := range candidates {
		if strings.ContainsRune(c, 0) || path.IsAbs(c) || filepath.IsAbs(c) {
			return nil, "", runtime.Fail(persysv1.FailureReason_FAILURE_REASON_INVALID_SPEC, nil, "compose.git.path %q must be relative to the repository root", c)
		}
		clean := path.Clean(c)
		if clean == ".." || strings.HasPrefix(clean, "../") {
			return nil, "", runtime.Fail(persysv1.FailureReason_FAILURE_REASON_INVALID_SPEC, nil, "compose.git.path %q leaves the repository", c)
		}
		full, err := filepath.EvalSymlinks(filepath.Join(root, filepath.FromSlash(clean)))
		if errors.Is(err, os.ErrNotExist) {
			continue
		}
		if err != nil {
			return nil, "", runtime.Fail(persysv1.FailureReason_FAILURE_REASON_INVALID_SPEC, nil, "compose.git.path %q cannot be read", c)
		}
		if full != root && !strings.HasPrefix(full, root+string(filepath.Separator)) {
			return nil, "", runtime.Fail(persysv1.FailureReason_FAILURE_REASON_INVALID_SPEC, nil, "compose.git.path %q leaves the repository through a symbolic link", c)
		}
		fi, err := os.Stat(full)
		if err != nil || !fi.Mode().IsRegular() {
			return nil, "", runtime.Fail(persysv1.FailureReason_FAILURE_REASON_INVALID_SPEC, nil, "compose.git.path %q is not a regular file", c)
		}
		if fi.Size() > MaxComposeFileBytes {
			return nil, "", runtime.Fail(persysv1.FailureReason_FAILURE_REASON_INVALID_SPEC, nil, "compose file %q is %d bytes, larger than the %d bytes (1 MiB) allowed", c, fi.Size(), MaxComposeFileBytes)
		}
		data, err := os.ReadFile(full)
		if err != nil {
			return nil, "", runtime.Fail(persysv1.FailureReason_FAILURE_REASON_INVALID_SPEC, err, "read compose file %q", c)
		}
		return data, clean, nil
	}
	if rel == "" {
		return nil, "", runtime.Fail(persysv1.FailureReason_FAILURE_REASON_INVALID_SPEC, nil, "the repository has no compose.yaml or docker-compose.yml at its root (set compose.git.path)")
	}
	return nil, "", runtime.Fail(persysv1.FailureReason_FAILURE_REASON_INVALID_SPEC, nil, "compose.git.path %q does not exist in the repository", rel)
}

func withTimeout(ctx context.Context) (context.Context, context.CancelFunc) {
	if dl, ok := ctx.Deadline(); ok && time.Until(dl) < Timeout {
		return context.WithCancel(ctx)
	}
	return context.WithTimeout(ctx, Timeout)
}

// fetchFailure classifies a go-git error. The cause is rebuilt from the
// sentinel and go-git's text with credentials stripped.
func fetchFailure(err error, u *url.URL, ref, op string) error {
	kind := ErrUnreachable
	what := "unreachable"
	switch {
	case errors.Is(err, transport.ErrAuthenticationRequired), errors.Is(err, transport.ErrAuthorizationFailed):
		kind, what = ErrAuth, "authentication refused"
	case errors.Is(err, transport.ErrRepositoryNotFound):
		kind, what = ErrUnreachable, "repository not found"
	case errors.Is(err, transport.ErrEmptyRemoteRepository):
		kind, what = ErrRefNotFound, "repository is empty"
	case errors.Is(err, context.DeadlineExceeded):
		what = "timed out"
	case errors.Is(err, plumbing.ErrReferenceNotFound):
		kind, what = ErrRefNotFound, "ref not found"
	}
	detail := strings.ReplaceAll(err.Error(), u.String(), RedactURL(u.String()))
	return runtime.Fail(persysv1.FailureReason_FAILURE_REASON_GIT_FETCH_FAILED, fmt.Errorf("%w: %s", kind, detail),
		"%s %s (ref %q): %s", op, RedactURL(u.String()), ref, what)
}
