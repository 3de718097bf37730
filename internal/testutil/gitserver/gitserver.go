// Package gitserver serves Git repositories that a test creates over HTTP
// on loopback, through `git http-backend` (CGI), with an optional
// basic-auth check for private repositories, and on request over git://
// through `git daemon` (Repo.DaemonURL). Tests create repositories with
// Server.Repo and change them with Repo.Commit, Repo.Symlink, Repo.Tag
// and Repo.Branch; the git binary must be installed (the test fails when
// it is not).
package gitserver

import (
	"context"
	"net"
	"net/http"
	"net/http/cgi"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
)

// Token is the password private repositories accept (any user name).
const Token = "s3cret-test-token"

const backend = "/usr/lib/git-core/git-http-backend"

// Server serves every repository under its root folder.
type Server struct {
	URL  string
	root string

	mu      sync.Mutex
	private map[string]bool
	// daemon is the git:// base URL once Daemon started one.
	daemon string
}

// New starts a server on 127.0.0.1, stopped when the test ends.
func New(t testing.TB) *Server {
	t.Helper()
	if _, err := exec.LookPath("git"); err != nil {
		t.Fatalf("git binary not found: %v", err)
	}
	if _, err := os.Stat(backend); err != nil {
		t.Fatalf("git http-backend not found: %v", err)
	}
	s := &Server{root: t.TempDir(), private: map[string]bool{}}
	h := &cgi.Handler{
		Path: backend,
		Env:  []string{"GIT_PROJECT_ROOT=" + s.root, "GIT_HTTP_EXPORT_ALL=1"},
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		name, _, _ := strings.Cut(strings.TrimPrefix(r.URL.Path, "/"), "/")
		s.mu.Lock()
		priv := s.private[name]
		s.mu.Unlock()
		if priv {
			if _, pw, ok := r.BasicAuth(); !ok || pw != Token {
				w.Header().Set("WWW-Authenticate", `Basic realm="git"`)
				http.Error(w, "authentication required", http.StatusUnauthorized)
				return
			}
		}
		h.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	s.URL = srv.URL
	return s
}

// Repo is a bare repository on the server plus a work tree to change it.
type Repo struct {
	// URL clones the repository (without credentials).
	URL  string
	Bare string
	work string
	name string
	srv  *Server
}

// Repo creates an empty repository name.git; private ones need Token.
func (s *Server) Repo(t testing.TB, name string, private bool) *Repo {
	t.Helper()
	bare := filepath.Join(s.root, name+".git")
	run(t, "", "git", "init", "-q", "--bare", "-b", "main", bare)
	run(t, bare, "git", "config", "http.receivepack", "true")
	work := filepath.Join(t.TempDir(), name)
	run(t, "", "git", "init", "-q", "-b", "main", work)
	run(t, work, "git", "remote", "add", "origin", bare)
	s.mu.Lock()
	s.private[name+".git"] = private
	s.mu.Unlock()
	return &Repo{URL: s.URL + "/" + name + ".git", Bare: bare, work: work, name: name, srv: s}
}

// DaemonURL is the repository's git:// URL, served by the server's git
// daemon (started on first use, stopped when the test ends). git daemon
// has no authentication: it serves private repositories too.
func (r *Repo) DaemonURL(t testing.TB) string {
	t.Helper()
	return r.srv.Daemon(t) + "/" + r.name + ".git"
}

// Daemon serves the server's repositories over git:// on 127.0.0.1 (once;
// stopped when the test ends) and returns the base URL
// (git://127.0.0.1:PORT). The test owns the listener and runs one
// `git daemon --inetd` per connection: a standalone git daemon listens
// with a backlog of 5, and the kernel resets connections past it, so a
// test of 200 concurrent clients would measure that backlog.
func (s *Server) Daemon(t testing.TB) string {
	t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.daemon != "" {
		return s.daemon
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("git daemon: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			conn, err := ln.Accept()
			if err != nil {
				return // closed at cleanup
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				s.serveGit(ctx, conn.(*net.TCPConn))
			}()
		}
	}()
	t.Cleanup(func() {
		_ = ln.Close()
		cancel()
		wg.Wait()
	})
	s.daemon = "git://" + ln.Addr().String()
	return s.daemon
}

// serveGit runs git daemon on one connection, as inetd would, until the
// client is done or ctx ends.
func (s *Server) serveGit(ctx context.Context, conn *net.TCPConn) {
	defer func() { _ = conn.Close() }()
	// The daemon needs a file descriptor of its own for the socket.
	f, err := conn.File()
	if err != nil {
		return
	}
	defer func() { _ = f.Close() }()
	cmd := exec.CommandContext(ctx, "git", "daemon", "--inetd", "--export-all", "--base-path="+s.root, s.root)
	cmd.Env = append(os.Environ(), "GIT_CONFIG_GLOBAL=/dev/null", "GIT_CONFIG_NOSYSTEM=1")
	cmd.Stdin, cmd.Stdout = f, f
	// At the test's end the daemon and the upload-pack it started go
	// together: they share a process group of their own.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	_ = cmd.Run()
}

// Commit writes files (path → content; empty content removes the file) on
// the current branch, commits and pushes, and returns the commit hash.
func (r *Repo) Commit(t testing.TB, files map[string]string, msg string) string {
	t.Helper()
	for p, content := range files {
		full := filepath.Join(r.work, p)
		if content == "" {
			_ = os.Remove(full)
			continue
		}
		if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(full, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	run(t, r.work, "git", "add", "-A")
	run(t, r.work, "git", "commit", "-q", "--allow-empty", "-m", msg)
	branch := strings.TrimSpace(run(t, r.work, "git", "rev-parse", "--abbrev-ref", "HEAD"))
	run(t, r.work, "git", "push", "-q", "origin", branch)
	return strings.TrimSpace(run(t, r.work, "git", "rev-parse", "HEAD"))
}

// Symlink creates a symbolic link at p to target in the work tree; the
// next Commit commits it.
func (r *Repo) Symlink(t testing.TB, p, target string) {
	t.Helper()
	full := filepath.Join(r.work, p)
	if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
		t.Fatal(err)
	}
	_ = os.Remove(full)
	if err := os.Symlink(target, full); err != nil {
		t.Fatal(err)
	}
}

// Branch creates (or switches to) branch in the work tree.
func (r *Repo) Branch(t testing.TB, branch string) {
	t.Helper()
	if out, err := exec.Command("git", "-C", r.work, "rev-parse", "--verify", "-q", "refs/heads/"+branch).Output(); err == nil && len(out) > 0 {
		run(t, r.work, "git", "checkout", "-q", branch)
		return
	}
	run(t, r.work, "git", "checkout", "-q", "-b", branch)
}

// Tag tags the current commit (annotated when annotated) and pushes it.
func (r *Repo) Tag(t testing.TB, tag string, annotated bool) {
	t.Helper()
	if annotated {
		run(t, r.work, "git", "tag", "-a", "-m", "tag "+tag, tag)
	} else {
		run(t, r.work, "git", "tag", tag)
	}
	run(t, r.work, "git", "push", "-q", "origin", "refs/tags/"+tag)
}

func run(t testing.TB, dir, name string, args ...string) string {
	t.Helper()
	cmd := exec.Command(name, args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(),
		"GIT_AUTHOR_NAME=test", "GIT_AUTHOR_EMAIL=test@example.invalid",
		"GIT_COMMITTER_NAME=test", "GIT_COMMITTER_EMAIL=test@example.invalid",
		"GIT_CONFIG_GLOBAL=/dev/null", "GIT_CONFIG_NOSYSTEM=1")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v: %s", name, strings.Join(args, " "), err, out)
	}
	return string(out)
}
