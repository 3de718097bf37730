package images

import (
	"context"

	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/moby/moby/api/types/build"
	"github.com/moby/moby/client"
)

// PollerTag is the tag PollerImage builds.
const PollerTag = "persys-poller:test"

// pollerSource is a static client for compose tests: every 200ms it GETs
// $TARGET and prints one line "poll ok: <first line of the body>" or
// "poll error: ..."; it prints "greeting: $GREETING" on start, and, when
// $SHOW_FILE names a file, "file: <size> bytes" (never the content). It
// exits at once on SIGTERM.
const pollerSource = `package main

import (
	"bufio"
	"fmt"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"
)

func main() {
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT)
	fmt.Println("greeting:", os.Getenv("GREETING"))
	if f := os.Getenv("SHOW_FILE"); f != "" {
		if st, err := os.Stat(f); err == nil {
			fmt.Printf("file: %d bytes\n", st.Size())
		} else {
			fmt.Println("file error:", err)
		}
	}
	target := os.Getenv("TARGET")
	c := &http.Client{Timeout: 2 * time.Second}
	t := time.NewTicker(200 * time.Millisecond)
	defer t.Stop()
	for {
		select {
		case <-sig:
			return
		case <-t.C:
		}
		if target == "" {
			continue
		}
		resp, err := c.Get(target)
		if err != nil {
			fmt.Println("poll error:", err)
			continue
		}
		line, _ := bufio.NewReader(resp.Body).ReadString('\n')
		resp.Body.Close()
		fmt.Printf("poll ok: %s", line)
	}
}
`

const pollerDockerfile = `FROM scratch
COPY poller /poller
ENTRYPOINT ["/poller"]
`

// BuildPoller compiles the poller client (a static binary, standard
// library only) and builds a FROM scratch image tagged tag, unless it
// exists. It returns the image id.
func BuildPoller(ctx context.Context, cli *client.Client, tag string) (string, error) {
	if img, err := cli.ImageInspect(ctx, tag); err == nil {
		return img.ID, nil
	} else if !cerrdefs.IsNotFound(err) {
		return "", fmt.Errorf("build poller: inspect %s: %w", tag, err)
	}
	dir, err := os.MkdirTemp("", "persys-poller-*")
	if err != nil {
		return "", fmt.Errorf("build poller: %w", err)
	}
	defer os.RemoveAll(dir)
	if err := os.WriteFile(filepath.Join(dir, "main.go"), []byte(pollerSource), 0o644); err != nil {
		return "", fmt.Errorf("build poller: %w", err)
	}
	if err := os.WriteFile(filepath.Join(dir, "go.mod"), []byte("module poller\n\ngo 1.22\n"), 0o644); err != nil {
		return "", fmt.Errorf("build poller: %w", err)
	}
	bin := filepath.Join(dir, "poller")
	cmd := exec.CommandContext(ctx, "go", "build", "-trimpath", "-ldflags=-s -w", "-o", bin, ".")
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOFLAGS=-mod=mod", "GOWORK=off")
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("build poller: go build: %w: %s", err, out)
	}
	binary, err := os.ReadFile(bin)
	if err != nil {
		return "", fmt.Errorf("build poller: %w", err)
	}
	buildCtx, err := tarContext(map[string]fileEntry{
		"Dockerfile": {data: []byte(pollerDockerfile), mode: 0o644},
		"poller":     {data: binary, mode: 0o755},
	})
	if err != nil {
		return "", fmt.Errorf("build poller: %w", err)
	}
	resp, err := cli.ImageBuild(ctx, buildCtx, client.ImageBuildOptions{
		Tags: []string{tag}, Remove: true, ForceRemove: true, Version: build.BuilderV1,
		Labels: map[string]string{"persys.test": "true"},
	})
	if err != nil {
		return "", fmt.Errorf("build poller: image build: %w", err)
	}
	defer resp.Body.Close()
	if err := readBuildStream(resp.Body); err != nil {
		return "", fmt.Errorf("build poller: image build: %w", err)
	}
	img, err := cli.ImageInspect(ctx, tag)
	if err != nil {
		return "", fmt.Errorf("build poller: inspect built %s: %w", tag, err)
	}
	return img.ID, nil
}

var poller builtOnce

// PollerImage returns a connected client and the tag of the poller image,
// building it once per test process.
func PollerImage(t testing.TB) (cli *client.Client, tag string) {
	t.Helper()
	return poller.get(t, PollerTag, BuildPoller)
}
