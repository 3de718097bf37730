package compose

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/moby/moby/client"
	"google.golang.org/protobuf/encoding/protojson"

	persysv1 "github.com/persys-dev/compute/api/persys/v1"
	"github.com/persys-dev/compute/internal/runtime"
	"github.com/persys-dev/compute/internal/testutil/gitserver"
	"github.com/persys-dev/compute/internal/testutil/images"
)

type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

type harness struct {
	rt     *Runtime
	cli    *client.Client
	logs   *lockedBuffer
	hello  string
	poller string
	node   string
}

func randSuffix(t testing.TB) string {
	b := make([]byte, 4)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(b)
}

func newHarness(t *testing.T) *harness {
	t.Helper()
	cli, hello := images.HelloImage(t)
	_, poller := images.PollerImage(t)
	h := &harness{cli: cli, logs: &lockedBuffer{}, hello: hello, poller: poller, node: "t" + randSuffix(t)}
	rt, err := New(Config{
		NodeID:      h.node,
		StateDir:    t.TempDir(),
		Client:      cli,
		Logger:      slog.New(slog.NewTextHandler(h.logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
		StopTimeout: 2 * time.Second,
	})
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	h.rt = rt
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		// Whatever a failed test left behind.
		list, _ := rt.List(ctx)
		for _, ws := range list {
			_, _ = rt.Delete(ctx, ws.GetName(), "")
		}
		_ = rt.Close()
	})
	return h
}

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	t.Cleanup(cancel)
	return ctx
}

// eventually polls cond until it holds or the deadline passes.
func eventually(t *testing.T, timeout time.Duration, what string, cond func() (bool, string)) {
	t.Helper()
	deadline := time.After(timeout)
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	last := ""
	for {
		ok, detail := cond()
		if ok {
			return
		}
		last = detail
		select {
		case <-deadline:
			t.Fatalf("%s: not reached within %s (last: %s)", what, timeout, last)
		case <-tick.C:
		}
	}
}

func appFile(hello, poller, greeting string) string {
	return fmt.Sprintf(`
services:
  web:
    image: %s
    init: true
    stop_grace_period: 1s
    volumes:
      - data:/data
  poller:
    image: %s
    stop_grace_period: 1s
    environment:
      TARGET: http://web:8080/
      GREETING: %s
    depends_on: [web]
volumes:
  data: {}
`, hello, poller, greeting)
}

func service(ws *persysv1.WorkloadStatus, name string) *persysv1.ServiceStatus {
	for _, s := range ws.GetServices() {
		if s.GetName() == name {
			return s
		}
	}
	return nil
}

func inst(name, uid string, rev uint64, spec *persysv1.WorkloadSpec) runtime.Instance {
	spec.Type = persysv1.WorkloadType_WORKLOAD_TYPE_COMPOSE
	return runtime.Instance{Name: name, UID: uid, Revision: rev, Spec: spec}
}

const (
	secretToken = "tok-9f8e7d6c5b4a-never-log"
	secretFile  = "file-content-1a2b3c-never-log"
)

