package gitsource

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	persysv1 "github.com/persys-dev/compute/api/persys/v1"
	"github.com/persys-dev/compute/internal/runtime"
	"github.com/persys-dev/compute/internal/testutil/gitserver"
)

func TestReadComposeAt(t *testing.T) {
	f := newFixture(t, false)
	ctx := context.Background()
	cache := filepath.Join(t.TempDir(), "cache", "app")
	// A clone a killed process left half made is removed.
	stale := filepath.Join(filepath.Dir(cache), ".app.new-123")
	if err := os.MkdirAll(filepath.Join(stale, "objects"), 0o700); err != nil {
		t.Fatal(err)
	}
	read := func(ref, commit, rel string) ([]byte, string, error) {
		return ReadComposeAt(ctx, &persysv1.GitSource{Url: f.repo.URL, Ref: ref, Path: rel}, commit, cache, nil)
	}

	for _, tt := range []struct {
		name, commit, rel, want, file string
	}{
		{"first commit", f.first, "", composeV1, "compose.yaml"},
		{"second commit", f.second, "", composeV2, "compose.yaml"},
		{"short hash", f.first[:8], "", composeV1, "compose.yaml"},
		{"path", f.second, "deploy/other.yml", composeV1, "deploy/other.yml"},
		{"path cleaned", f.second, "./deploy/../deploy/other.yml", composeV1, "deploy/other.yml"},
		{"second default name", f.devHead, "", composeV1, "docker-compose.yml"},
	} {
		data, file, err := read("", tt.commit, tt.rel)
		if err != nil || string(data) != tt.want || file != tt.file {
			t.Errorf("%s: got %q %q %v, want %q %q", tt.name, data, file, err, tt.want, tt.file)
		}
	}
	if fi, err := os.Stat(cache); err != nil || fi.Mode().Perm() != 0o700 {
		t.Fatalf("cache folder: %v, %v; want mode 0700", fi, err)
	}
	if _, err := os.Stat(filepath.Join(cache, "HEAD")); err != nil {
		t.Fatalf("the cache is not a bare clone: %v", err)
	}
	if left, _ := os.ReadDir(filepath.Dir(cache)); len(left) != 1 {
		t.Fatalf("the cache's parent holds %v, want the clone only", left)
	}
	marker := filepath.Join(cache, "persys-marker")
	if err := os.WriteFile(marker, []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}

	// A commit pushed after the clone is fetched into the same clone.
	f.repo.Branch(t, "main")
	third := f.repo.Commit(t, map[string]string{"compose.yaml": composeV1 + "# third\n"}, "third")
	if data, _, err := read("main", third, ""); err != nil || !strings.HasSuffix(string(data), "# third\n") {
		t.Fatalf("commit pushed after the clone: %q, %v", data, err)
	}
	if _, err := os.Stat(marker); err != nil {
		t.Fatalf("the clone was not reused: %v", err)
	}
	if _, _, err := read("main", "deadbeefdeadbeefdeadbeefdeadbeefdeadbeef", ""); !errors.Is(err, ErrRefNotFound) ||
		runtime.ReasonOf(err) != persysv1.FailureReason_FAILURE_REASON_GIT_FETCH_FAILED || !strings.Contains(err.Error(), "deadbeef") {
		t.Fatalf("a missing commit: %v, want GIT_FETCH_FAILED ref not found naming it", err)
	}

	if _, _, err := read("main", "main", ""); err == nil || !strings.Contains(err.Error(), "commit") {
		t.Fatalf("a ref name instead of a hash: %v, want an error naming commit", err)
	}

	// A cache folder of another repository is replaced.
	other := f.srv.Repo(t, "other", false)
	otherHead := other.Commit(t, map[string]string{"compose.yaml": composeV2}, "other")
	data, _, err := ReadComposeAt(ctx, &persysv1.GitSource{Url: other.URL}, otherHead, cache, nil)
	if err != nil || string(data) != composeV2 {
		t.Fatalf("another URL in the same folder: %q, %v", data, err)
	}
	if _, err := os.Stat(marker); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("the clone of the other URL was kept: %v", err)
	}

	// Private repositories need their token; file:// works too.
	priv := f.srv.Repo(t, "private", true)
	privHead := priv.Commit(t, map[string]string{"compose.yaml": composeV1}, "p")
	privCache := filepath.Join(t.TempDir(), "p")
	if _, _, err := ReadComposeAt(ctx, &persysv1.GitSource{Url: priv.URL}, privHead, privCache, nil); !errors.Is(err, ErrAuth) {
		t.Fatalf("private without token: %v, want auth", err)
	}
	if data, _, err := ReadComposeAt(ctx, &persysv1.GitSource{Url: priv.URL}, privHead, privCache, &Auth{Username: "x", Password: gitserver.Token}); err != nil || string(data) != composeV1 {
		t.Fatalf("private with token: %q, %v", data, err)
	}
	if data, _, err := ReadComposeAt(ctx, &persysv1.GitSource{Url: "file://" + f.repo.Bare}, f.first, filepath.Join(t.TempDir(), "f"), nil); err != nil || string(data) != composeV1 {
		t.Fatalf("file://: %q, %v", data, err)
	}
}

