package images

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/moby/moby/api/types/build"
	"github.com/moby/moby/client"
)

// program is a one-file Go program (standard library only) that a test
// image runs as its entry point from a FROM scratch image.
type program struct {
	name, source, dockerfile string
}

// buildProgramImage compiles p as a static Linux binary and builds its
// image tagged tag, unless one built from the same source exists. It
// returns the image id.
func buildProgramImage(ctx context.Context, cli *client.Client, p program, tag string) (string, error) {
	sum := sha256.Sum256([]byte(p.source + p.dockerfile))
	source := hex.EncodeToString(sum[:])
	if img, err := cli.ImageInspect(ctx, tag); err == nil && img.Config != nil && img.Config.Labels[sourceLabel] == source {
		return img.ID, nil
	} else if err != nil && !cerrdefs.IsNotFound(err) {
		return "", fmt.Errorf("build %s: inspect %s: %w", p.name, tag, err)
	}
	binary, err := p.compile(ctx)
	if err != nil {
		return "", err
	}
	buildCtx, err := tarContext(map[string]fileEntry{
		"Dockerfile": {data: []byte(p.dockerfile), mode: 0o644},
		p.name:       {data: binary, mode: 0o755},
	})
	if err != nil {
		return "", fmt.Errorf("build %s: %w", p.name, err)
	}
	resp, err := cli.ImageBuild(ctx, buildCtx, client.ImageBuildOptions{
		Tags: []string{tag}, Remove: true, ForceRemove: true, Version: build.BuilderV1,
		Labels: map[string]string{"persys.test": "true", sourceLabel: source},
	})
	if err != nil {
		return "", fmt.Errorf("build %s: image build: %w", p.name, err)
	}
	defer resp.Body.Close()
	if err := readBuildStream(resp.Body); err != nil {
		return "", fmt.Errorf("build %s: image build: %w", p.name, err)
	}
	img, err := cli.ImageInspect(ctx, tag)
	if err != nil {
		return "", fmt.Errorf("build %s: inspect built %s: %w", p.name, tag, err)
	}
	return img.ID, nil
}

// compile builds the program as a static Linux binary and returns it.
func (p program) compile(ctx context.Context) ([]byte, error) {
	dir, err := os.MkdirTemp("", "persys-"+p.name+"-*")
	if err != nil {
		return nil, fmt.Errorf("build %s: %w", p.name, err)
	}
	defer os.RemoveAll(dir)
	if err := os.WriteFile(filepath.Join(dir, "main.go"), []byte(p.source), 0o644); err != nil {
		return nil, fmt.Errorf("build %s: %w", p.name, err)
	}
	if err := os.WriteFile(filepath.Join(dir, "go.mod"), []byte("module "+p.name+"\n\ngo 1.22\n"), 0o644); err != nil {
		return nil, fmt.Errorf("build %s: %w", p.name, err)
	}
	bin := filepath.Join(dir, p.name)
	cmd := exec.CommandContext(ctx, "go", "build", "-trimpath", "-ldflags=-s -w", "-o", bin, ".")
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOFLAGS=-mod=mod", "GOWORK=off")
	if out, err := cmd.CombinedOutput(); err != nil {
		return nil, fmt.Errorf("build %s: go build: %w: %s", p.name, err, out)
	}
	return os.ReadFile(bin)
}