func TestComposeLifecycle(t *testing.T) {
	h := newHarness(t)
	ctx := ctxT(t)
	name := "app-" + randSuffix(t)
	secrets := map[string]*persysv1.SecretValue{
		"api": {Name: "api", Type: persysv1.SecretType_SECRET_TYPE_OPAQUE, Data: map[string][]byte{"token": []byte(secretToken), "cert": []byte(secretFile)}},
	}
	specFor := func(greeting string) *persysv1.WorkloadSpec {
		return &persysv1.WorkloadSpec{
			Compose: &persysv1.ComposeSpec{
				Inline: appFile(h.hello, h.poller, greeting),
				Env:    map[string]string{"SHOW_FILE": "/run/secrets/cert"},
			},
			SecretEnv:   []*persysv1.SecretEnv{{Name: "API_TOKEN", Secret: "api", Key: "token", Services: []string{"poller"}}},
			SecretFiles: []*persysv1.SecretFile{{Secret: "api", Key: "cert", Path: "/run/secrets/cert", Services: []string{"poller"}}},
		}
	}
	in := inst(name, "uid-1", 1, specFor("first"))
	in.Secrets = secrets

	ws, skipped, err := h.rt.Apply(ctx, in)
	if err != nil {
		t.Fatalf("Apply: %v", err)
	}
	if skipped {
		t.Fatal("first Apply reported skipped")
	}
	web, poll := checkFirstApply(t, h, ws)

	// The poller reaches web over the project network.
	eventually(t, 30*time.Second, "poller reaches web", func() (bool, string) {
		data, _, err := h.rt.Logs(ctx, name, 64<<10)
		if err != nil {
			return false, err.Error()
		}
		s := string(data)
		return strings.Contains(s, "poller | poll ok: hello from persys") && strings.Contains(s, "greeting: first"), s
	})

	// Secret env and file reached the poller (engine view), never web.
	checkSecretsOnlyInPoller(t, h, web, poll)

	// Same revision again: skipped, nothing recreated.
	ws2, skipped, err := h.rt.Apply(ctx, in)
	if err != nil || !skipped {
		t.Fatalf("re-Apply: skipped=%v err=%v", skipped, err)
	}
	if !slices.Equal(service(ws2, "web").GetContainerIds(), web.GetContainerIds()) {
		t.Fatal("re-Apply changed containers")
	}

	// Update only the poller: web keeps its container.
	in2 := inst(name, "uid-1", 2, specFor("second"))
	in2.Secrets = secrets
	ws3, skipped, err := h.rt.Apply(ctx, in2)
	if err != nil || skipped {
		t.Fatalf("update Apply: skipped=%v err=%v", skipped, err)
	}
	if ws3.GetState() != persysv1.ActualState_ACTUAL_STATE_RUNNING || ws3.GetRevision() != 2 {
		t.Fatalf("after update: %s rev %d", ws3.GetState(), ws3.GetRevision())
	}
	if !slices.Equal(service(ws3, "web").GetContainerIds(), web.GetContainerIds()) {
		t.Fatalf("web was recreated: %v → %v", web.GetContainerIds(), service(ws3, "web").GetContainerIds())
	}
	if slices.Equal(service(ws3, "poller").GetContainerIds(), poll.GetContainerIds()) {
		t.Fatal("poller was not recreated by its env change")
	}
	eventually(t, 30*time.Second, "new poller greets", func() (bool, string) {
		data, _, err := h.rt.Logs(ctx, name, 64<<10)
		if err != nil {
			return false, err.Error()
		}
		return strings.Contains(string(data), "greeting: second"), string(data)
	})

	// List and Status agree.
	list, err := h.rt.List(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(list) != 1 || list[0].GetName() != name || list[0].GetRevision() != 2 {
		t.Fatalf("List = %v", list)
	}

	// Secrets never in status or in the runtime's log.
	for what, s := range map[string]string{"status": protojson.Format(ws3), "list": protojson.Format(list[0]), "runtime log": h.logs.String()} {
		if strings.Contains(s, secretToken) || strings.Contains(s, secretFile) {
			t.Fatalf("a secret value appears in the %s", what)
		}
	}

	// Stop, then run again.
	stopped := specFor("second")
	stopped.DesiredState = persysv1.DesiredState_DESIRED_STATE_STOPPED
	in3 := inst(name, "uid-1", 3, stopped)
	in3.Secrets = secrets
	ws4, _, err := h.rt.Apply(ctx, in3)
	if err != nil || ws4.GetState() != persysv1.ActualState_ACTUAL_STATE_STOPPED {
		t.Fatalf("stop Apply: %v, %v", ws4.GetState(), err)
	}

	// Delete: containers, network and the named volume are gone.
	checkComposeDelete(t, h, name)
}

// checkFirstApply checks the status of TestComposeLifecycle's first
// apply and returns its two services.
func checkFirstApply(t *testing.T, h *harness, ws *persysv1.WorkloadStatus) (web, poll *persysv1.ServiceStatus) {
	t.Helper()
	web, poll = service(ws, "web"), service(ws, "poller")
	if ws.GetState() != persysv1.ActualState_ACTUAL_STATE_RUNNING {
		t.Fatalf("state = %s (%s), want RUNNING", ws.GetState(), ws.GetMessage())
	}
	if web == nil || poll == nil || web.GetRunning() != 1 || poll.GetRunning() != 1 || web.GetDesired() != 1 {
		t.Fatalf("services = %v", ws.GetServices())
	}
	if web.GetImage() != h.hello || len(web.GetContainerIds()) != 1 {
		t.Fatalf("web = %v", web)
	}
	if ws.GetRevision() != 1 || ws.GetUid() != "uid-1" || ws.GetNodeId() != h.node {
		t.Fatalf("status identity = %v", ws)
	}

	return web, poll
}

// checkSecretsOnlyInPoller: the secret env and file reached the poller
// and not web.
func checkSecretsOnlyInPoller(t *testing.T, h *harness, web, poll *persysv1.ServiceStatus) {
	t.Helper()
	ctx := ctxT(t)
	pollInfoRes, err := h.cli.ContainerInspect(ctx, poll.GetContainerIds()[0], client.ContainerInspectOptions{})
	pollInfo := pollInfoRes.Container
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Contains(pollInfo.Config.Env, "API_TOKEN="+secretToken) || !slices.Contains(pollInfo.Config.Env, "SHOW_FILE=/run/secrets/cert") {
		t.Fatalf("poller env lacks the secret or compose env: %d entries", len(pollInfo.Config.Env))
	}
	webInfoRes, err := h.cli.ContainerInspect(ctx, web.GetContainerIds()[0], client.ContainerInspectOptions{})
	webInfo := webInfoRes.Container
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(strings.Join(webInfo.Config.Env, "\n"), secretToken) {
		t.Fatal("web got the secret env that is limited to poller")
	}
	if got := readContainerFile(t, h.cli, poll.GetContainerIds()[0], "/run/secrets/cert"); got != secretFile {
		t.Fatalf("secret file content = %q", got)
	}

}

// checkComposeDelete deletes workload name and checks that its project is
// gone (named volume included), Status is MISSING and a second Delete
// finds nothing.
func checkComposeDelete(t *testing.T, h *harness, name string) {
	t.Helper()
	ctx := ctxT(t)
	project := ProjectName(h.node, "", name)
	existed, err := h.rt.Delete(ctx, name, "")
	if err != nil || !existed {
		t.Fatalf("Delete: existed=%v err=%v", existed, err)
	}
	assertGone(t, h.cli, project, true)
	st, err := h.rt.Status(ctx, name)
	if err != nil || st.GetState() != persysv1.ActualState_ACTUAL_STATE_MISSING {
		t.Fatalf("Status after delete: %v, %v", st.GetState(), err)
	}
	if existed, err := h.rt.Delete(ctx, name, ""); err != nil || existed {
		t.Fatalf("second Delete: existed=%v err=%v", existed, err)
	}
}

func TestComposeVolumeRetain(t *testing.T) {
	h := newHarness(t)
	ctx := ctxT(t)
	name := "keep-" + randSuffix(t)
	spec := &persysv1.WorkloadSpec{Compose: &persysv1.ComposeSpec{
		Inline:       fmt.Sprintf("services:\n  web:\n    image: %s\n    init: true\n    volumes: [data:/data]\nvolumes:\n  data: {}\n", h.hello),
		VolumeRetain: persysv1.RetainPolicy_RETAIN_POLICY_RETAIN,
	}}
	if _, _, err := h.rt.Apply(ctx, inst(name, "u", 1, spec)); err != nil {
		t.Fatalf("Apply: %v", err)
	}
	project := ProjectName(h.node, "", name)
	t.Cleanup(func() {
		_, _ = h.cli.VolumeRemove(context.Background(), project+"_data", client.VolumeRemoveOptions{Force: true})
	})
	if _, err := h.rt.Delete(ctx, name, ""); err != nil {
		t.Fatalf("Delete: %v", err)
	}
	assertGone(t, h.cli, project, false)
	if _, err := h.cli.VolumeInspect(ctx, project+"_data", client.VolumeInspectOptions{}); err != nil {
		t.Fatalf("retained volume is gone: %v", err)
	}
}

func TestComposeInvalid(t *testing.T) {
	h := newHarness(t)
	ctx := ctxT(t)
	tests := []struct {
		name   string
		spec   *persysv1.WorkloadSpec
		reason persysv1.FailureReason
		want   string
	}{
		{"bad port", &persysv1.WorkloadSpec{Compose: &persysv1.ComposeSpec{Inline: "services:\n  web:\n    image: x\n    ports: 12\n"}},
			persysv1.FailureReason_FAILURE_REASON_INVALID_SPEC, "services.web.ports"},
		{"build", &persysv1.WorkloadSpec{Compose: &persysv1.ComposeSpec{Inline: "services:\n  web:\n    build: .\n"}},
			persysv1.FailureReason_FAILURE_REASON_INVALID_SPEC, "services.web.build"},
		{"no source", &persysv1.WorkloadSpec{Compose: &persysv1.ComposeSpec{}}, persysv1.FailureReason_FAILURE_REASON_INVALID_SPEC, "spec.compose"},
		{"missing secret", &persysv1.WorkloadSpec{
			Compose:   &persysv1.ComposeSpec{Inline: "services:\n  web:\n    image: " + h.hello + "\n"},
			SecretEnv: []*persysv1.SecretEnv{{Name: "X", Secret: "nope", Key: "k"}},
		}, persysv1.FailureReason_FAILURE_REASON_SECRET_NOT_FOUND, "nope"},
		{"unknown secret service", &persysv1.WorkloadSpec{
			Compose:   &persysv1.ComposeSpec{Inline: "services:\n  web:\n    image: " + h.hello + "\n"},
			SecretEnv: []*persysv1.SecretEnv{{Name: "X", Secret: "s", Key: "k", Services: []string{"db"}}},
		}, persysv1.FailureReason_FAILURE_REASON_INVALID_SPEC, "db"},
		{"missing image", &persysv1.WorkloadSpec{Compose: &persysv1.ComposeSpec{Inline: "services:\n  web:\n    image: 127.0.0.1:1/persys/none:1\n"}},
			persysv1.FailureReason_FAILURE_REASON_IMAGE_PULL_FAILED, "127.0.0.1:1/persys/none:1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			in := inst("bad-"+randSuffix(t), "u", 1, tt.spec)
			in.Secrets = map[string]*persysv1.SecretValue{"s": {Data: map[string][]byte{"k": []byte("v")}}}
			_, _, err := h.rt.Apply(ctx, in)
			if err == nil {
				t.Fatal("Apply succeeded")
			}
			var f *runtime.Failure
			if !errors.As(err, &f) || f.Reason != tt.reason {
				t.Fatalf("error %v, want reason %s", err, tt.reason)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("error %q does not name %q", err, tt.want)
			}
		})
	}
}

