package cli

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/moby/moby/client"

	persysruntime "github.com/persys-dev/compute/internal/runtime"
	"github.com/persys-dev/compute/internal/testutil/eventually"
	"github.com/persys-dev/compute/internal/testutil/images"
	"github.com/persys-dev/compute/internal/testutil/realsched"
)

// TestGetEndpointsContainerIP: on a real agent with the Docker runtime,
// get endpoints shows each replica's bridge address (-o wide and the
// table), and -o json carries it as the gateway sends it (containerIp).
func TestGetEndpointsContainerIP(t *testing.T) {
	cli, img := images.HelloImage(t)
	var rnd [4]byte
	_, _ = rand.Read(rnd[:])
	node := "cli-ep-" + hex.EncodeToString(rnd[:]) // the engine is shared
	rc := realsched.Start(t, realsched.Options{Nodes: []string{node}, NoSecrets: true})
	rc.StartDockerAgent(t, node, cli)
	c := configFor(t, rc.Config(rc.StartGateway(t, nil)))
	file := c.writeManifest(t, "ip.yaml", `kind: Service
metadata: {name: ip}
spec:
  replicas: 1
  template:
    type: container
    container: {image: "`+img+`", ports: [{containerPort: 8080, dynamic: true}]}
    readinessProbe: {httpGet: {path: /, port: 8080}, periodSeconds: 1}
`)
	expect(t, c.persysctl(t, "", "apply", "-f", file), 0, []string{"service/ip created\n"}, nil)
	var replica string
	eventually.Eventually(t, "one endpoint", 2*time.Minute, func() (bool, string) {
		r := c.persysctl(t, "", "get", "endpoints", "ip", "-o", "name")
		replica = strings.TrimPrefix(strings.TrimSpace(r.out), "endpoint/")
		return r.code == 0 && replica != "" && !strings.Contains(replica, "\n"), r.out + r.err
	})
	ip := bridgeAddress(t, cli, replica)
	expect(t, c.persysctl(t, "", "get", "endpoints", "ip", "-o", "wide"), 0, []string{"CONTAINER-IP", replica, " " + ip + " ", "->8080/tcp"}, nil)
	expect(t, c.persysctl(t, "", "get", "endpoints", "ip"), 0, []string{" " + ip + " "}, nil)
	expect(t, c.persysctl(t, "", "get", "endpoints", "ip", "-o", "json"), 0, []string{fmt.Sprintf(`"containerIp": %q`, ip)}, nil)
	expect(t, c.persysctl(t, "", "delete", "service", "ip"), 0, nil, nil)
}

// bridgeAddress is the engine's bridge address of workload name's
// running container.
func bridgeAddress(t *testing.T, cli *client.Client, name string) string {
	t.Helper()
	res, err := cli.ContainerList(t.Context(), client.ContainerListOptions{
		Filters: make(client.Filters).Add("label", persysruntime.LabelWorkload+"="+name)})
	if err != nil || len(res.Items) != 1 {
		t.Fatalf("containers of %s: %d, %v; want one running", name, len(res.Items), err)
	}
	info, err := cli.ContainerInspect(t.Context(), res.Items[0].ID, client.ContainerInspectOptions{})
	if err != nil {
		t.Fatal(err)
	}
	br := info.Container.NetworkSettings.Networks["bridge"]
	if br == nil || !br.IPAddress.IsValid() {
		t.Fatalf("container of %s has no bridge address: %+v", name, info.Container.NetworkSettings.Networks)
	}
	return br.IPAddress.String()
}
