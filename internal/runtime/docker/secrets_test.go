package docker

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/client"

	cerrdefs "github.com/containerd/errdefs"

	persysv1 "github.com/persys-dev/compute/api/persys/v1"
	"github.com/persys-dev/compute/internal/runtime"
	"github.com/persys-dev/compute/internal/testutil/images"
	"github.com/persys-dev/compute/internal/testutil/registry"
)

// syncBuffer collects log output from concurrent writers.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// newSecretEnv is newEnv with its own secrets folder and every log line
// kept, so tests can check that no secret value reaches the logs.
func newSecretEnv(t *testing.T) (*env, *syncBuffer, string) {
	t.Helper()
	cli, tag := images.HelloImage(t)
	logs := &syncBuffer{}
	dir := filepath.Join(t.TempDir(), "secrets")
	rt, err := New(Options{
		Client:      cli,
		Logger:      slog.New(slog.NewTextHandler(io.MultiWriter(t.Output(), logs), &slog.HandlerOptions{Level: slog.LevelDebug})),
		StopTimeout: 2 * time.Second,
		SecretsDir:  dir,
	})
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() { _ = rt.Close() })
	return &env{t: t, cli: cli, rt: rt, img: tag}, logs, dir
}

// readContainerFile reads one regular file from a container through the
// Engine API's archive endpoint (what docker cp uses).
func readContainerFile(t *testing.T, e *env, id, path string) ([]byte, error) {
	t.Helper()
	res, err := e.cli.CopyFromContainer(t.Context(), id, client.CopyFromContainerOptions{SourcePath: path})
	if err != nil {
		return nil, err
	}
	rc := res.Content
	defer rc.Close()
	tr := tar.NewReader(rc)
	for {
		hdr, err := tr.Next()
		if err != nil {
			return nil, err
		}
		if hdr.Typeflag == tar.TypeReg {
			return io.ReadAll(tr)
		}
	}
}

// noValue fails when any text holds the secret value.
func noValue(t *testing.T, value string, texts map[string]string) {
	t.Helper()
	for what, s := range texts {
		if strings.Contains(s, value) {
			t.Errorf("%s holds a secret value", what)
		}
	}
}

