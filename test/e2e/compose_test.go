package e2e

import (
	"archive/tar"
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/moby/moby/client"

	"github.com/persys-dev/compute/internal/runtime/compose"
	"github.com/persys-dev/compute/internal/testutil/gitserver"
	"github.com/persys-dev/compute/internal/testutil/registry"
)

// composeManifest is two services from the hello image: web serves, and
// probe fetches web by its service name over the project's network. web
// gets a secret as environment and as a file.
func (c *cluster) composeManifest(name, probeGreeting string) string {
	c.t.Helper()
	m := fmt.Sprintf(`kind: Workload
metadata: {name: %s}
spec:
  type: compose
  compose:
    inline: |
      services:
        web:
          image: %s
          stop_grace_period: 1s
        probe:
          image: %s
          command: ["probe", "http://web:8080/"]
          environment:
            GREETING: %s
          stop_grace_period: 1s
  secretEnv:
    - {name: DB_PASSWORD, secret: app-db, key: password, services: [web]}
  secretFiles:
    - {secret: app-db, key: password, path: /run/secrets/db-password, services: [web]}
`, name, c.image, c.image, probeGreeting)
	path := filepath.Join(c.dir, name+"-"+probeGreeting+".yaml")
	if err := os.WriteFile(path, []byte(m), 0o600); err != nil {
		c.t.Fatal(err)
	}
	return path
}

// serviceContainers maps each compose service of a workload to its
// running container id.
func (c *cluster) serviceContainers(name string) map[string]string {
	out := map[string]string{}
	for _, ct := range c.containers(name) {
		if ct.State == "running" {
			out[ct.Labels["com.docker.compose.service"]] = ct.ID
		}
	}
	return out
}

// readContainerFile reads one file out of a container through the
// archive API (what docker cp uses): FROM scratch images have no cat.
func (c *cluster) readContainerFile(id, path string) string {
	c.t.Helper()
	res, err := c.docker.CopyFromContainer(context.Background(), id, client.CopyFromContainerOptions{SourcePath: path})
	if err != nil {
		c.t.Fatalf("copy %s from %s: %v", path, id, err)
	}
	rc := res.Content
	defer rc.Close()
	tr := tar.NewReader(rc)
	if _, err := tr.Next(); err != nil {
		c.t.Fatal(err)
	}
	data, err := io.ReadAll(tr)
	if err != nil {
		c.t.Fatal(err)
	}
	return string(data)
}

