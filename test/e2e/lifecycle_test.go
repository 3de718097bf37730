package e2e

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/moby/moby/client"

	"github.com/moby/moby/api/types/container"
)

func (c *cluster) manifest(name string, hostPort int, greeting string) string {
	c.t.Helper()
	m := fmt.Sprintf(`kind: Workload
metadata:
  name: %s
  labels: {app: e2e}
spec:
  type: container
  container:
    image: %s
    env: {GREETING: %s}
    ports:
      - {containerPort: 8080, hostPort: %d, hostIP: 127.0.0.1}
    restartPolicy: on-failure
    labels: {e2e.cluster: %s}
  resources:
    cpu: 250m
    memory: 64Mi
`, name, c.image, greeting, hostPort, c.nodeID)
	path := filepath.Join(c.dir, name+"-"+greeting+".yaml")
	if err := os.WriteFile(path, []byte(m), 0o600); err != nil {
		c.t.Fatal(err)
	}
	return path
}

func (c *cluster) runningContainer(name string) container.Summary {
	c.t.Helper()
	var running []container.Summary
	for _, ct := range c.containers(name) {
		if ct.State == "running" {
			running = append(running, ct)
		}
	}
	if len(running) != 1 {
		c.t.Fatalf("workload %s: want exactly one running container, have %d (all: %d)", name, len(running), len(c.containers(name)))
	}
	return running[0]
}

