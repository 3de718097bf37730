// Package registry runs a private image registry for tests: Debian's
// docker-registry binary (the distribution registry 2.x) on 127.0.0.1 at a
// free port, with a temporary storage folder and htpasswd (bcrypt) basic
// auth, stopped when the test ends. The Docker engine treats 127.0.0.0/8
// registries as insecure, so plain HTTP works. Push puts a local image into
// it through the Engine API and removes the local tag, so the next use has
// to pull. A test that calls Start fails when env CI is set and the binary
// or Docker is missing, and skips otherwise.
package registry

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/moby/moby/client"
	"golang.org/x/crypto/bcrypt"

	persysv1 "github.com/persys-dev/compute/api/persys/v1"
	"github.com/persys-dev/compute/internal/registryauth"
	"github.com/persys-dev/compute/internal/testutil/images"
	"github.com/persys-dev/compute/internal/testutil/need"
)

// Binary is where Debian's docker-registry package installs the registry.
const Binary = "/usr/bin/docker-registry"

// Registry is one running registry.
type Registry struct {
	t        testing.TB
	cli      *client.Client
	host     string // 127.0.0.1:PORT
	username string
	password string
	dir      string
	logs     *lockedBuffer
}

// Host is the registry's address as image references name it:
// 127.0.0.1:PORT.
func (r *Registry) Host() string { return r.host }

// Username is the one user the registry accepts.
func (r *Registry) Username() string { return r.username }

// Password is the user's password.
func (r *Registry) Password() string { return r.password }

// Client is the Engine API client Start connected (closed at cleanup).
func (r *Registry) Client() *client.Client { return r.cli }

// Secret returns a REGISTRY secret value named name with the registry's
// server and credentials, as the scheduler would deliver it.
func (r *Registry) Secret(name string) *persysv1.SecretValue {
	return r.SecretWith(name, r.username, r.password)
}

// SecretWith is Secret with other credentials (a wrong password, say).
func (r *Registry) SecretWith(name, username, password string) *persysv1.SecretValue {
	return &persysv1.SecretValue{
		Name: name,
		Type: persysv1.SecretType_SECRET_TYPE_REGISTRY,
		Data: map[string][]byte{
			registryauth.KeyServer:   []byte(r.host),
			registryauth.KeyUsername: []byte(username),
			registryauth.KeyPassword: []byte(password),
		},
	}
}

// Start runs a registry for the test and stops it (and removes its
// storage) at cleanup. It needs the Docker engine too, for Push.
func Start(t testing.TB) *Registry {
	t.Helper()
	if _, err := os.Stat(Binary); err != nil {
		need.Missing(t, "registry: %s missing (scripts/install-deps.sh installs docker-registry): %v", Binary, err)
	}
	cli := images.DockerOrSkip(t)
	t.Cleanup(func() { _ = cli.Close() })

	dir := t.TempDir()
	r := &Registry{t: t, cli: cli, dir: dir, username: "persys-" + randHex(t, 4), password: randHex(t, 16), logs: &lockedBuffer{}}
	hash, err := bcrypt.GenerateFromPassword([]byte(r.password), bcrypt.MinCost)
	if err != nil {
		t.Fatalf("registry: bcrypt: %v", err)
	}
	htpasswd := filepath.Join(dir, "htpasswd")
	if err := os.WriteFile(htpasswd, []byte(r.username+":"+string(hash)+"\n"), 0o600); err != nil {
		t.Fatalf("registry: %v", err)
	}
	storage := filepath.Join(dir, "storage")
	if err := os.Mkdir(storage, 0o700); err != nil {
		t.Fatalf("registry: %v", err)
	}

	// The port is free when chosen; another process could take it before
	// the registry binds it, which shows as the registry exiting: retry.
	const attempts = 3
	for attempt := 1; ; attempt++ {
		port := freePort(t)
		r.host = "127.0.0.1:" + strconv.Itoa(port)
		err := r.run(htpasswd, storage)
		if err == nil {
			return r
		}
		if attempt == attempts {
			t.Fatalf("registry: %v\nregistry output:\n%s", err, r.logs.String())
		}
		t.Logf("registry: attempt %d: %v; retrying on another port", attempt, err)
	}
}

const configTemplate = `version: 0.1
log:
  level: warn
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: %s
  delete:
    enabled: true
http:
  addr: %s
  secret: %s
auth:
  htpasswd:
    realm: persys-test
    path: %s
`

