package realsched

import (
	"context"
	"log/slog"
	"testing"
	"time"

	"github.com/moby/moby/client"

	"github.com/persys-dev/compute/internal/agent"
	"github.com/persys-dev/compute/internal/hostaccess"
	persysruntime "github.com/persys-dev/compute/internal/runtime"
	"github.com/persys-dev/compute/internal/runtime/docker"
	"github.com/persys-dev/compute/internal/runtime/sim"
)

// StartDockerAgent is StartAgent on the Docker runtime of the engine cli
// talks to, with the default dynamic port range. The runtime sees only
// node id's containers, so the id should be unique to the test when the
// engine is shared; the containers still there when the test ends are
// removed.
func (c *Cluster) StartDockerAgent(t testing.TB, id string, cli *client.Client) *docker.Runtime {
	t.Helper()
	return c.StartDockerAgentConfig(t, id, cli, nil)
}

// StartDockerAgentConfig is StartDockerAgent with edit applied to the
// agent's configuration after the runtime and range are set (nil: none).
func (c *Cluster) StartDockerAgentConfig(t testing.TB, id string, cli *client.Client, edit func(*agent.Config)) *docker.Runtime {
	t.Helper()
	t.Cleanup(func() { removeNodeContainers(t, cli, id) })
	rt, err := docker.New(docker.Options{Client: cli, Logger: slog.New(slog.NewJSONHandler(c.logs, nil)).With("component", "docker", "node", id),
		StopTimeout: time.Second, NodeID: id, SecretsDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	c.StartAgentConfig(t, id, sim.Options{}, func(cfg *agent.Config) {
		cfg.Runtimes, cfg.DynamicPorts = []persysruntime.Runtime{rt}, hostaccess.DefaultDynamicPorts
		if edit != nil {
			edit(cfg)
		}
	})
	return rt
}

// NodeContainers lists the ids of the containers labelled with node id.
func NodeContainers(t testing.TB, cli *client.Client, id string) []string {
	t.Helper()
	res, err := cli.ContainerList(context.Background(), client.ContainerListOptions{All: true,
		Filters: make(client.Filters).Add("label", persysruntime.LabelNode+"="+id)})
	if err != nil {
		t.Errorf("realsched: list containers of node %s: %v", id, err)
		return nil
	}
	ids := make([]string, 0, len(res.Items))
	for _, c := range res.Items {
		ids = append(ids, c.ID)
	}
	return ids
}

func removeNodeContainers(t testing.TB, cli *client.Client, id string) {
	for _, cid := range NodeContainers(t, cli, id) {
		if _, err := cli.ContainerRemove(context.Background(), cid, client.ContainerRemoveOptions{Force: true}); err != nil {
			t.Errorf("realsched: remove container %s: %v", cid, err)
		}
	}
}