// The path rules of ReadComposeFile, on a commit's tree: symbolic links
// are followed inside the repository only.
func TestReadComposeAtPaths(t *testing.T) {
	srv := gitserver.New(t)
	repo := srv.Repo(t, "paths", false)
	repo.Symlink(t, "compose.yaml", "deploy/app.yaml")
	repo.Symlink(t, "deploy/up.yaml", "../compose.yaml")
	repo.Symlink(t, "deploy/dir", "../conf")
	repo.Symlink(t, "out.yaml", "../../etc/passwd")
	repo.Symlink(t, "deploy/out.yaml", "../../x.yaml")
	repo.Symlink(t, "abs.yaml", "/etc/passwd")
	repo.Symlink(t, "loop-a.yaml", "loop-b.yaml")
	repo.Symlink(t, "loop-b.yaml", "loop-a.yaml")
	repo.Symlink(t, "dangling.yaml", "nothing.yaml")
	repo.Symlink(t, "todir.yaml", "conf")
	head := repo.Commit(t, map[string]string{
		"deploy/app.yaml": composeV1,
		"conf/c.yaml":     composeV2,
		"big.yaml":        strings.Repeat("#", MaxComposeFileBytes+1),
		"file.yaml":       composeV2,
	}, "paths")
	ctx := context.Background()
	cache := filepath.Join(t.TempDir(), "c")
	read := func(rel string) ([]byte, string, error) {
		return ReadComposeAt(ctx, &persysv1.GitSource{Url: repo.URL, Path: rel}, head, cache, nil)
	}

	for _, tt := range []struct{ rel, want, file string }{
		{"", composeV1, "compose.yaml"}, // a link to deploy/app.yaml
		{"deploy/app.yaml", composeV1, "deploy/app.yaml"},
		{"deploy/up.yaml", composeV1, "deploy/up.yaml"},       // ../compose.yaml, itself a link
		{"deploy/dir/c.yaml", composeV2, "deploy/dir/c.yaml"}, // through a link to a folder
	} {
		data, file, err := read(tt.rel)
		if err != nil || string(data) != tt.want || file != tt.file {
			t.Errorf("%q: got %q %q %v, want %q %q", tt.rel, data, file, err, tt.want, tt.file)
		}
	}
	for _, tt := range []struct{ rel, says string }{
		{"../x.yaml", "leaves the repository"},
		{"deploy/../../x.yaml", "leaves the repository"},
		{"/etc/passwd", "must be relative"},
		{"out.yaml", "through a symbolic link"},
		{"deploy/out.yaml", "through a symbolic link"},
		{"abs.yaml", "through a symbolic link"},
		{"loop-a.yaml", "too many symbolic links"},
		{"dangling.yaml", "does not exist"},
		{"missing.yaml", "does not exist"},
		{"conf", "not a regular file"},
		{"todir.yaml", "not a regular file"},
		{".", "not a regular file"},
		{"file.yaml/x", "not a directory"},
		{"big.yaml", "larger than"},
	} {
		_, _, err := read(tt.rel)
		if runtime.ReasonOf(err) != persysv1.FailureReason_FAILURE_REASON_INVALID_SPEC || !strings.Contains(err.Error(), tt.says) {
			t.Errorf("%q: %v, want INVALID_SPEC saying %q", tt.rel, err, tt.says)
		}
	}
}

// Many reads of two branches of one repository at once, on a cold and a
// warm cache, over http and git://: each gets its own commit's file.
func TestReadComposeAtConcurrent(t *testing.T) {
	const n = 200
	srv := gitserver.New(t)
	repo := srv.Repo(t, "busy", false)
	repo.Branch(t, "one")
	one := repo.Commit(t, map[string]string{"compose.yaml": composeV1}, "one")
	repo.Branch(t, "two")
	two := repo.Commit(t, map[string]string{"compose.yaml": composeV2}, "two")
	want := map[string]string{one: composeV1, two: composeV2}
	ctx := context.Background()

	for _, url := range []string{repo.URL, repo.DaemonURL(t)} {
		cache := filepath.Join(t.TempDir(), "busy")
		for _, round := range []string{"cold", "warm"} {
			var wg sync.WaitGroup
			errs := make([]error, n)
			for i := range n {
				wg.Add(1)
				go func() {
					defer wg.Done()
					commit := []string{one, two}[i%2]
					data, _, err := ReadComposeAt(ctx, &persysv1.GitSource{Url: url}, commit, cache, nil)
					if err == nil && string(data) != want[commit] {
						err = fmt.Errorf("commit %s: read %q, want %q", commit, data, want[commit])
					}
					errs[i] = err
				}()
			}
			wg.Wait()
			failed := 0
			for _, err := range errs {
				if err != nil {
					if failed++; failed <= 3 {
						t.Errorf("%s %s: %v", url, round, err)
					}
				}
			}
			if failed > 0 {
				t.Errorf("%s, %s cache: %d of %d reads failed", url, round, failed, n)
			}
		}
	}
}