// run writes the config, starts the binary and waits until it answers.
func (r *Registry) run(htpasswd, storage string) error {
	cfg := filepath.Join(r.dir, "config.yml")
	if err := os.WriteFile(cfg, fmt.Appendf(nil, configTemplate, storage, r.host, randHex(r.t, 16), htpasswd), 0o600); err != nil {
		return err
	}
	cmd := exec.Command(Binary, "serve", cfg)
	cmd.Stdout, cmd.Stderr = r.logs, r.logs
	cmd.Env = []string{"PATH=/usr/sbin:/usr/bin:/sbin:/bin"}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start %s: %w", Binary, err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	stop := func() {
		_ = cmd.Process.Kill()
		<-exited
	}

	deadline := time.After(30 * time.Second)
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	hc := &http.Client{Timeout: 2 * time.Second}
	for {
		select {
		case err := <-exited:
			return fmt.Errorf("%s exited before answering: %v", Binary, err)
		case <-deadline:
			stop()
			return fmt.Errorf("%s did not answer on %s within 30s", Binary, r.host)
		case <-tick.C:
		}
		resp, err := hc.Get("http://" + r.host + "/v2/")
		if err != nil {
			continue
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		_ = resp.Body.Close()
		if resp.StatusCode != http.StatusUnauthorized {
			stop()
			return fmt.Errorf("GET /v2/ without credentials answered %s, want 401", resp.Status)
		}
		r.t.Cleanup(stop)
		return nil
	}
}

// Push tags localImage (which must exist in the engine) as
// HOST/repo:tag (tag "latest" when repo has none), pushes it with the
// registry's credentials and removes that tag from the engine again, so
// that running ref needs a pull. It returns ref.
func (r *Registry) Push(t testing.TB, localImage, repo string) (ref string) {
	t.Helper()
	if repo == "" || strings.Contains(repo, "@") {
		t.Fatalf("registry push: repo %q must be a name with an optional tag", repo)
	}
	ref = r.host + "/" + repo
	if i, j := strings.LastIndex(ref, ":"), strings.LastIndex(ref, "/"); i <= j {
		ref += ":latest"
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if _, err := r.cli.ImageTag(ctx, client.ImageTagOptions{Source: localImage, Target: ref}); err != nil {
		t.Fatalf("registry push: tag %s as %s: %v", localImage, ref, err)
	}
	defer func() {
		if _, err := r.cli.ImageRemove(context.Background(), ref, client.ImageRemoveOptions{}); err != nil && !cerrdefs.IsNotFound(err) {
			t.Errorf("registry push: remove local tag %s: %v", ref, err)
		}
	}()
	auth, err := registryauth.Encode(registryauth.Credentials{Secret: "test-registry", Server: r.host, Username: r.username, Password: r.password})
	if err != nil {
		t.Fatalf("registry push: %v", err)
	}
	body, err := r.cli.ImagePush(ctx, ref, client.ImagePushOptions{RegistryAuth: auth})
	if err != nil {
		t.Fatalf("registry push %s: %v", ref, err)
	}
	defer body.Close()
	if err := readStream(body); err != nil {
		t.Fatalf("registry push %s: %v\nregistry output:\n%s", ref, err, r.logs.String())
	}
	return ref
}

// readStream drains an Engine API JSON progress stream and returns the
// first error reported in it.
func readStream(rd io.Reader) error {
	dec := json.NewDecoder(rd)
	for {
		var msg struct {
			Error       string `json:"error"`
			ErrorDetail struct {
				Message string `json:"message"`
			} `json:"errorDetail"`
		}
		if err := dec.Decode(&msg); err != nil {
			if errors.Is(err, io.EOF) {
				return nil
			}
			return fmt.Errorf("read progress: %w", err)
		}
		if msg.ErrorDetail.Message != "" {
			return errors.New(msg.ErrorDetail.Message)
		}
		if msg.Error != "" {
			return errors.New(msg.Error)
		}
	}
}

func freePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("registry: free port: %v", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

func randHex(t testing.TB, n int) string {
	t.Helper()
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatalf("registry: random: %v", err)
	}
	return hex.EncodeToString(b)
}

// lockedBuffer collects the registry's output for failure messages.
type lockedBuffer struct {
	mu  sync.Mutex
	buf []byte
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	const limit = 64 << 10
	b.buf = append(b.buf, p...)
	if len(b.buf) > limit {
		b.buf = b.buf[len(b.buf)-limit:]
	}
	return len(p), nil
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return string(b.buf)
}
