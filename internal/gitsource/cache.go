package gitsource

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/url"
	"os"
	"path"
	"path/filepath"
	"strings"

	git "github.com/go-git/go-git/v5"
	"github.com/go-git/go-git/v5/config"
	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/filemode"
	"github.com/go-git/go-git/v5/plumbing/object"
	"github.com/moby/locker"

	persysv1 "github.com/persys-dev/compute/api/persys/v1"
	"github.com/persys-dev/compute/internal/runtime"
)

// maxLinkHops bounds the symbolic links followed to find one compose file
// (as the kernel's 40).
const maxLinkHops = 40

// cacheLocks serializes the changes to one bare cache (clone, fetch,
// replace) within the process, keyed by its folder.
var cacheLocks = locker.New()

// ReadComposeAt reads the compose file at rel (as ReadComposeFile: empty
// rel tries compose.yaml, docker-compose.yml, compose.yml,
// docker-compose.yaml) from the tree of commit, a full or short hash of
// src.Url, and returns its content and its path in the repository.
//
// cacheDir holds a bare clone of src.Url shared by every caller: nothing
// is checked out, so concurrent reads of different commits never meet.
// A commit already in the clone is read without network or lock; a
// missing one is fetched, one fetch per cacheDir at a time in this
// process. A cacheDir that holds a clone of another URL, or no valid
// clone, is replaced.
func ReadComposeAt(ctx context.Context, src *persysv1.GitSource, commit, cacheDir string, auth *Auth) (data []byte, file string, err error) {
	u, auth, err := parseURL(src.GetUrl(), auth)
	if err != nil {
		return nil, "", err
	}
	if cacheDir == "" {
		return nil, "", errors.New("git read: cacheDir is empty")
	}
	// Only a hash names the same tree for ever; a ref could be read stale
	// from the clone.
	if commit = strings.ToLower(commit); !hexRef.MatchString(commit) {
		return nil, "", fmt.Errorf("git read: commit %q is not a commit hash", commit)
	}
	if cacheDir, err = filepath.Abs(cacheDir); err != nil {
		return nil, "", runtime.Fail(persysv1.FailureReason_FAILURE_REASON_STORAGE, err, "git cache %s", cacheDir)
	}
	remote := u.String()
	ref := src.GetRef()
	if ref == "" {
		ref = commit
	}

	// Objects are addressed by their hash: what a clone holds for a commit
	// never changes, so a reader needs no lock. Anything short of a
	// complete answer (no clone yet, commit missing, a pack being
	// replaced) takes the locked path below.
	if repo, ok := openClone(cacheDir, remote); ok {
		if data, file, ok, err := readCommit(repo, commit, src.GetPath()); ok {
			return data, file, err
		}
	}

	cacheLocks.Lock(cacheDir)
	defer func() { _ = cacheLocks.Unlock(cacheDir) }()
	ctx, cancel := withTimeout(ctx)
	defer cancel()

	repo, existed := openClone(cacheDir, remote)
	if !existed {
		if repo, err = replaceClone(ctx, cacheDir, remote, auth, u, ref); err != nil {
			return nil, "", err
		}
	}
	if data, file, ok, err := readCommit(repo, commit, src.GetPath()); ok {
		return data, file, err
	}
	// A fresh clone was fetched just now: fetching again finds nothing new.
	if existed {
		if err := fetchAll(ctx, repo, auth.method(u)); err != nil {
			return nil, "", fetchFailure(err, u, ref, "fetch")
		}
		if data, file, ok, err := readCommit(repo, commit, src.GetPath()); ok {
			return data, file, err
		}
	}
	return nil, "", runtime.Fail(persysv1.FailureReason_FAILURE_REASON_GIT_FETCH_FAILED, ErrRefNotFound,
		"commit %q (ref %q) not found at %s", commit, src.GetRef(), RedactURL(remote))
}

// openClone opens the bare clone in dir if it is one of remote.
func openClone(dir, remote string) (*git.Repository, bool) {
	repo, err := git.PlainOpen(dir)
	if err != nil {
		return nil, false
	}
	rem, err := repo.Remote("origin")
	if err != nil || len(rem.Config().URLs) == 0 || rem.Config().URLs[0] != remote {
		return nil, false
	}
	return repo, true
}