// TestComposeWithSecrets runs a two-service compose application through
// persysctl: its services talk over the project's network, a secret
// reaches one of them as environment and file and nowhere else (not etcd
// in plaintext, not API reads, events or logs), an update recreates only
// the changed service, and delete removes everything.
func TestComposeWithSecrets(t *testing.T) {
	c := newCluster(t)
	ctx := context.Background()
	name := "shop-" + c.nodeID
	secretValue := "pw-" + strings.Repeat("x7", 8) + c.nodeID

	c.mustCtl("secret", "create", "app-db", "--from-literal", "password="+secretValue)
	out := c.mustCtl("apply", "-f", c.composeManifest(name, "one"), "--wait", "--timeout", "3m")
	if !strings.Contains(out, "created") {
		t.Fatalf("apply output does not say created:\n%s", out)
	}
	c.waitFor("both services running", time.Minute, func() bool { return len(c.serviceContainers(name)) == 2 })
	before := c.serviceContainers(name)

	desc := c.mustCtl("describe", "workload", name)
	for _, want := range []string{"Services:", "web", "probe", "1/1", "env DB_PASSWORD from app-db/password"} {
		if !strings.Contains(desc, want) {
			t.Errorf("describe lacks %q:\n%s", want, desc)
		}
	}
	// probe reaches web by name over the project's network.
	var lastLogs string
	deadline := time.Now().Add(time.Minute)
	for !strings.Contains(lastLogs, "probe: http://web:8080/: 200 hello from persys") {
		if time.Now().After(deadline) {
			t.Fatalf("probe did not reach web; the workload's logs:\n%s", tail(lastLogs, 30))
		}
		lastLogs, _ = c.ctl("logs", "workload", name)
	}

	// The secret reaches web, as environment and as a file.
	infoRes, err := c.docker.ContainerInspect(ctx, before["web"], client.ContainerInspectOptions{})
	info := infoRes.Container
	if err != nil {
		t.Fatal(err)
	}
	if !contains(info.Config.Env, "DB_PASSWORD="+secretValue) {
		t.Errorf("web's environment lacks DB_PASSWORD")
	}
	if got := c.readContainerFile(before["web"], "/run/secrets/db-password"); got != secretValue {
		t.Errorf("secret file holds %d bytes, not the value", len(got))
	}
	if pinfo, err := c.docker.ContainerInspect(ctx, before["probe"], client.ContainerInspectOptions{}); err != nil || contains(pinfo.Container.Config.Env, "DB_PASSWORD="+secretValue) {
		t.Errorf("probe received the secret meant for web only (err %v)", err)
	}

	// ... and nowhere else: etcd holds ciphertext, reads and events and
	// every component's log lack it.
	resp, err := c.etcd.Get(ctx, "/persys/secrets/app-db")
	if err != nil || len(resp.Kvs) != 1 {
		t.Fatalf("secret key in etcd: %v (%d keys)", err, len(resp.Kvs))
	}
	if strings.Contains(string(resp.Kvs[0].Value), secretValue) {
		t.Error("etcd holds the secret in plaintext")
	}
	for _, args := range [][]string{
		{"secret", "get", "app-db", "-o", "json"}, {"secret", "list"}, {"get", "workload", name, "-o", "yaml"},
		{"describe", "workload", name}, {"events"},
	} {
		if out := c.mustCtl(args...); strings.Contains(out, secretValue) {
			t.Errorf("persysctl %s shows the secret value", strings.Join(args, " "))
		}
	}

	// Update only probe: web keeps its container.
	c.mustCtl("apply", "-f", c.composeManifest(name, "two"), "--wait", "--timeout", "3m")
	c.waitFor("probe recreated", time.Minute, func() bool {
		now := c.serviceContainers(name)
		return len(now) == 2 && now["probe"] != before["probe"]
	})
	if after := c.serviceContainers(name); after["web"] != before["web"] {
		t.Errorf("web was recreated by a change to probe only: %s -> %s", before["web"], after["web"])
	}

	// Delete: every container and the project's network go.
	c.mustCtl("delete", "workload", name, "--wait")
	c.waitFor("containers removed", time.Minute, func() bool { return len(c.containers(name)) == 0 })
	c.waitFor("etcd keys removed", 30*time.Second, func() bool { return len(c.etcdKeys(name)) == 0 })
	netsRes, err := c.docker.NetworkList(ctx, client.NetworkListOptions{Filters: make(client.Filters).Add("label", "com.docker.compose.project="+compose.ProjectName(c.nodeID, c.clusterID(), name))})
	nets := netsRes.Items
	if err != nil {
		t.Fatal(err)
	}
	if len(nets) != 0 {
		t.Errorf("networks left after delete: %d", len(nets))
	}
	for proc, p := range c.procs {
		if strings.Contains(p.output(), secretValue) {
			t.Errorf("the %s log holds the secret value", proc)
		}
	}
}