func TestComposeFailedService(t *testing.T) {
	h := newHarness(t)
	ctx := ctxT(t)
	name := "crash-" + randSuffix(t)
	spec := &persysv1.WorkloadSpec{Compose: &persysv1.ComposeSpec{Inline: fmt.Sprintf(
		"services:\n  web:\n    image: %s\n    init: true\n  crash:\n    image: %s\n    command: [exit, \"3\"]\n", h.hello, h.hello)}}
	ws, _, err := h.rt.Apply(ctx, inst(name, "u", 1, spec))
	if err == nil {
		eventually(t, 30*time.Second, "crash reported", func() (bool, string) {
			ws, err = h.rt.Status(ctx, name)
			if err != nil {
				return false, err.Error()
			}
			return ws.GetState() == persysv1.ActualState_ACTUAL_STATE_FAILED, ws.GetState().String()
		})
	} else if runtime.ReasonOf(err) == persysv1.FailureReason_FAILURE_REASON_INVALID_SPEC {
		t.Fatalf("Apply: %v", err)
	} else {
		ws, err = h.rt.Status(ctx, name)
		if err != nil {
			t.Fatal(err)
		}
	}
	if ws.GetState() != persysv1.ActualState_ACTUAL_STATE_FAILED || ws.GetReason() != persysv1.FailureReason_FAILURE_REASON_CONTAINER_EXITED {
		t.Fatalf("status = %s %s (%s)", ws.GetState(), ws.GetReason(), ws.GetMessage())
	}
	c := service(ws, "crash")
	if c == nil || c.GetExitCode() != 3 || c.GetState() != persysv1.ActualState_ACTUAL_STATE_FAILED || !strings.Contains(ws.GetMessage(), "crash") {
		t.Fatalf("crash service = %v, message %q", c, ws.GetMessage())
	}
	if w := service(ws, "web"); w == nil || w.GetState() != persysv1.ActualState_ACTUAL_STATE_RUNNING {
		t.Fatalf("web = %v", w)
	}
}

