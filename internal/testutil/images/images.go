// Package images builds the container images that tests run, without any
// registry: the example app ./examples/hello compiled as a static binary and
// packed into a FROM scratch image through the Docker Engine API. Tests call
// HelloImage; a test that needs Docker fails when env CI is set and the
// engine is unreachable, and skips otherwise.
package images

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/moby/moby/api/types/build"
	"github.com/moby/moby/client"

	"github.com/persys-dev/compute/internal/testutil/need"
)

// HelloTag is the tag HelloImage builds.
const HelloTag = "persys-hello:test"

// helloDockerfile matches examples/hello/Dockerfile.
const helloDockerfile = `FROM scratch
COPY hello /hello
EXPOSE 8080
ENTRYPOINT ["/hello"]
`

// ModuleRoot walks up from the working directory to the folder holding go.mod.
func ModuleRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", fmt.Errorf("module root: %w", err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("module root: no go.mod above the working directory")
		}
		dir = parent
	}
}

// BuildHello compiles ./examples/hello (found relative to the module root)
// with CGO_ENABLED=0 and builds a FROM scratch image tagged tag through the
// Engine API, unless an image with that tag already exists. It returns the
// image id.
func BuildHello(ctx context.Context, cli *client.Client, tag string) (string, error) {
	if tag == "" {
		return "", errors.New("build hello: tag is empty")
	}
	root, err := ModuleRoot()
	if err != nil {
		return "", fmt.Errorf("build hello: %w", err)
	}
	// The image is rebuilt when the app's source changed since it was built.
	source, err := sourceHash(filepath.Join(root, "examples", "hello"))
	if err != nil {
		return "", fmt.Errorf("build hello: %w", err)
	}
	if img, err := cli.ImageInspect(ctx, tag); err == nil {
		if img.Config != nil && img.Config.Labels[sourceLabel] == source {
			return img.ID, nil
		}
	} else if !cerrdefs.IsNotFound(err) {
		return "", fmt.Errorf("build hello: inspect %s: %w", tag, err)
	}

	dir, err := os.MkdirTemp("", "persys-hello-*")
	if err != nil {
		return "", fmt.Errorf("build hello: %w", err)
	}
	defer os.RemoveAll(dir)
	bin := filepath.Join(dir, "hello")
	cmd := exec.CommandContext(ctx, "go", "build", "-trimpath", "-ldflags=-s -w", "-o", bin, "./examples/hello")
	cmd.Dir = root
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux")
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("build hello: go build: %w: %s", err, out)
	}
	binary, err := os.ReadFile(bin)
	if err != nil {
		return "", fmt.Errorf("build hello: %w", err)
	}

	buildCtx, err := tarContext(map[string]fileEntry{
		"Dockerfile": {data: []byte(helloDockerfile), mode: 0o644},
		"hello":      {data: binary, mode: 0o755},
	})
	if err != nil {
		return "", fmt.Errorf("build hello: %w", err)
	}
	resp, err := cli.ImageBuild(ctx, buildCtx, client.ImageBuildOptions{
		Tags:        []string{tag},
		Remove:      true,
		ForceRemove: true,
		Version:     build.BuilderV1,
		Labels:      map[string]string{"persys.test": "true", sourceLabel: source},
	})
	if err != nil {
		return "", fmt.Errorf("build hello: image build: %w", err)
	}
	defer resp.Body.Close()
	if err := readBuildStream(resp.Body); err != nil {
		return "", fmt.Errorf("build hello: image build: %w", err)
	}
	img, err := cli.ImageInspect(ctx, tag)
	if err != nil {
		return "", fmt.Errorf("build hello: inspect built %s: %w", tag, err)
	}
	return img.ID, nil
}

// sourceLabel holds the hash of the sources an image was built from.
const sourceLabel = "persys.test.source"

// sourceHash hashes the Go files of dir and the Dockerfile text.
func sourceHash(dir string) (string, error) {
	files, err := filepath.Glob(filepath.Join(dir, "*.go"))
	if err != nil {
		return "", err
	}
	slices.Sort(files)
	h := sha256.New()
	h.Write([]byte(helloDockerfile))
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			return "", err
		}
		fmt.Fprintf(h, "%s %d\n", filepath.Base(f), len(data))
		h.Write(data)
	}
	return hex.EncodeToString(h.Sum(nil))[:16], nil
}

type fileEntry struct {
	data []byte
	mode int64
}

// tarContext packs files into an in-memory tar archive, in name order.
func tarContext(files map[string]fileEntry) (io.Reader, error) {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	// A stable order and fixed times keep the build cache effective.
	names := slices.Sorted(maps.Keys(files))
	now := time.Unix(0, 0)
	for _, name := range names {
		f := files[name]
		hdr := &tar.Header{Name: name, Mode: f.mode, Size: int64(len(f.data)), ModTime: now, Typeflag: tar.TypeReg}
		if err := tw.WriteHeader(hdr); err != nil {
			return nil, fmt.Errorf("tar %s: %w", name, err)
		}
		if _, err := tw.Write(f.data); err != nil {
			return nil, fmt.Errorf("tar %s: %w", name, err)
		}
	}
	if err := tw.Close(); err != nil {
		return nil, fmt.Errorf("tar: %w", err)
	}
	return &buf, nil
}

// readBuildStream drains the build's JSON message stream and returns the
// first error message the engine reported in it.
func readBuildStream(r io.Reader) error {
	dec := json.NewDecoder(r)
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
			return fmt.Errorf("read build output: %w", err)
		}
		if msg.ErrorDetail.Message != "" {
			return errors.New(msg.ErrorDetail.Message)
		}
		if msg.Error != "" {
			return errors.New(msg.Error)
		}
	}
}

// DockerOrSkip returns a connected Engine API client (from the environment,
// with API version negotiation, pinged). When Docker is unreachable it fails
// the test if env CI is non-empty and skips it otherwise.
func DockerOrSkip(t testing.TB) *client.Client {
	t.Helper()
	cli, err := client.NewClientWithOpts(client.FromEnv, client.WithAPIVersionNegotiation())
	if err == nil {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if _, perr := cli.Ping(ctx, client.PingOptions{NegotiateAPIVersion: true}); perr != nil {
			_ = cli.Close()
			err = perr
		}
	}
	if err != nil {
		need.Missing(t, "docker engine unreachable: %v", err)
	}
	return cli
}

// builtOnce is an image built once per test process; a build error is
// reported to every caller.
type builtOnce struct {
	once sync.Once
	err  error
}

// get returns a connected client (see DockerOrSkip for when Docker is
// missing) and tag, building the image with build the first time.
func (b *builtOnce) get(t testing.TB, tag string, build func(context.Context, *client.Client, string) (string, error)) (*client.Client, string) {
	t.Helper()
	cli := DockerOrSkip(t)
	t.Cleanup(func() { _ = cli.Close() })
	b.once.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
		defer cancel()
		_, b.err = build(ctx, cli, tag)
	})
	if b.err != nil {
		t.Fatalf("image %s: %v", tag, b.err)
	}
	return cli, tag
}

var hello builtOnce

// HelloImage returns a connected client and the tag of the hello image,
// building the image once per test process.
func HelloImage(t testing.TB) (cli *client.Client, tag string) {
	t.Helper()
	return hello.get(t, HelloTag, BuildHello)
}
