package servicectl_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/moby/moby/client"

	persysv1 "github.com/persys-dev/compute/api/persys/v1"
	"github.com/persys-dev/compute/api/persys/v1/persysv1grpc"
	persysruntime "github.com/persys-dev/compute/internal/runtime"
	"github.com/persys-dev/compute/internal/servicectl"
	"github.com/persys-dev/compute/internal/testutil/eventually"
	"github.com/persys-dev/compute/internal/testutil/images"
	"github.com/persys-dev/compute/internal/testutil/realsched"
)

// TestEndpointsCarryContainerIP runs a service of the hello image on a
// real agent with the Docker runtime: each endpoint carries the address
// the engine gave the replica's container on the bridge, and keeps it
// once the replica's readiness check passes (the scheduler writes the
// status again then).
func TestEndpointsCarryContainerIP(t *testing.T) {
	cli, img := images.HelloImage(t)
	var rnd [4]byte
	_, _ = rand.Read(rnd[:])
	// A node id of its own: the engine is shared, and the runtime sees
	// only its node's containers.
	node := "ep-" + hex.EncodeToString(rnd[:])
	c := realsched.Start(t, realsched.Options{Nodes: []string{node}, NoSecrets: true})
	c.StartDockerAgent(t, node, cli)
	ctl := c.Admin(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()

	req := serviceRequest(2, img)
	req.Spec.Template.Container.Ports = []*persysv1.PortMapping{{ContainerPort: 8080, Dynamic: true, Protocol: "tcp"}}
	req.Spec.Template.ReadinessCheck = &persysv1.HealthCheck{Type: persysv1.HealthCheckType_HEALTH_CHECK_TYPE_HTTP,
		Port: 8080, Path: "/", IntervalSeconds: 1}
	if _, err := ctl.ApplyService(ctx, req); err != nil {
		t.Fatal(err)
	}
	var eps *persysv1.ServiceEndpointList
	var err error
	eventually.Eventually(t, "2 ready endpoints", 2*time.Minute, func() (bool, string) {
		eps, err = ctl.GetServiceEndpoints(ctx, &persysv1.ServiceEndpointsRequest{Name: "web"})
		if err != nil {
			return false, err.Error()
		}
		if len(eps.GetEndpoints()) == 2 {
			return true, ""
		}
		return false, fmt.Sprintf("endpoints %v; replicas: %s", eps.GetEndpoints(), replicaStates(t, ctl))
	})
	for _, ep := range eps.GetEndpoints() {
		want := bridgeAddress(t, cli, ep.GetReplica())
		if ep.GetContainerIp() != want {
			t.Errorf("endpoint %s: container IP %q, want %q (the engine's bridge address)", ep.GetReplica(), ep.GetContainerIp(), want)
		}
		if len(ep.GetPorts()) != 1 || ep.GetPorts()[0].GetContainerPort() != 8080 || ep.GetPorts()[0].GetHostPort() == 0 {
			t.Errorf("endpoint %s: ports %v, want 8080 published on a chosen host port", ep.GetReplica(), ep.GetPorts())
		}
		v, err := ctl.GetWorkload(ctx, &persysv1.GetWorkloadRequest{Name: ep.GetReplica()})
		if err != nil {
			t.Fatal(err)
		}
		if got := v.GetStatus().GetAddresses(); len(got) != 1 || got[0] != want || !v.GetStatus().GetReady() {
			t.Errorf("replica %s: status addresses %v ready %v, want [%s] and ready", ep.GetReplica(), got, v.GetStatus().GetReady(), want)
		}
	}

	if _, err := ctl.DeleteService(ctx, &persysv1.DeleteServiceRequest{Name: "web"}); err != nil {
		t.Fatal(err)
	}
	eventually.Eventually(t, "the replicas' containers gone", 2*time.Minute, func() (bool, string) {
		n := len(realsched.NodeContainers(t, cli, node))
		return n == 0, fmt.Sprintf("%d containers", n)
	})
}

// replicaStates says where web's replicas are, for failure messages.
func replicaStates(t *testing.T, ctl persysv1grpc.ControlServiceClient) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	resp, err := ctl.ListWorkloads(ctx, &persysv1.ListWorkloadsRequest{LabelSelector: map[string]string{servicectl.LabelService: "web"}})
	if err != nil {
		return err.Error()
	}
	var out []string
	for _, v := range resp.GetWorkloads() {
		st := v.GetStatus()
		out = append(out, fmt.Sprintf("%s %s ready=%v %q %v", v.GetWorkload().GetName(), st.GetState(), st.GetReady(), st.GetMessage(), st.GetAddresses()))
	}
	return strings.Join(out, "; ")
}

// bridgeAddress is the bridge address of the running container of
// workload name, as the engine reports it.
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
