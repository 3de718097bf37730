package release

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	osexec "os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/moby/moby/client"

	"github.com/persys-dev/compute/internal/testutil/freeport"
	"github.com/persys-dev/compute/internal/testutil/images"
	"github.com/persys-dev/compute/internal/testutil/need"
)

// TestComposeRunsWorkload brings deploy/compose/compose.yaml up from the
// persys image (scheduler, gateway, an agent that joins with a token, mTLS
// on every hop), applies a container workload through the gateway with
// persysctl and waits until it runs on the host's engine.
func TestComposeRunsWorkload(t *testing.T) {
	compose, err := osexec.LookPath("docker-compose")
	if err != nil {
		need.Missing(t, "docker-compose not installed (scripts/install-deps.sh installs it)")
	}
	docker, hello := images.HelloImage(t)
	tag := persysImage(t)
	ctl := filepath.Join(dist(t), "persysctl_"+testVersion+"_linux_amd64")

	project := fmt.Sprintf("persysrt%d", time.Now().UnixNano()%1_000_000)
	node := "compose-" + project
	gid := strings.TrimSpace(run(t, nil, "stat", "-c", "%g", "/var/run/docker.sock"))
	gwPort := freeport.Port(t, "127.0.0.1")
	env := []string{"PERSYS_IMAGE=" + tag, "DOCKER_GID=" + gid, "PERSYS_NODE_ID=" + node,
		fmt.Sprintf("PERSYS_GATEWAY_PORT=%d", gwPort),
		fmt.Sprintf("PERSYS_SCHEDULER_METRICS_PORT=%d", freeport.Port(t, "127.0.0.1")),
		fmt.Sprintf("PERSYS_GATEWAY_METRICS_PORT=%d", freeport.Port(t, "127.0.0.1")),
		fmt.Sprintf("PERSYS_AGENT_METRICS_PORT=%d", freeport.Port(t, "127.0.0.1"))}
	file := filepath.Join(root(t), "deploy", "compose", "compose.yaml")
	composeCmd := func(args ...string) (string, error) {
		cmd := osexec.Command(compose, append([]string{"-p", project, "-f", file}, args...)...)
		cmd.Env = append(os.Environ(), env...)
		out, err := cmd.CombinedOutput()
		return string(out), err
	}
	t.Cleanup(func() {
		if t.Failed() {
			logs, _ := composeCmd("logs", "--no-color", "--tail", "30")
			t.Logf("compose logs:\n%s", logs)
		}
		// The workloads are the host engine's containers, not the project's.
		ctx := context.Background()
		list, _ := docker.ContainerList(ctx, client.ContainerListOptions{All: true,
			Filters: make(client.Filters).Add("label", "persys.node="+node)})
		for _, c := range list.Items {
			_, _ = docker.ContainerRemove(ctx, c.ID, client.ContainerRemoveOptions{Force: true})
		}
		if out, err := composeCmd("down", "-v", "--timeout", "5"); err != nil {
			t.Logf("compose down: %v\n%s", err, out)
		}
	})
	if out, err := composeCmd("up", "-d"); err != nil {
		t.Fatalf("compose up: %v\n%s", err, out)
	}

	// persysctl with the admin identity the pki step made.
	pkiDir := filepath.Join(t.TempDir(), "pki")
	run(t, nil, "docker", "cp", project+"_pki_1:/var/lib/persys/pki", pkiDir)
	cfg := filepath.Join(t.TempDir(), "persysctl.yaml")
	if err := os.WriteFile(cfg, []byte(fmt.Sprintf("endpoint: https://127.0.0.1:%d\nca: %s\ncert: %s\nkey: %s\n", gwPort,
		filepath.Join(pkiDir, "ca.crt"), filepath.Join(pkiDir, "admin.crt"), filepath.Join(pkiDir, "admin.key"))), 0o600); err != nil {
		t.Fatal(err)
	}
	ctlOut := func(args ...string) (string, error) {
		out, err := osexec.Command(ctl, append([]string{"--config", cfg}, args...)...).CombinedOutput()
		return string(out), err
	}
	// The agent joins once the token step has run: bounded wait for it.
	deadline := time.Now().Add(2 * time.Minute)
	for {
		out, err := ctlOut("get", "nodes")
		if err == nil && strings.Contains(out, node) && strings.Contains(out, "READY") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("node %s not READY after 2 minutes: %v\n%s", node, err, out)
		}
		time.Sleep(500 * time.Millisecond)
	}

	name := "hello-" + project
	manifest := filepath.Join(t.TempDir(), "hello.yaml")
	if err := os.WriteFile(manifest, []byte(fmt.Sprintf(
		"kind: Workload\nmetadata: {name: %s}\nspec:\n  type: container\n  container: {image: %q}\n  resources: {cpu: 10m, memory: 16Mi}\n",
		name, hello)), 0o600); err != nil {
		t.Fatal(err)
	}
	if out, err := ctlOut("apply", "-f", manifest, "--wait", "--timeout", "2m"); err != nil {
		t.Fatalf("apply: %v\n%s", err, out)
	}
	out, err := ctlOut("get", "workload", name, "-o", "json")
	if err != nil {
		t.Fatalf("get workload: %v\n%s", err, out)
	}
	var v struct {
		Status struct{ State, NodeID string } `json:"status"`
	}
	if err := json.Unmarshal([]byte(out), &v); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	if v.Status.State != "RUNNING" {
		t.Fatalf("workload state %q, want RUNNING:\n%s", v.Status.State, out)
	}
	res, err := docker.ContainerList(context.Background(), client.ContainerListOptions{
		Filters: make(client.Filters).Add("label", "persys.node="+node).Add("label", "persys.workload="+name)})
	if err != nil || len(res.Items) != 1 || res.Items[0].State != "running" {
		t.Fatalf("host engine containers of %s: %v %+v", name, err, res.Items)
	}
	if out, err := ctlOut("delete", "workload", name, "--wait"); err != nil {
		t.Fatalf("delete: %v\n%s", err, out)
	}
}