// TestComposeFromGit places a compose application from a private Git
// repository served on loopback, at a branch, a tag and a commit, with
// the token from a secret; bad sources are refused with GIT_FETCH_FAILED.
func TestComposeFromGit(t *testing.T) {
	c := newCluster(t)
	srv := gitserver.New(t)
	repo := srv.Repo(t, "shop", true)
	compose := func(greeting string) string {
		return fmt.Sprintf("services:\n  web:\n    image: %s\n    environment: {GREETING: %s}\n    stop_grace_period: 1s\n", c.image, greeting)
	}
	first := repo.Commit(t, map[string]string{"deploy/compose.yaml": compose("v1")}, "v1")
	repo.Tag(t, "v1.0.0", true)
	second := repo.Commit(t, map[string]string{"deploy/compose.yaml": compose("v2")}, "v2")
	name := "git-" + c.nodeID
	manifest := func(ref, secret string) string {
		m := fmt.Sprintf("kind: Workload\nmetadata: {name: %s}\nspec:\n  type: compose\n  compose:\n    git: {url: %q, ref: %q, path: deploy/compose.yaml%s}\n",
			name, repo.URL, ref, secret)
		path := filepath.Join(c.dir, fmt.Sprintf("%s-%d.yaml", name, time.Now().UnixNano()))
		if err := os.WriteFile(path, []byte(m), 0o600); err != nil {
			t.Fatal(err)
		}
		return path
	}
	const creds = ", credentialsSecret: shop-git"

	// Without the token the private repository is refused, before
	// anything is stored.
	out, err := c.ctl("apply", "-f", manifest("main", ""))
	if err == nil || !strings.Contains(out, "GIT_FETCH_FAILED") {
		t.Fatalf("apply without credentials: err %v, output:\n%s", err, out)
	}
	if keys := c.etcdKeys(name); len(keys) != 0 {
		t.Fatalf("a refused apply stored %v", keys)
	}
	c.mustCtl("secret", "create", "shop-git", "--type", "git", "--from-literal", "token="+gitserver.Token)

	greeting := func() string {
		ids := c.serviceContainers(name)
		if ids["web"] == "" {
			return ""
		}
		infoRes, err := c.docker.ContainerInspect(context.Background(), ids["web"], client.ContainerInspectOptions{})
		info := infoRes.Container
		if err != nil {
			return ""
		}
		for _, e := range info.Config.Env {
			if v, ok := strings.CutPrefix(e, "GREETING="); ok {
				return v
			}
		}
		return ""
	}
	for _, step := range []struct{ ref, commit, greeting string }{
		{"main", second, "v2"},
		{"v1.0.0", first, "v1"},
		{second, second, "v2"},
	} {
		c.mustCtl("apply", "-f", manifest(step.ref, creds), "--wait", "--timeout", "3m")
		if desc := c.mustCtl("describe", "workload", name); !strings.Contains(desc, step.commit) {
			t.Errorf("ref %s: describe lacks commit %s:\n%s", step.ref, step.commit, desc)
		}
		c.waitFor("ref "+step.ref+" running", time.Minute, func() bool { return greeting() == step.greeting })
	}

	for _, bad := range []struct{ what, path string }{
		{"a ref that does not exist", manifest("no-such-branch", creds)},
		{"a URL that does not resolve", func() string {
			m := fmt.Sprintf("kind: Workload\nmetadata: {name: %s-x}\nspec:\n  type: compose\n  compose:\n    git: {url: \"http://no-such-host.invalid/x.git\"}\n", name)
			p := filepath.Join(c.dir, "unresolvable.yaml")
			if err := os.WriteFile(p, []byte(m), 0o600); err != nil {
				t.Fatal(err)
			}
			return p
		}()},
	} {
		out, err := c.ctl("apply", "-f", bad.path)
		if err == nil || !strings.Contains(out, "GIT_FETCH_FAILED") {
			t.Errorf("%s: err %v, output:\n%s", bad.what, err, out)
		}
	}
	// With a poll interval the scheduler follows the branch: a new commit
	// becomes a new revision by itself, and an event says which.
	c.mustCtl("apply", "-f", manifest("main", creds+", pollIntervalSeconds: 10"), "--wait", "--timeout", "3m")
	c.waitFor("v2 running from main", time.Minute, func() bool { return greeting() == "v2" })
	third := repo.Commit(t, map[string]string{"deploy/compose.yaml": compose("v3")}, "v3")
	c.waitFor("the poll to run v3", 2*time.Minute, func() bool { return greeting() == "v3" })
	if desc := c.mustCtl("describe", "workload", name); !strings.Contains(desc, third) || !strings.Contains(desc, "GitCommitChanged") {
		t.Errorf("describe lacks the polled commit %s or its event:\n%s", third, desc)
	}

	c.mustCtl("delete", "workload", name, "--wait")
	c.waitFor("containers removed", time.Minute, func() bool { return len(c.containers(name)) == 0 })
}

