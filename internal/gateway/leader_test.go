package gateway_test

import (
	"net/http"
	"strings"
	"testing"

	"google.golang.org/protobuf/encoding/protojson"

	"github.com/persys-dev/compute/api/persys/contract"
	persysv1 "github.com/persys-dev/compute/api/persys/v1"
	"github.com/persys-dev/compute/internal/testutil/realsched"
)

// The gateway reaches the leader through a follower of two real,
// elected schedulers (leaderconn's tests cover the pool's rules).
func TestGatewayFollowsLeader(t *testing.T) {
	c := realsched.Start(t, realsched.Options{Replicas: 2, NoSecrets: true})
	li := c.Leader(t)
	leader, follower := c.Addrs[li], c.Addrs[1-li]
	gw := c.StartGateway(t, nil, follower, leader)
	hc := httpClient(t, c.Bundle.Admin)

	code, body := call(t, hc, "POST", gw.Endpoint+"/v1/workloads", []byte(webManifest))
	if code != http.StatusCreated {
		t.Fatalf("apply through a follower: %d %s", code, body)
	}
	code, body = call(t, hc, "GET", gw.Endpoint+"/v1/leader", nil)
	if code != http.StatusOK {
		t.Fatalf("leader: %d %s", code, body)
	}
	info := &persysv1.LeaderInfo{}
	if err := contract.UnmarshalJSON(protojson.UnmarshalOptions{}, body, info); err != nil {
		t.Fatal(err)
	}
	if info.GetAddress() != leader || !info.GetIsLeader() {
		t.Fatalf("leader info %v, want the leader %s answering", info, leader)
	}
	if gw.Pool.Current() != leader {
		t.Fatalf("the gateway calls %s, want the leader %s", gw.Pool.Current(), leader)
	}
	if logs := c.Logs(); !strings.Contains(logs, `"msg":"following scheduler leader"`) {
		t.Errorf("logs lack the redirect:\n%s", logs)
	}
	// A gateway that knows only the follower hears from it who leads.
	only := c.StartGateway(t, nil, follower)
	code, body = call(t, hc, "GET", only.Endpoint+"/v1/leader", nil)
	if code != http.StatusOK || strings.Contains(string(body), `"isLeader"`) || !strings.Contains(string(body), leader) {
		t.Fatalf("leader from a follower: %d %s", code, body)
	}
	// The readiness the persys gateway command serves.
	if err := gw.Pool.Ready(); err != nil {
		t.Errorf("ready: %v", err)
	}
}