// replaceClone makes dir a fresh bare clone of remote. The clone is made
// beside dir and renamed into place, so a lock-free reader sees either no
// clone or a complete one. The caller holds dir's lock.
func replaceClone(ctx context.Context, dir, remote string, auth *Auth, u *url.URL, ref string) (*git.Repository, error) {
	parent := filepath.Dir(dir)
	if err := os.MkdirAll(parent, 0o700); err != nil {
		return nil, runtime.Fail(persysv1.FailureReason_FAILURE_REASON_STORAGE, err, "create git cache %s", parent)
	}
	// Clones a killed process left half made; only a lock holder makes
	// them, so none is in use.
	prefix := "." + filepath.Base(dir) + ".new-"
	if stale, err := filepath.Glob(filepath.Join(parent, prefix+"*")); err == nil {
		for _, d := range stale {
			_ = os.RemoveAll(d)
		}
	}
	tmp, err := os.MkdirTemp(parent, prefix)
	if err != nil {
		return nil, runtime.Fail(persysv1.FailureReason_FAILURE_REASON_STORAGE, err, "create git cache in %s", parent)
	}
	done := false
	defer func() {
		if !done {
			_ = os.RemoveAll(tmp)
		}
	}()
	repo, err := git.PlainInit(tmp, true)
	if err != nil {
		return nil, runtime.Fail(persysv1.FailureReason_FAILURE_REASON_STORAGE, err, "create git cache %s", dir)
	}
	if _, err := repo.CreateRemote(&config.RemoteConfig{Name: "origin", URLs: []string{remote}}); err != nil {
		return nil, runtime.Fail(persysv1.FailureReason_FAILURE_REASON_STORAGE, err, "create git cache %s", dir)
	}
	if err := fetchAll(ctx, repo, auth.method(u)); err != nil {
		return nil, fetchFailure(err, u, ref, "clone")
	}
	if err := os.RemoveAll(dir); err != nil {
		return nil, runtime.Fail(persysv1.FailureReason_FAILURE_REASON_STORAGE, err, "clear git cache %s", dir)
	}
	if err := os.Rename(tmp, dir); err != nil {
		return nil, runtime.Fail(persysv1.FailureReason_FAILURE_REASON_STORAGE, err, "move git cache into %s", dir)
	}
	done = true
	repo, err = git.PlainOpen(dir)
	if err != nil {
		return nil, runtime.Fail(persysv1.FailureReason_FAILURE_REASON_STORAGE, err, "open git cache %s", dir)
	}
	return repo, nil
}

// readCommit reads the compose file from commit's tree. answered is false
// when the clone cannot answer (the commit or one of its objects is
// missing or unreadable); otherwise data or err is the answer for that
// commit.
func readCommit(repo *git.Repository, commit, rel string) (data []byte, file string, answered bool, err error) {
	var hash plumbing.Hash
	if len(commit) == 40 {
		hash = plumbing.NewHash(commit)
	} else {
		h, err := repo.ResolveRevision(plumbing.Revision(commit))
		if err != nil {
			return nil, "", false, nil
		}
		hash = *h
	}
	c, err := repo.CommitObject(hash)
	if err != nil {
		return nil, "", false, nil
	}
	root, err := c.Tree()
	if err != nil {
		return nil, "", false, nil
	}
	data, file, err = composeFromTree(repo, root, rel)
	if runtime.ReasonOf(err) == persysv1.FailureReason_FAILURE_REASON_GIT_FETCH_FAILED {
		return nil, "", false, nil
	}
	return data, file, true, err
}

// composeFromTree is ReadComposeFile over a commit's tree. Failures to
// read an object are GIT_FETCH_FAILED; everything about the path is
// INVALID_SPEC, worded as ReadComposeFile words it.
func composeFromTree(repo *git.Repository, root *object.Tree, rel string) ([]byte, string, error) {
	candidates := []string{rel}
	if rel == "" {
		candidates = []string{"compose.yaml", "docker-compose.yml", "compose.yml", "docker-compose.yaml"}
	}
	for _, c := range candidates {
		if strings.ContainsRune(c, 0) || path.IsAbs(c) || filepath.IsAbs(c) {
			return nil, "", runtime.Fail(persysv1.FailureReason_FAILURE_REASON_INVALID_SPEC, nil, "compose.git.path %q must be relative to the repository root", c)
		}
		clean := path.Clean(c)
		if clean == ".." || strings.HasPrefix(clean, "../") {
			return nil, "", runtime.Fail(persysv1.FailureReason_FAILURE_REASON_INVALID_SPEC, nil, "compose.git.path %q leaves the repository", c)
		}
		entry, err := lookup(repo, root, clean)
		if errors.Is(err, errNoEntry) {
			continue
		}
		switch {
		case errors.Is(err, errLeaves):
			return nil, "", runtime.Fail(persysv1.FailureReason_FAILURE_REASON_INVALID_SPEC, nil, "compose.git.path %q leaves the repository through a symbolic link", c)
		case errors.Is(err, errLinkLoop), errors.Is(err, errNotDir), errors.Is(err, errLongLink):
			return nil, "", runtime.Fail(persysv1.FailureReason_FAILURE_REASON_INVALID_SPEC, nil, "compose.git.path %q cannot be read: %v", c, err)
		case err != nil:
			return nil, "", runtime.Fail(persysv1.FailureReason_FAILURE_REASON_GIT_FETCH_FAILED, err, "read %q from the repository", c)
		}
		if entry.Mode != filemode.Regular && entry.Mode != filemode.Executable && entry.Mode != filemode.Deprecated {
			return nil, "", runtime.Fail(persysv1.FailureReason_FAILURE_REASON_INVALID_SPEC, nil, "compose.git.path %q is not a regular file", c)
		}
		blob, err := repo.BlobObject(entry.Hash)
		if err != nil {
			return nil, "", runtime.Fail(persysv1.FailureReason_FAILURE_REASON_GIT_FETCH_FAILED, err, "read %q from the repository", c)
		}
		if blob.Size > MaxComposeFileBytes {
			return nil, "", runtime.Fail(persysv1.FailureReason_FAILURE_REASON_INVALID_SPEC, nil, "compose file %q is %d bytes, larger than the %d bytes (1 MiB) allowed", c, blob.Size, MaxComposeFileBytes)
		}
		data, err := readBlob(blob, MaxComposeFileBytes)
		if err != nil {
			return nil, "", runtime.Fail(persysv1.FailureReason_FAILURE_REASON_GIT_FETCH_FAILED, err, "read %q from the repository", c)
		}
		return data, clean, nil
	}
	if rel == "" {
		return nil, "", runtime.Fail(persysv1.FailureReason_FAILURE_REASON_INVALID_SPEC, nil, "the repository has no compose.yaml or docker-compose.yml at its root (set compose.git.path)")
	}
	return nil, "", runtime.Fail(persysv1.FailureReason_FAILURE_REASON_INVALID_SPEC, nil, "compose.git.path %q does not exist in the repository", rel)
}

