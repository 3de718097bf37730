package release

import (
	"encoding/json"
	"fmt"
	"os"
	osexec "os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/persys-dev/compute/internal/testutil/need"
)

var (
	imageOnce sync.Once
	imageTag  string
	imageErr  string
)

// persysImage builds the persys image of testVersion once per test
// process with scripts/build-image.sh; TestMain removes it.
func persysImage(t *testing.T) string {
	t.Helper()
	imageOnce.Do(func() {
		tag := fmt.Sprintf("persys-release-test:%d", time.Now().UnixNano())
		cmd := osexec.Command("bash", "scripts/build-image.sh", tag)
		cmd.Dir = root(t)
		cmd.Env = append(os.Environ(), "VERSION="+testVersion)
		if out, err := cmd.CombinedOutput(); err != nil {
			imageErr = fmt.Sprintf("scripts/build-image.sh: %v\n%s", err, out)
			return
		}
		imageTag = tag
	})
	if imageErr != "" {
		t.Fatal(imageErr)
	}
	return imageTag
}

// TestImage builds the persys image with scripts/build-image.sh, runs
// `persys version` in it, and checks that it runs as the non-root user who
// owns the data volume.
func TestImage(t *testing.T) {
	if err := osexec.Command("docker", "info").Run(); err != nil {
		need.Missing(t, "no Docker engine answers: %v", err)
	}
	tag := persysImage(t)

	var info struct{ Version, Platform string }
	if err := json.Unmarshal([]byte(run(t, nil, "docker", "run", "--rm", tag, "version", "--json")), &info); err != nil {
		t.Fatal(err)
	}
	if info.Version != testVersion || info.Platform != "linux/amd64" && info.Platform != "linux/arm64" {
		t.Fatalf("persys version in the image: %+v", info)
	}
	var img []struct {
		Size   int64
		Config struct {
			User       string
			Entrypoint []string
			Labels     map[string]string
		}
		RootFS struct{ Layers []string }
	}
	if err := json.Unmarshal([]byte(run(t, nil, "docker", "image", "inspect", tag)), &img); err != nil || len(img) != 1 {
		t.Fatalf("docker image inspect: %v", err)
	}
	c := img[0].Config
	if c.User != "65532:65532" || strings.Join(c.Entrypoint, " ") != "/usr/bin/persys" ||
		c.Labels["org.opencontainers.image.version"] != testVersion || len(img[0].RootFS.Layers) != 1 {
		t.Fatalf("image config: user %q entrypoint %v labels %v layers %d", c.User, c.Entrypoint, c.Labels, len(img[0].RootFS.Layers))
	}
	t.Logf("image %s: %d bytes", tag, img[0].Size)
	// The non-root user can write its volume: a CA made in one container
	// is read back by the next.
	vol := strings.NewReplacer(":", "-").Replace(tag)
	run(t, nil, "docker", "volume", "create", vol)
	t.Cleanup(func() { _ = osexec.Command("docker", "volume", "rm", "-f", vol).Run() })
	out := run(t, nil, "docker", "run", "--rm", "-v", vol+":/var/lib/persys", tag, "ca", "init", "--dir", "/var/lib/persys/pki")
	hash := run(t, nil, "docker", "run", "--rm", "-v", vol+":/var/lib/persys", tag, "ca", "hash", "--dir", "/var/lib/persys/pki")
	if h := strings.TrimSpace(hash); !strings.HasPrefix(h, "sha256:") || !strings.Contains(out, h) {
		t.Fatalf("ca init printed\n%s\nca hash printed %q", out, hash)
	}
}
