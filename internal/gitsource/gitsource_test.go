package gitsource

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	persysv1 "github.com/persys-dev/compute/api/persys/v1"
	"github.com/persys-dev/compute/internal/runtime"
	"github.com/persys-dev/compute/internal/testutil/gitserver"
)

const composeV1 = "services:\n  web:\n    image: hello:v1\n"
const composeV2 = "services:\n  web:\n    image: hello:v2\n"

// fixture: main has two commits (v1 tagged annotated "v1", light tag
// "light"), branch "dev" one more commit.
type fixture struct {
	srv                    *gitserver.Server
	repo                   *gitserver.Repo
	first, second, devHead string
}

func newFixture(t *testing.T, private bool) fixture {
	t.Helper()
	srv := gitserver.New(t)
	repo := srv.Repo(t, "app", private)
	f := fixture{srv: srv, repo: repo}
	f.first = repo.Commit(t, map[string]string{"compose.yaml": composeV1}, "v1")
	repo.Tag(t, "v1", true)
	repo.Tag(t, "light", false)
	f.second = repo.Commit(t, map[string]string{"compose.yaml": composeV2, "deploy/other.yml": composeV1}, "v2")
	repo.Branch(t, "dev")
	f.devHead = repo.Commit(t, map[string]string{"docker-compose.yml": composeV1, "compose.yaml": ""}, "dev")
	repo.Branch(t, "main")
	return f
}

func TestResolve(t *testing.T) {
	f := newFixture(t, false)
	ctx := context.Background()
	tests := []struct {
		ref, want string
	}{
		{"", f.second},
		{"main", f.second},
		{"refs/heads/main", f.second},
		{"dev", f.devHead},
		{"v1", f.first},    // annotated tag, peeled
		{"light", f.first}, // lightweight tag
		{f.second, f.second},
		{f.second[:8], f.second},
		{f.first, f.first},     // not advertised: needs a fetch
		{f.first[:7], f.first}, // short, not advertised
	}
	for _, tt := range tests {
		got, err := Resolve(ctx, &persysv1.GitSource{Url: f.repo.URL, Ref: tt.ref}, nil)
		if err != nil {
			t.Errorf("Resolve(%q): %v", tt.ref, err)
			continue
		}
		if got != tt.want {
			t.Errorf("Resolve(%q) = %s, want %s", tt.ref, got, tt.want)
		}
	}
}

func TestResolveErrors(t *testing.T) {
	f := newFixture(t, false)
	ctx := context.Background()
	tests := []struct {
		name   string
		url    string
		ref    string
		reason persysv1.FailureReason
		cause  error
	}{
		{"missing branch", f.repo.URL, "nope", persysv1.FailureReason_FAILURE_REASON_GIT_FETCH_FAILED, ErrRefNotFound},
		{"missing commit", f.repo.URL, "deadbeefdeadbeefdeadbeefdeadbeefdeadbeef", persysv1.FailureReason_FAILURE_REASON_GIT_FETCH_FAILED, ErrRefNotFound},
		{"missing repo", f.srv.URL + "/nothing.git", "main", persysv1.FailureReason_FAILURE_REASON_GIT_FETCH_FAILED, ErrUnreachable},
		{"host does not resolve", "http://persys-no-such-host.invalid/app.git", "main", persysv1.FailureReason_FAILURE_REASON_GIT_FETCH_FAILED, ErrUnreachable},
		{"connection refused", "http://127.0.0.1:1/app.git", "main", persysv1.FailureReason_FAILURE_REASON_GIT_FETCH_FAILED, ErrUnreachable},
		{"ssh scheme", "ssh://git@example.invalid/app.git", "main", persysv1.FailureReason_FAILURE_REASON_INVALID_SPEC, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Resolve(ctx, &persysv1.GitSource{Url: tt.url, Ref: tt.ref}, nil)
			if err == nil {
				t.Fatal("Resolve succeeded, want an error")
			}
			if got := runtime.ReasonOf(err); got != tt.reason {
				t.Errorf("reason = %s, want %s (%v)", got, tt.reason, err)
			}
			if tt.cause != nil && !errors.Is(err, tt.cause) {
				t.Errorf("error %v does not match %v", err, tt.cause)
			}
			if tt.ref != "" && tt.reason == persysv1.FailureReason_FAILURE_REASON_GIT_FETCH_FAILED && !strings.Contains(err.Error(), tt.ref) {
				t.Errorf("error %q does not name the ref %q", err, tt.ref)
			}
		})
	}
}