func TestComposeGitSource(t *testing.T) {
	h := newHarness(t)
	ctx := ctxT(t)
	srv := gitserver.New(t)
	repo := srv.Repo(t, "stack", true)
	file := func(greeting string) string {
		return fmt.Sprintf("services:\n  web:\n    image: %s\n    init: true\n    environment:\n      GREETING: %s\n", h.hello, greeting)
	}
	c1 := repo.Commit(t, map[string]string{"deploy/compose.yaml": file("one")}, "one")
	repo.Tag(t, "v1", true)
	c2 := repo.Commit(t, map[string]string{"deploy/compose.yaml": file("two")}, "two")
	repo.Branch(t, "feature")
	c3 := repo.Commit(t, map[string]string{"deploy/compose.yaml": file("three")}, "three")

	creds := map[string]*persysv1.SecretValue{"gitcred": {Name: "gitcred", Type: persysv1.SecretType_SECRET_TYPE_GIT, Data: map[string][]byte{"token": []byte(gitserver.Token)}}}
	name := "git-" + randSuffix(t)
	steps := []struct {
		ref, resolved, want, greeting string
	}{
		{"feature", "", c3, "three"}, // a branch, resolved by the runtime
		{"v1", c1, c1, "one"},        // a tag, resolved by the scheduler
		{c2[:10], "", c2, "two"},     // a short commit
		{"main", c2, c2, "two"},      // same commit again through a branch
	}
	for i, s := range steps {
		in := inst(name, "u", uint64(i+1), &persysv1.WorkloadSpec{Compose: &persysv1.ComposeSpec{Git: &persysv1.GitSource{
			Url: repo.URL, Ref: s.ref, Path: "deploy/compose.yaml", CredentialsSecret: "gitcred", ResolvedCommit: s.resolved,
		}}})
		in.Secrets = creds
		ws, _, err := h.rt.Apply(ctx, in)
		if err != nil {
			t.Fatalf("Apply ref %s: %v", s.ref, err)
		}
		if ws.GetState() != persysv1.ActualState_ACTUAL_STATE_RUNNING || ws.GetDetails()["commit"] != s.want {
			t.Fatalf("ref %s: state %s commit %s, want RUNNING %s", s.ref, ws.GetState(), ws.GetDetails()["commit"], s.want)
		}
		infoRes, err := h.cli.ContainerInspect(ctx, service(ws, "web").GetContainerIds()[0], client.ContainerInspectOptions{})
		info := infoRes.Container
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Contains(info.Config.Env, "GREETING="+s.greeting) {
			t.Fatalf("ref %s: env %v lacks GREETING=%s", s.ref, info.Config.Env, s.greeting)
		}
	}

	// Without credentials the private repository refuses.
	in := inst("git-noauth-"+randSuffix(t), "u", 1, &persysv1.WorkloadSpec{Compose: &persysv1.ComposeSpec{Git: &persysv1.GitSource{Url: repo.URL, Ref: "main", Path: "deploy/compose.yaml"}}})
	if _, _, err := h.rt.Apply(ctx, in); runtime.ReasonOf(err) != persysv1.FailureReason_FAILURE_REASON_GIT_FETCH_FAILED {
		t.Fatalf("Apply without credentials: %v, want GIT_FETCH_FAILED", err)
	}
	if strings.Contains(h.logs.String(), gitserver.Token) {
		t.Fatal("the git token appears in the runtime log")
	}
}

