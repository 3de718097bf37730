package privatedocker

import (
	"context"
	"testing"

	"github.com/moby/moby/client"

	"github.com/persys-dev/compute/internal/testutil/images"
)

// TestRestartKeepsImages: the engine answers after a restart and a kill,
// with the loaded image still there, and leaves the machine's engine alone.
func TestRestartKeepsImages(t *testing.T) {
	host, image := images.HelloImage(t)
	e := Start(t, host, image)
	ctx := context.Background()
	for _, step := range []struct {
		name string
		do   func()
	}{{"restart", e.Restart}, {"kill", e.Kill}} {
		t.Logf("%s", step.name)
		step.do()
		if _, err := e.Client.ImageInspect(ctx, image); err != nil {
			t.Fatalf("after %s: %s is gone: %v", step.name, image, err)
		}
	}
	if _, err := host.Ping(ctx, client.PingOptions{}); err != nil {
		t.Fatalf("the machine's engine stopped answering: %v", err)
	}
}