func TestSecretEnvAndFiles(t *testing.T) {
	t.Parallel()
	e, logs, dir := newSecretEnv(t)
	ctx := t.Context()
	name, uid := e.workload("secrets")
	const (
		tokenV1 = "tok-v1-6f1d2c"
		tokenV2 = "tok-v2-9a8b7c"
		keyPEM  = "-----BEGIN KEY-----\nk3y\n-----END KEY-----\n"
	)
	spec := e.spec(&persysv1.ContainerSpec{Env: map[string]string{"PLAIN": "visible"}})
	spec.SecretEnv = []*persysv1.SecretEnv{{Name: "API_TOKEN", Secret: "api", Key: "token"}}
	spec.SecretFiles = []*persysv1.SecretFile{
		{Secret: "api", Key: "token", Path: "/run/secrets/token"},
		{Secret: "tls", Path: "/etc/tls"},
	}
	secrets := func(token string) map[string]*persysv1.SecretValue {
		return map[string]*persysv1.SecretValue{
			"api": {Name: "api", Type: persysv1.SecretType_SECRET_TYPE_OPAQUE, Data: map[string][]byte{"token": []byte(token)}},
			"tls": {Name: "tls", Type: persysv1.SecretType_SECRET_TYPE_OPAQUE, Data: map[string][]byte{"tls.key": []byte(keyPEM), "tls.crt": []byte("CRT")}},
		}
	}

	st, _ := e.apply(runtime.Instance{Name: name, UID: uid, Revision: 1, Spec: spec, Secrets: secrets(tokenV1)})
	if st.GetState() != persysv1.ActualState_ACTUAL_STATE_RUNNING {
		t.Fatalf("status = %v, want RUNNING", st)
	}
	infoRes, err := e.cli.ContainerInspect(ctx, st.GetRuntimeId(), client.ContainerInspectOptions{})
	info := infoRes.Container
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Contains(info.Config.Env, "API_TOKEN="+tokenV1) || !slices.Contains(info.Config.Env, "PLAIN=visible") {
		t.Errorf("container env lacks API_TOKEN or PLAIN (%d entries)", len(info.Config.Env))
	}
	for path, want := range map[string]string{"/run/secrets/token": tokenV1, "/etc/tls/tls.key": keyPEM, "/etc/tls/tls.crt": "CRT"} {
		got, err := readContainerFile(t, e, st.GetRuntimeId(), path)
		if err != nil || string(got) != want {
			t.Errorf("%s in the container: %d bytes, err %v; want the secret's %d bytes", path, len(got), err, len(want))
		}
	}
	checkSecretMounts(t, info, dir, 2, 3)
	noValue(t, tokenV1, map[string]string{"labels": strings.Join(mapPairs(info.Config.Labels), ","), "status message": st.GetMessage()})

	// A new revision with a new value replaces the files; the old
	// revision's folder goes with its container.
	st2, _ := e.apply(runtime.Instance{Name: name, UID: uid, Revision: 2, Spec: spec, Secrets: secrets(tokenV2)})
	if st2.GetState() != persysv1.ActualState_ACTUAL_STATE_RUNNING || st2.GetRevision() != 2 {
		t.Fatalf("status r2 = %v", st2)
	}
	if got, err := readContainerFile(t, e, st2.GetRuntimeId(), "/run/secrets/token"); err != nil || string(got) != tokenV2 {
		t.Errorf("token after revision 2: err %v, changed %v", err, string(got) == tokenV2)
	}
	if _, err := os.Stat(filepath.Join(dir, name, uid, containerName(name, uid, 1))); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("secret folder of revision 1 after revision 2: %v, want gone", err)
	}
	// Applying the same revision again changes nothing.
	if _, skipped := e.apply(runtime.Instance{Name: name, UID: uid, Revision: 2, Spec: spec, Secrets: secrets(tokenV2)}); !skipped {
		t.Error("re-apply of revision 2 not skipped")
	}

	existed, err := e.rt.Delete(ctx, name, "")
	if err != nil || !existed {
		t.Fatalf("Delete = %v, %v", existed, err)
	}
	if entries, err := os.ReadDir(dir); err != nil || len(entries) != 0 {
		t.Errorf("secrets folder after Delete: %d entries, err %v; want empty", len(entries), err)
	}

	// A container removed behind the runtime's back leaves its folder;
	// Delete of the workload still removes it.
	st3, _ := e.apply(runtime.Instance{Name: name, UID: uid, Revision: 3, Spec: spec, Secrets: secrets(tokenV2)})
	if _, err := e.cli.ContainerRemove(ctx, st3.GetRuntimeId(), client.ContainerRemoveOptions{Force: true}); err != nil {
		t.Fatal(err)
	}
	if existed, err := e.rt.Delete(ctx, name, uid); err != nil || existed {
		t.Fatalf("Delete after the container went = %v, %v; want false, nil", existed, err)
	}
	if entries, err := os.ReadDir(dir); err != nil || len(entries) != 0 {
		t.Errorf("secrets folder after Delete of a removed container: %d entries, err %v; want empty", len(entries), err)
	}
	noValue(t, tokenV1, map[string]string{"runtime logs": logs.String()})
	noValue(t, tokenV2, map[string]string{"runtime logs": logs.String()})
	noValue(t, keyPEM, map[string]string{"runtime logs": logs.String()})
}

// checkSecretMounts: the container's secret mounts are read-only binds
// from the secrets folder dir (mounts of them), which holds files 0400.
func checkSecretMounts(t *testing.T, info container.InspectResponse, dir string, mounts, files int) {
	t.Helper()
	ro := 0
	for _, m := range info.Mounts {
		if strings.HasPrefix(m.Source, dir) {
			if m.RW {
				t.Errorf("secret mount %s -> %s is writable", m.Source, m.Destination)
			}
			ro++
		}
	}
	if ro != mounts {
		t.Errorf("%d secret mounts from %s, want %d: %+v", ro, dir, mounts, info.Mounts)
	}
	n := 0
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		if fi.Mode().Perm() != 0o400 {
			t.Errorf("%s has mode %v, want 0400", p, fi.Mode().Perm())
		}
		n++
		return nil
	})
	if err != nil || n != files {
		t.Errorf("secret files on the node: %d (err %v), want %d", n, err, files)
	}
}

func mapPairs(m map[string]string) []string {
	out := make([]string, 0, len(m))
	for k, v := range m {
		out = append(out, k+"="+v)
	}
	return out
}