// readContainerFile copies one file out of a container (works for FROM
// scratch images, which have no cat).
func readContainerFile(t *testing.T, cli *client.Client, id, path string) string {
	t.Helper()
	res, err := cli.CopyFromContainer(context.Background(), id, client.CopyFromContainerOptions{SourcePath: path})
	if err != nil {
		t.Fatalf("copy %s from container: %v", path, err)
	}
	rc := res.Content
	defer rc.Close()
	tr := tar.NewReader(rc)
	if _, err := tr.Next(); err != nil {
		t.Fatalf("read copied %s: %v", path, err)
	}
	data, err := io.ReadAll(tr)
	if err != nil {
		t.Fatal(err)
	}
	return string(data)
}

// assertGone checks that a project's containers and networks are gone, and
// its volumes when volumesToo.
func assertGone(t *testing.T, cli *client.Client, project string, volumesToo bool) {
	t.Helper()
	ctx := context.Background()
	f := make(client.Filters).Add("label", "com.docker.compose.project="+project)
	ctrsRes, err := cli.ContainerList(ctx, containerListAll(f))
	ctrs := ctrsRes.Items
	if err != nil {
		t.Fatal(err)
	}
	if len(ctrs) != 0 {
		t.Fatalf("%d containers of %s remain", len(ctrs), project)
	}
	netsRes, err := cli.NetworkList(ctx, client.NetworkListOptions{Filters: f})
	nets := netsRes.Items
	if err != nil {
		t.Fatal(err)
	}
	if len(nets) != 0 {
		t.Fatalf("%d networks of %s remain", len(nets), project)
	}
	if volumesToo {
		volsRes, err := cli.VolumeList(ctx, client.VolumeListOptions{Filters: f})
		vols := volsRes.Items
		if err != nil {
			t.Fatal(err)
		}
		if len(vols) != 0 {
			t.Fatalf("%d volumes of %s remain", len(vols), project)
		}
	}
}