func TestPrivateRepo(t *testing.T) {
	f := newFixture(t, true)
	ctx := context.Background()
	src := &persysv1.GitSource{Url: f.repo.URL, Ref: "main"}

	_, err := Resolve(ctx, src, nil)
	if !errors.Is(err, ErrAuth) || runtime.ReasonOf(err) != persysv1.FailureReason_FAILURE_REASON_GIT_FETCH_FAILED {
		t.Fatalf("Resolve without token: %v, want GIT_FETCH_FAILED auth", err)
	}
	_, err = Resolve(ctx, src, &Auth{Username: "x", Password: "wrong-token"})
	if !errors.Is(err, ErrAuth) {
		t.Fatalf("Resolve with a wrong token: %v, want auth", err)
	}
	if strings.Contains(err.Error(), "wrong-token") {
		t.Fatalf("error shows the token: %v", err)
	}

	auth, err := AuthFromSecret(&persysv1.SecretValue{Data: map[string][]byte{"token": []byte(gitserver.Token)}})
	if err != nil {
		t.Fatal(err)
	}
	got, err := Resolve(ctx, src, auth)
	if err != nil || got != f.second {
		t.Fatalf("Resolve with token = %s, %v; want %s", got, err, f.second)
	}
	dir, err := Checkout(ctx, src, got, filepath.Join(t.TempDir(), "cache"), auth)
	if err != nil {
		t.Fatalf("Checkout with token: %v", err)
	}
	data, _, err := ReadComposeFile(dir, "")
	if err != nil || string(data) != composeV2 {
		t.Fatalf("ReadComposeFile = %q, %v", data, err)
	}

	// Credentials in the URL work too and never show in errors.
	withCreds := strings.Replace(f.repo.URL, "http://", "http://u:"+gitserver.Token+"@", 1)
	if _, err := Resolve(ctx, &persysv1.GitSource{Url: withCreds, Ref: "main"}, nil); err != nil {
		t.Fatalf("Resolve with URL credentials: %v", err)
	}
	_, err = Resolve(ctx, &persysv1.GitSource{Url: withCreds, Ref: "nope"}, nil)
	if err == nil || strings.Contains(err.Error(), gitserver.Token) {
		t.Fatalf("error %v: want a failure without the token", err)
	}
}

func TestAuthFromSecret(t *testing.T) {
	if _, err := AuthFromSecret(&persysv1.SecretValue{Data: map[string][]byte{"user": []byte("x")}}); err == nil {
		t.Error("a secret without token or username/password was accepted")
	}
	a, err := AuthFromSecret(&persysv1.SecretValue{Data: map[string][]byte{"username": []byte("u"), "password": []byte("p")}})
	if err != nil || a.Username != "u" || a.Password != "p" {
		t.Errorf("username/password: %v, %v", a, err)
	}
	if strings.Contains(a.String(), "p") && !strings.Contains(a.String(), "redacted") {
		t.Errorf("String shows the password: %s", a)
	}
	if a, err := AuthFromSecret(nil); a != nil || err != nil {
		t.Errorf("nil secret: %v, %v", a, err)
	}
}