// TestComposeBadInput: what the compose-spec library refuses, and a file
// too large, are refused at apply with INVALID_SPEC and the path of the
// bad field; nothing is stored.
func TestComposeBadInput(t *testing.T) {
	c := newCluster(t)
	name := "bad-" + c.nodeID
	write := func(inline string) string {
		var b strings.Builder
		fmt.Fprintf(&b, "kind: Workload\nmetadata: {name: %s}\nspec:\n  type: compose\n  compose:\n    inline: |\n", name)
		for _, line := range strings.Split(inline, "\n") {
			b.WriteString("      " + line + "\n")
		}
		p := filepath.Join(c.dir, fmt.Sprintf("bad-%d.yaml", time.Now().UnixNano()))
		if err := os.WriteFile(p, []byte(b.String()), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	tests := []struct {
		name, file string
		want       []string
	}{
		{"invalid YAML", write("services:\n  web: [unclosed"), []string{"INVALID_SPEC", "spec.compose.inline"}},
		{"unknown top-level key", write("services:\n  web: {image: busybox}\nfrobnicate: true"), []string{"INVALID_SPEC", "frobnicate"}},
		{"wrong type", write("services:\n  web: {image: busybox, ports: 80}"), []string{"INVALID_SPEC", "services.web.ports"}},
		{"build section", write("services:\n  web: {build: .}"), []string{"INVALID_SPEC", "services.web.build"}},
		{"10 MB file", write("services:\n  web: {image: busybox}\nx-pad: " + strings.Repeat("a", 10<<20)), []string{"larger than"}},
	}
	for _, tt := range tests {
		out, err := c.ctl("apply", "-f", tt.file)
		if err == nil {
			t.Errorf("%s: accepted:\n%s", tt.name, out)
			continue
		}
		for _, w := range tt.want {
			if !strings.Contains(out, w) {
				t.Errorf("%s: output lacks %q:\n%s", tt.name, w, tail(out, 10))
			}
		}
	}
	if keys := c.etcdKeys(name); len(keys) != 0 {
		t.Errorf("refused applies stored %v", keys)
	}
}

// TestPrivateImage pulls an image that lives only in a registry with
// authentication (started on loopback), with the credentials from a
// registry secret; without them the workload fails with IMAGE_PULL_FAILED.
func TestPrivateImage(t *testing.T) {
	c := newCluster(t)
	reg := registry.Start(t)
	ref := reg.Push(t, c.image, "team/hello-"+c.nodeID)
	manifest := func(name, pull string) string {
		m := fmt.Sprintf("kind: Workload\nmetadata: {name: %s}\nspec:\n  type: container\n  container: {image: %q}\n%s", name, ref, pull)
		p := filepath.Join(c.dir, name+".yaml")
		if err := os.WriteFile(p, []byte(m), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	c.mustCtl("secret", "create", "regcred", "--type", "registry", "--from-literal", "server="+reg.Host(),
		"--from-literal", "username="+reg.Username(), "--from-literal", "password="+reg.Password())

	denied := "denied-" + c.nodeID
	out, err := c.ctl("apply", "-f", manifest(denied, ""), "--wait", "--timeout", "2m")
	if err == nil {
		t.Fatalf("a pull without credentials succeeded:\n%s", out)
	}
	c.waitFor("IMAGE_PULL_FAILED", time.Minute, func() bool {
		v, ok := c.getWorkload(denied)
		return ok && v.Status.Reason == "IMAGE_PULL_FAILED"
	})

	allowed := "allowed-" + c.nodeID
	c.mustCtl("apply", "-f", manifest(allowed, "  imagePullSecrets: [regcred]\n"), "--wait", "--timeout", "2m")
	if v, ok := c.getWorkload(allowed); !ok || v.Status.State != "RUNNING" {
		t.Fatalf("with credentials: %+v", v.Status)
	}
	for _, p := range c.procs {
		if strings.Contains(p.output(), reg.Password()) {
			t.Errorf("the %s log holds the registry password", p.name)
		}
	}
	for _, n := range []string{denied, allowed} {
		c.mustCtl("delete", "workload", n, "--wait")
	}
}