func TestSecretNotFound(t *testing.T) {
	t.Parallel()
	e, _, dir := newSecretEnv(t)
	name, uid := e.workload("nosecret")
	tests := []struct {
		name string
		mut  func(*persysv1.WorkloadSpec)
		want string
	}{
		{"env", func(s *persysv1.WorkloadSpec) {
			s.SecretEnv = []*persysv1.SecretEnv{{Name: "X", Secret: "absent", Key: "k"}}
		}, `spec.secret_env[0]: secret "absent" was not delivered`},
		{"file key", func(s *persysv1.WorkloadSpec) {
			s.SecretFiles = []*persysv1.SecretFile{{Secret: "present", Key: "other", Path: "/run/x"}}
		}, `spec.secret_files[0]: secret "present" has no key "other"`},
		{"pull secret", func(s *persysv1.WorkloadSpec) { s.ImagePullSecrets = []string{"absent"} },
			`spec.image_pull_secrets[0]: secret "absent" was not delivered`},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			spec := e.spec(&persysv1.ContainerSpec{})
			tt.mut(spec)
			_, _, err := e.rt.Apply(t.Context(), runtime.Instance{Name: name, UID: uid, Revision: uint64(i + 1), Spec: spec,
				Secrets: map[string]*persysv1.SecretValue{"present": {Name: "present", Data: map[string][]byte{"k": []byte("v")}}}})
			if got := runtime.ReasonOf(err); got != persysv1.FailureReason_FAILURE_REASON_SECRET_NOT_FOUND {
				t.Fatalf("Apply err = %v (reason %s), want SECRET_NOT_FOUND", err, got)
			}
			if !strings.Contains(runtime.MessageOf(err), tt.want) {
				t.Errorf("message %q does not contain %q", runtime.MessageOf(err), tt.want)
			}
		})
	}
	if st, err := e.rt.Status(t.Context(), name); err != nil || st.GetState() != persysv1.ActualState_ACTUAL_STATE_MISSING {
		t.Errorf("Status = %v, %v; want MISSING (nothing created)", st, err)
	}
	if _, err := os.Stat(dir); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("secrets folder %s: %v, want never made", dir, err)
	}
}

// TestPrivateRegistryPull runs the hello image from a private registry
// with basic auth: without or with wrong credentials the pull is refused
// (IMAGE_PULL_FAILED), an image the registry lacks is IMAGE_NOT_FOUND, an
// unreachable registry is IMAGE_PULL_FAILED, and the right REGISTRY
// secret runs it.
func TestPrivateRegistryPull(t *testing.T) {
	t.Parallel()
	e, logs, _ := newSecretEnv(t)
	reg := registry.Start(t)
	repo := "persys/private-" + randHex(t, 4) + ":v1"
	ref := reg.Push(t, e.img, repo)
	// Runs last: after the containers that use the pulled image are gone.
	t.Cleanup(func() {
		if _, err := e.cli.ImageRemove(context.Background(), ref, client.ImageRemoveOptions{}); err != nil && !cerrdefs.IsNotFound(err) {
			t.Errorf("remove pulled %s: %v", ref, err)
		}
	})
	name, uid := e.workload("private")
	good := reg.Secret("reg")
	wrong := reg.SecretWith("reg", reg.Username(), "not-"+reg.Password())
	noUser := reg.Secret("reg")
	delete(noUser.Data, "username")

	tests := []struct {
		name    string
		image   string
		pull    []string
		secret  *persysv1.SecretValue
		reason  persysv1.FailureReason
		message string
	}{
		{"no credentials", ref, nil, nil, persysv1.FailureReason_FAILURE_REASON_IMAGE_PULL_FAILED, "no basic auth credentials"},
		{"wrong password", ref, []string{"reg"}, wrong, persysv1.FailureReason_FAILURE_REASON_IMAGE_PULL_FAILED, "unauthorized"},
		{"secret without username", ref, []string{"reg"}, noUser, persysv1.FailureReason_FAILURE_REASON_SECRET_NOT_FOUND, `key "username"`},
		{"image the registry lacks", reg.Host() + "/persys/absent-" + randHex(t, 4) + ":v1", []string{"reg"}, good,
			persysv1.FailureReason_FAILURE_REASON_IMAGE_NOT_FOUND, "manifest unknown"},
		{"tag the registry lacks", strings.TrimSuffix(ref, ":v1") + ":absent", []string{"reg"}, good,
			persysv1.FailureReason_FAILURE_REASON_IMAGE_NOT_FOUND, "not found"},
		{"registry unreachable", "127.0.0.1:1/persys/app:v1", nil, nil, persysv1.FailureReason_FAILURE_REASON_IMAGE_PULL_FAILED, "connection refused"},
	}
	rev := uint64(0)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rev++
			spec := e.spec(&persysv1.ContainerSpec{Image: tt.image})
			spec.ImagePullSecrets = tt.pull
			inst := runtime.Instance{Name: name, UID: uid, Revision: rev, Spec: spec}
			if tt.secret != nil {
				inst.Secrets = map[string]*persysv1.SecretValue{"reg": tt.secret}
			}
			_, _, err := e.rt.Apply(t.Context(), inst)
			if got := runtime.ReasonOf(err); got != tt.reason {
				t.Fatalf("Apply err = %v (reason %s), want %s", err, got, tt.reason)
			}
			msg := runtime.MessageOf(err)
			if !strings.Contains(msg, tt.message) {
				t.Errorf("message %q does not contain %q", msg, tt.message)
			}
			noValue(t, reg.Password(), map[string]string{"failure message": msg})
		})
	}
	if _, err := e.cli.ImageInspect(t.Context(), ref); !cerrdefs.IsNotFound(err) {
		t.Fatalf("%s is local before the authorized pull (inspect err %v)", ref, err)
	}

	rev++
	spec := e.spec(&persysv1.ContainerSpec{Image: ref})
	spec.ImagePullSecrets = []string{"other", "reg"}
	other := reg.Secret("other")
	other.Data["server"] = []byte("127.0.0.1:1") // another registry: not used
	st, skipped := e.apply(runtime.Instance{Name: name, UID: uid, Revision: rev, Spec: spec,
		Secrets: map[string]*persysv1.SecretValue{"reg": good, "other": other}})
	if skipped || st.GetState() != persysv1.ActualState_ACTUAL_STATE_RUNNING {
		t.Fatalf("apply with credentials: skipped %v, status %v; want RUNNING", skipped, st)
	}
	infoRes, err := e.cli.ContainerInspect(t.Context(), st.GetRuntimeId(), client.ContainerInspectOptions{})
	info := infoRes.Container
	if err != nil {
		t.Fatal(err)
	}
	if info.Config.Image != ref {
		t.Errorf("container image = %q, want %q", info.Config.Image, ref)
	}
	noValue(t, reg.Password(), map[string]string{
		"runtime logs": logs.String(), "labels": strings.Join(mapPairs(info.Config.Labels), ","),
		"env": strings.Join(info.Config.Env, ","), "status message": st.GetMessage(),
	})
}

