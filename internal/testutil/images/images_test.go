package images

import (
	"archive/tar"
	"context"
	"fmt"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/moby/moby/client"
)

func TestTarContext(t *testing.T) {
	r, err := tarContext(map[string]fileEntry{
		"hello":      {data: []byte("bin"), mode: 0o755},
		"Dockerfile": {data: []byte("FROM scratch\n"), mode: 0o644},
	})
	if err != nil {
		t.Fatal(err)
	}
	tr := tar.NewReader(r)
	var got []string
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, hdr.Name)
	}
	if strings.Join(got, ",") != "Dockerfile,hello" {
		t.Fatalf("entries = %v, want [Dockerfile hello]", got)
	}
}

func TestReadBuildStream(t *testing.T) {
	tests := []struct {
		name    string
		stream  string
		wantErr string
	}{
		{name: "success", stream: `{"stream":"Step 1/3"}` + "\n" + `{"stream":"Successfully built abc"}`},
		{name: "error detail", stream: `{"stream":"Step 1/3"}{"errorDetail":{"message":"boom"},"error":"boom"}`, wantErr: "boom"},
		{name: "garbage", stream: `{"stream":`, wantErr: "read build output"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := readBuildStream(strings.NewReader(tt.stream))
			if tt.wantErr == "" {
				if err != nil {
					t.Fatalf("err = %v, want nil", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("err = %v, want containing %q", err, tt.wantErr)
			}
		})
	}
}

func TestHelloImage(t *testing.T) {
	cli, tag := HelloImage(t)
	img, err := cli.ImageInspect(t.Context(), tag)
	if err != nil {
		t.Fatalf("inspect %s: %v", tag, err)
	}
	if len(img.Config.Entrypoint) != 1 || img.Config.Entrypoint[0] != "/hello" {
		t.Fatalf("entrypoint = %v, want [/hello]", img.Config.Entrypoint)
	}
	// A second call reuses the image.
	if _, tag2 := HelloImage(t); tag2 != tag {
		t.Fatalf("second tag = %q", tag2)
	}
}

func TestBuildHelloFresh(t *testing.T) {
	cli := DockerOrSkip(t)
	t.Cleanup(func() { _ = cli.Close() })
	tag := fmt.Sprintf("persys-hello:build-%d", time.Now().UnixNano())
	t.Cleanup(func() {
		if _, err := cli.ImageRemove(context.Background(), tag, client.ImageRemoveOptions{Force: true, PruneChildren: true}); err != nil {
			t.Errorf("cleanup image %s: %v", tag, err)
		}
	})
	id, err := BuildHello(t.Context(), cli, tag)
	if err != nil {
		t.Fatalf("BuildHello: %v", err)
	}
	img, err := cli.ImageInspect(t.Context(), tag)
	if err != nil || img.ID != id {
		t.Fatalf("inspect %s: id %s err %v, want id %s", tag, img.ID, err, id)
	}
	if len(img.Config.Entrypoint) != 1 || img.Config.Entrypoint[0] != "/hello" {
		t.Errorf("entrypoint = %v, want [/hello]", img.Config.Entrypoint)
	}
	if _, ok := img.Config.ExposedPorts["8080/tcp"]; !ok {
		t.Errorf("exposed ports = %v, want 8080/tcp", img.Config.ExposedPorts)
	}
	// An existing tag is reused, not rebuilt.
	again, err := BuildHello(t.Context(), cli, tag)
	if err != nil || again != id {
		t.Fatalf("second BuildHello = %s, %v; want %s", again, err, id)
	}
}