// TestContainerLifecycle is the whole path a user takes: apply with limits
// and a port, see it running, lose the container behind the cluster's back
// and see it come back, change the spec and see the new revision replace the
// old container, delete it and see the container and its keys gone.
func TestContainerLifecycle(t *testing.T) {
	c := newCluster(t)
	ctx := context.Background()
	name := "web-" + c.nodeID
	port := freePort(t)

	out := c.mustCtl("apply", "-f", c.manifest(name, port, "one"), "--wait", "--timeout", "2m")
	if !strings.Contains(out, "created") {
		t.Fatalf("apply output does not say created:\n%s", out)
	}
	v, ok := c.getWorkload(name)
	if !ok || v.Status.State != "RUNNING" || v.Status.NodeID != c.nodeID {
		t.Fatalf("after apply --wait: state %q on node %q, want RUNNING on %s", v.Status.State, v.Status.NodeID, c.nodeID)
	}

	// What runs is what the spec says, read back from the engine.
	ct := c.runningContainer(name)
	infoRes, err := c.docker.ContainerInspect(ctx, ct.ID, client.ContainerInspectOptions{})
	info := infoRes.Container
	if err != nil {
		t.Fatal(err)
	}
	if got := info.HostConfig.NanoCPUs; got != 250_000_000 {
		t.Errorf("NanoCPUs = %d, want 250000000", got)
	}
	if got := info.HostConfig.Memory; got != 64<<20 {
		t.Errorf("Memory = %d, want %d", got, 64<<20)
	}
	if info.Config.Labels["persys.revision"] != "1" || info.Config.Labels["persys.uid"] != v.Workload.UID {
		t.Errorf("labels = %v, want revision 1 and uid %s", info.Config.Labels, v.Workload.UID)
	}
	// The process may still be binding its socket just after start.
	c.waitFor("the workload to answer on its port", 30*time.Second, func() bool {
		body, err := httpGet(fmt.Sprintf("http://127.0.0.1:%d/", port))
		return err == nil && strings.Contains(body, "hello from persys")
	})

	// The container's output through the gateway.
	if logs := c.mustCtl("logs", "workload", name); !strings.Contains(logs, "hello: listening on") {
		t.Errorf("logs lack the app's start line:\n%s", logs)
	}

	// A second identical apply changes nothing.
	if out := c.mustCtl("apply", "-f", c.manifest(name, port, "one")); !strings.Contains(out, "unchanged") {
		t.Fatalf("re-apply output does not say unchanged:\n%s", out)
	}

	// Remove the container behind the cluster's back: the reconciler
	// brings it back.
	if _, err := c.docker.ContainerRemove(ctx, ct.ID, client.ContainerRemoveOptions{Force: true}); err != nil {
		t.Fatal(err)
	}
	c.waitFor("a replacement container", 60*time.Second, func() bool {
		for _, x := range c.containers(name) {
			if x.ID != ct.ID && x.State == "running" {
				return true
			}
		}
		return false
	})
	c.waitFor("status RUNNING with the replacement", 30*time.Second, func() bool {
		v, ok := c.getWorkload(name)
		return ok && v.Status.State == "RUNNING" && v.Status.RuntimeID != ct.ID
	})

	// Change the spec: a new revision replaces the old container.
	out = c.mustCtl("apply", "-f", c.manifest(name, port, "two"), "--wait", "--timeout", "2m")
	if !strings.Contains(out, "updated") {
		t.Fatalf("apply of a changed spec does not say updated:\n%s", out)
	}
	c.waitFor("revision 2 running alone", 60*time.Second, func() bool {
		list := c.containers(name)
		return len(list) == 1 && list[0].State == "running" && list[0].Labels["persys.revision"] == "2"
	})
	infoRes, err = c.docker.ContainerInspect(ctx, c.runningContainer(name).ID, client.ContainerInspectOptions{})
	info = infoRes.Container
	if err != nil {
		t.Fatal(err)
	}
	if !contains(info.Config.Env, "GREETING=two") {
		t.Errorf("env = %v, want GREETING=two", info.Config.Env)
	}
	// The env change shows in the answer and in the start line.
	c.waitFor("the new greeting in the answer", 30*time.Second, func() bool {
		body, err := httpGet(fmt.Sprintf("http://127.0.0.1:%d/", port))
		return err == nil && strings.Contains(body, "greeting: two\n")
	})
	if logs := c.mustCtl("logs", "workload", name); !strings.Contains(logs, `hello: listening on :8080, greeting "two"`) {
		t.Errorf("logs of revision 2 lack its greeting:\n%s", logs)
	}

	// Describe shows the placement and the events.
	desc := c.mustCtl("describe", "workload", name)
	for _, want := range []string{name, c.nodeID, "RUNNING"} {
		if !strings.Contains(desc, want) {
			t.Errorf("describe lacks %q:\n%s", want, desc)
		}
	}

	// Delete: the container and every key go.
	c.mustCtl("delete", "workload", name, "--wait")
	c.waitFor("containers removed", 60*time.Second, func() bool { return len(c.containers(name)) == 0 })
	c.waitFor("etcd keys removed", 30*time.Second, func() bool { return len(c.etcdKeys(name)) == 0 })
	if _, ok := c.getWorkload(name); ok {
		t.Fatal("workload still readable after delete")
	}
}

// TestMissingImageFails: an image nobody has (its registry, Docker Hub, is
// unreachable offline) is a clear IMAGE_PULL_FAILED failure and apply
// --wait exits non-zero.
func TestMissingImageFails(t *testing.T) {
	c := newCluster(t)
	name := "noimage-" + c.nodeID
	path := filepath.Join(c.dir, "noimage.yaml")
	m := fmt.Sprintf("kind: Workload\nmetadata: {name: %s}\nspec:\n  type: container\n  container: {image: 'persys-does-not-exist:v0'}\n  resources: {cpu: 10m, memory: 8Mi}\n", name)
	if err := os.WriteFile(path, []byte(m), 0o600); err != nil {
		t.Fatal(err)
	}
	out, err := c.ctl("apply", "-f", path, "--wait", "--timeout", "2m")
	if err == nil {
		t.Fatalf("apply --wait of a missing image exited 0:\n%s", out)
	}
	if !strings.Contains(out, "IMAGE_PULL_FAILED") {
		t.Fatalf("output does not name IMAGE_PULL_FAILED:\n%s", out)
	}
	c.mustCtl("delete", "workload", name, "--wait")
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}