func TestCheckoutReusesCache(t *testing.T) {
	f := newFixture(t, false)
	ctx := context.Background()
	cache := filepath.Join(t.TempDir(), "w1")
	src := &persysv1.GitSource{Url: f.repo.URL, Ref: "v1"}

	dir, err := Checkout(ctx, src, f.first, cache, nil)
	if err != nil {
		t.Fatalf("Checkout v1: %v", err)
	}
	if data, _, err := ReadComposeFile(dir, ""); err != nil || string(data) != composeV1 {
		t.Fatalf("v1 compose = %q, %v", data, err)
	}
	marker := filepath.Join(dir, ".git", "persys-marker")
	if err := os.WriteFile(marker, []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}

	// A commit already in the clone: same clone, no new one.
	if _, err := Checkout(ctx, &persysv1.GitSource{Url: f.repo.URL, Ref: "main"}, f.second, cache, nil); err != nil {
		t.Fatalf("Checkout main: %v", err)
	}
	if data, _, _ := ReadComposeFile(dir, ""); string(data) != composeV2 {
		t.Fatalf("main compose = %q", data)
	}
	// A commit pushed after the clone: fetched into the same clone.
	f.repo.Branch(t, "main")
	third := f.repo.Commit(t, map[string]string{"compose.yaml": composeV1 + "# third\n"}, "third")
	if _, err := Checkout(ctx, &persysv1.GitSource{Url: f.repo.URL, Ref: "main"}, "", cache, nil); err != nil {
		t.Fatalf("Checkout after push: %v", err)
	}
	if data, _, _ := ReadComposeFile(dir, ""); !strings.HasSuffix(string(data), "# third\n") {
		t.Fatalf("compose after push = %q (want commit %s)", data, third)
	}
	if _, err := os.Stat(marker); err != nil {
		t.Fatalf("the clone was not reused: %v", err)
	}
	// The dev branch has docker-compose.yml only.
	if _, err := Checkout(ctx, &persysv1.GitSource{Url: f.repo.URL, Ref: "dev"}, f.devHead, cache, nil); err != nil {
		t.Fatalf("Checkout dev: %v", err)
	}
	if _, file, err := ReadComposeFile(dir, ""); err != nil || file != "docker-compose.yml" {
		t.Fatalf("dev compose file = %q, %v", file, err)
	}
	if _, err := Checkout(ctx, &persysv1.GitSource{Url: f.repo.URL}, "deadbeefdeadbeefdeadbeefdeadbeefdeadbeef", cache, nil); !errors.Is(err, ErrRefNotFound) {
		t.Fatalf("Checkout of a missing commit: %v, want ref not found", err)
	}
}

func TestReadComposeFile(t *testing.T) {
	dir := t.TempDir()
	outside := t.TempDir()
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(os.MkdirAll(filepath.Join(dir, "deploy"), 0o755))
	must(os.WriteFile(filepath.Join(dir, "deploy", "app.yaml"), []byte(composeV1), 0o644))
	must(os.WriteFile(filepath.Join(outside, "secret.yaml"), []byte("x: 1\n"), 0o644))
	must(os.Symlink(filepath.Join(outside, "secret.yaml"), filepath.Join(dir, "link.yaml")))
	must(os.WriteFile(filepath.Join(dir, "big.yaml"), make([]byte, MaxComposeFileBytes+1), 0o644))

	if data, file, err := ReadComposeFile(dir, "deploy/app.yaml"); err != nil || string(data) != composeV1 || file != "deploy/app.yaml" {
		t.Errorf("deploy/app.yaml: %q %q %v", data, file, err)
	}
	for _, p := range []string{"../x.yaml", "/etc/passwd", "deploy/../../x.yaml", "link.yaml", "big.yaml", "missing.yaml", ""} {
		_, _, err := ReadComposeFile(dir, p)
		if runtime.ReasonOf(err) != persysv1.FailureReason_FAILURE_REASON_INVALID_SPEC {
			t.Errorf("ReadComposeFile(%q) = %v, want INVALID_SPEC", p, err)
		}
	}
}

func TestFileURL(t *testing.T) {
	f := newFixture(t, false)
	ctx := context.Background()
	src := &persysv1.GitSource{Url: "file://" + f.repo.Bare, Ref: "v1"}
	got, err := Resolve(ctx, src, nil)
	if err != nil || got != f.first {
		t.Fatalf("Resolve file:// = %s, %v; want %s", got, err, f.first)
	}
	dir, err := Checkout(ctx, src, got, filepath.Join(t.TempDir(), "c"), nil)
	if err != nil {
		t.Fatalf("Checkout file://: %v", err)
	}
	if data, _, err := ReadComposeFile(dir, ""); err != nil || string(data) != composeV1 {
		t.Fatalf("compose = %q, %v", data, err)
	}
}