// What lookup reports about a path, apart from unreadable objects.
var (
	errNoEntry  = errors.New("no such file")
	errLeaves   = errors.New("leaves the repository")
	errLinkLoop = errors.New("too many symbolic links")
	errNotDir   = errors.New("a path element is not a directory")
	errLongLink = errors.New("a symbolic link's target is too long")
)

// maxLinkTarget is the longest symbolic link target lookup follows (as
// the kernel's PATH_MAX).
const maxLinkTarget = 4096

// lookup finds the entry at p (clean, relative) in root, following
// symbolic links as the kernel would in a checkout: a link's target is
// taken relative to the link's directory, and a target that is absolute
// or climbs above root leaves the repository.
func lookup(repo *git.Repository, root *object.Tree, p string) (*object.TreeEntry, error) {
	dirs := []*object.Tree{root} // the directory being walked and its parents
	todo := strings.Split(p, "/")
	hops := 0
	for len(todo) > 0 {
		name := todo[0]
		todo = todo[1:]
		switch name {
		case "", ".":
			continue
		case "..":
			if len(dirs) == 1 {
				return nil, errLeaves
			}
			dirs = dirs[:len(dirs)-1]
			continue
		}
		entry := findEntry(dirs[len(dirs)-1], name)
		if entry == nil {
			return nil, errNoEntry
		}
		switch {
		case entry.Mode == filemode.Symlink:
			if hops++; hops > maxLinkHops {
				return nil, errLinkLoop
			}
			blob, err := repo.BlobObject(entry.Hash)
			if err != nil {
				return nil, err
			}
			if blob.Size > maxLinkTarget {
				return nil, errLongLink
			}
			target, err := readBlob(blob, maxLinkTarget)
			if err != nil {
				return nil, err
			}
			if len(target) == 0 {
				return nil, errNoEntry
			}
			if path.IsAbs(string(target)) {
				return nil, errLeaves
			}
			todo = append(strings.Split(string(target), "/"), todo...)
		case len(todo) == 0:
			return entry, nil
		case entry.Mode == filemode.Dir:
			sub, err := repo.TreeObject(entry.Hash)
			if err != nil {
				return nil, err
			}
			dirs = append(dirs, sub)
		default:
			return nil, errNotDir
		}
	}
	// The path named a directory (say "." or "a/..").
	return &object.TreeEntry{Name: p, Mode: filemode.Dir}, nil
}

func findEntry(t *object.Tree, name string) *object.TreeEntry {
	for i := range t.Entries {
		if t.Entries[i].Name == name {
			return &t.Entries[i]
		}
	}
	return nil
}

// readBlob reads a blob of at most limit bytes.
func readBlob(b *object.Blob, limit int64) ([]byte, error) {
	if b.Size > limit {
		return nil, fmt.Errorf("object %s is %d bytes, more than %d", b.Hash, b.Size, limit)
	}
	r, err := b.Reader()
	if err != nil {
		return nil, err
	}
	defer func() { _ = r.Close() }()
	return io.ReadAll(io.LimitReader(r, limit))
}