func containerListAll(f client.Filters) client.ContainerListOptions {
	return client.ContainerListOptions{All: true, Filters: f}
}

func TestComposeWatch(t *testing.T) {
	h := newHarness(t)
	ctx := ctxT(t)
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	ch, err := h.rt.Watch(wctx)
	if err != nil {
		t.Fatal(err)
	}
	name := "watch-" + randSuffix(t)
	spec := &persysv1.WorkloadSpec{Compose: &persysv1.ComposeSpec{Inline: fmt.Sprintf("services:\n  web:\n    image: %s\n    init: true\n", h.hello)}}
	ws, _, err := h.rt.Apply(ctx, inst(name, "u", 1, spec))
	if err != nil {
		t.Fatal(err)
	}
	// A container killed behind the runtime's back is reported.
	if _, err := h.cli.ContainerKill(ctx, service(ws, "web").GetContainerIds()[0], client.ContainerKillOptions{Signal: "KILL"}); err != nil {
		t.Fatal(err)
	}
	timeout := time.After(30 * time.Second)
	for {
		select {
		case got := <-ch:
			if got != name {
				t.Fatalf("watch sent %q, want %q", got, name)
			}
			st, err := h.rt.Status(ctx, name)
			if err != nil {
				t.Fatal(err)
			}
			if st.GetState() == persysv1.ActualState_ACTUAL_STATE_FAILED {
				return
			}
		case <-timeout:
			t.Fatal("no watch event reported the killed container's failure")
		}
	}
}
