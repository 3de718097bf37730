package registry

import (
	"context"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/moby/moby/client"

	cerrdefs "github.com/containerd/errdefs"

	persysv1 "github.com/persys-dev/compute/api/persys/v1"
	"github.com/persys-dev/compute/internal/registryauth"
	"github.com/persys-dev/compute/internal/testutil/images"
)

func pull(t *testing.T, r *Registry, ref, auth string) error {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	body, err := r.Client().ImagePull(ctx, ref, client.ImagePullOptions{RegistryAuth: auth})
	if err != nil {
		return err
	}
	defer body.Close()
	return readStream(body)
}

func TestStartPushPull(t *testing.T) {
	_, hello := images.HelloImage(t)
	r := Start(t)
	if !strings.HasPrefix(r.Host(), "127.0.0.1:") || r.Username() == "" || r.Password() == "" {
		t.Fatalf("registry host %q user %q: want 127.0.0.1:PORT and credentials", r.Host(), r.Username())
	}
	ref := r.Push(t, hello, "persys/hello-push:v1")
	if want := r.Host() + "/persys/hello-push:v1"; ref != want {
		t.Fatalf("Push = %q, want %q", ref, want)
	}
	ctx := t.Context()
	if _, err := r.Client().ImageInspect(ctx, ref); !cerrdefs.IsNotFound(err) {
		t.Fatalf("after Push the local tag %s still exists (inspect error %v)", ref, err)
	}

	// The registry holds it, behind basic auth.
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+r.Host()+"/v2/persys/hello-push/tags/list", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("tags list without credentials: %s, want 401", resp.Status)
	}
	req.SetBasicAuth(r.Username(), r.Password())
	resp, err = http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("tags list with credentials: %s, want 200", resp.Status)
	}

	// The engine pulls it only with the credentials.
	if err := pull(t, r, ref, ""); err == nil {
		t.Fatalf("anonymous pull of %s succeeded", ref)
	} else {
		t.Logf("anonymous pull: %v", err)
	}
	bad, err := registryauth.Encode(registryauth.Credentials{Server: r.Host(), Username: r.Username(), Password: "wrong"})
	if err != nil {
		t.Fatal(err)
	}
	if err := pull(t, r, ref, bad); err == nil {
		t.Fatalf("pull of %s with a wrong password succeeded", ref)
	} else {
		t.Logf("wrong password pull: %v", err)
	}
	auth, ok, err := registryauth.For(ref, []*persysv1.SecretValue{r.Secret("reg")})
	if err != nil || !ok {
		t.Fatalf("registryauth.For: ok=%v err=%v", ok, err)
	}
	if err := pull(t, r, r.Host()+"/persys/absent:v1", auth); err == nil {
		t.Fatal("pull of an absent image succeeded")
	} else {
		t.Logf("absent image pull: %v", err)
	}
	if err := pull(t, r, r.Host()+"/persys/hello-push:absent", auth); err == nil {
		t.Fatal("pull of an absent tag succeeded")
	} else {
		t.Logf("absent tag pull: %v", err)
	}
	if err := pull(t, r, ref, auth); err != nil {
		t.Fatalf("pull %s with credentials: %v", ref, err)
	}
	t.Cleanup(func() {
		if _, err := r.Client().ImageRemove(context.Background(), ref, client.ImageRemoveOptions{}); err != nil && !cerrdefs.IsNotFound(err) {
			t.Errorf("remove %s: %v", ref, err)
		}
	})
	if _, err := r.Client().ImageInspect(ctx, ref); err != nil {
		t.Fatalf("inspect pulled %s: %v", ref, err)
	}
}
