package images

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/moby/moby/api/types/build"
	"github.com/moby/moby/client"
)

// TickerTag is the tag TickerImage builds.
const TickerTag = "persys-ticker:test"

// tickerSource prints "tick N" (N = 1, 2, ...) every $TICK (a Go
// duration, default 100ms), each line written at once, and exits at once
// on SIGTERM: a log whose every line says where it belongs in order.
const tickerSource = `package main

import (
	"fmt"
	"os"
	"os/signal"
	"syscall"
	"time"
)

func main() {
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT)
	every := 100 * time.Millisecond
	if d, err := time.ParseDuration(os.Getenv("TICK")); err == nil && d > 0 {
		every = d
	}
	t := time.NewTicker(every)
	for n := 1; ; n++ {
		fmt.Printf("tick %d\n", n)
		select {
		case <-sig:
			return
		case <-t.C:
		}
	}
}
`

const tickerDockerfile = `FROM scratch
COPY ticker /ticker
ENTRYPOINT ["/ticker"]
`

// BuildTicker compiles the ticker (standard library only, static) and
// builds a FROM scratch image tagged tag, unless one built from the same
// source exists. It returns the image id.
func BuildTicker(ctx context.Context, cli *client.Client, tag string) (string, error) {
	sum := sha256.Sum256([]byte(tickerSource + tickerDockerfile))
	source := hex.EncodeToString(sum[:])
	if img, err := cli.ImageInspect(ctx, tag); err == nil && img.Config != nil && img.Config.Labels[sourceLabel] == source {
		return img.ID, nil
	} else if err != nil && !cerrdefs.IsNotFound(err) {
		return "", fmt.Errorf("build ticker: inspect %s: %w", tag, err)
	}
	binary, err := buildTickerBinary(ctx)
	if err != nil {
		return "", err
	}
	return buildTickerImage(ctx, cli, tag, source, binary)
}

// buildImage builds the ticker's FROM scratch image from its binary.
func buildTickerImage(ctx context.Context, cli *client.Client, tag, source string, binary []byte) (string, error) {
	buildCtx, err := tarContext(map[string]fileEntry{
		"Dockerfile": {data: []byte(tickerDockerfile), mode: 0o644},
		"ticker":     {data: binary, mode: 0o755},
	})
	if err != nil {
		return "", fmt.Errorf("build ticker: %w", err)
	}
	resp, err := cli.ImageBuild(ctx, buildCtx, client.ImageBuildOptions{
		Tags: []string{tag}, Remove: true, ForceRemove: true, Version: build.BuilderV1,
		Labels: map[string]string{"persys.test": "true", sourceLabel: source},
	})
	if err != nil {
		return "", fmt.Errorf("build ticker: image build: %w", err)
	}
	defer resp.Body.Close()
	if err := readBuildStream(resp.Body); err != nil {
		return "", fmt.Errorf("build ticker: image build: %w", err)
	}
	img, err := cli.ImageInspect(ctx, tag)
	if err != nil {
		return "", fmt.Errorf("build ticker: inspect built %s: %w", tag, err)
	}
	return img.ID, nil
}

// buildTickerBinary compiles tickerSource as a static Linux binary.
func buildTickerBinary(ctx context.Context) ([]byte, error) {
	dir, err := os.MkdirTemp("", "persys-ticker-*")
	if err != nil {
		return nil, fmt.Errorf("build ticker: %w", err)
	}
	defer os.RemoveAll(dir)
	if err := os.WriteFile(filepath.Join(dir, "main.go"), []byte(tickerSource), 0o644); err != nil {
		return nil, fmt.Errorf("build ticker: %w", err)
	}
	if err := os.WriteFile(filepath.Join(dir, "go.mod"), []byte("module ticker\n\ngo 1.22\n"), 0o644); err != nil {
		return nil, fmt.Errorf("build ticker: %w", err)
	}
	bin := filepath.Join(dir, "ticker")
	cmd := exec.CommandContext(ctx, "go", "build", "-trimpath", "-ldflags=-s -w", "-o", bin, ".")
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOFLAGS=-mod=mod", "GOWORK=off")
	if out, err := cmd.CombinedOutput(); err != nil {
		return nil, fmt.Errorf("build ticker: go build: %w: %s", err, out)
	}
	binary, err := os.ReadFile(bin)
	if err != nil {
		return nil, fmt.Errorf("build ticker: %w", err)
	}
	return binary, nil
}

var ticker builtOnce

// TickerImage returns a connected client and the tag of the ticker image,
// building it once per test process.
func TickerImage(t testing.TB) (cli *client.Client, tag string) {
	t.Helper()
	return ticker.get(t, TickerTag, BuildTicker)
}