// TestSecretFilesRewrittenOnStart: a container of the revision that was
// created but never started (the agent stopped between the two) and whose
// secret files are gone (a cleared folder) gets them back before Apply
// starts it.
func TestSecretFilesRewrittenOnStart(t *testing.T) {
	t.Parallel()
	e, _, dir := newSecretEnv(t)
	ctx := t.Context()
	name, uid := e.workload("restart")
	spec := e.spec(&persysv1.ContainerSpec{})
	spec.SecretFiles = []*persysv1.SecretFile{{Secret: "api", Key: "token", Path: "/run/secrets/token"}}
	inst := runtime.Instance{Name: name, UID: uid, Revision: 1, Spec: spec, Secrets: map[string]*persysv1.SecretValue{
		"api": {Name: "api", Data: map[string][]byte{"token": []byte("tok-start")}}}}

	// What Apply would create, without writing the files or starting.
	cs, err := buildCreateSpec(inst, e.rt.stopSeconds())
	if err != nil {
		t.Fatal(err)
	}
	cs.host.Mounts = append(cs.host.Mounts, e.rt.secretMounts(name, uid, cs.name, cs.secretFiles)...)
	// The engine checks bind sources at create.
	if err := e.rt.writeSecrets(name, uid, cs.name, cs.secretFiles); err != nil {
		t.Fatal(err)
	}
	created, err := e.cli.ContainerCreate(ctx, client.ContainerCreateOptions{Config: cs.config, HostConfig: cs.host, Name: cs.name})
	if err != nil {
		t.Fatalf("create: %v", err)
	}
	if err := os.RemoveAll(dir); err != nil {
		t.Fatal(err)
	}

	st, skipped := e.apply(inst)
	if skipped || st.GetRuntimeId() != created.ID || st.GetState() != persysv1.ActualState_ACTUAL_STATE_RUNNING {
		t.Fatalf("Apply: skipped %v, status %v; want the created container %s RUNNING", skipped, st, shortID(created.ID))
	}
	if got, err := readContainerFile(t, e, created.ID, "/run/secrets/token"); err != nil || string(got) != "tok-start" {
		t.Errorf("token in the started container: err %v, right value %v", err, string(got) == "tok-start")
	}
}
