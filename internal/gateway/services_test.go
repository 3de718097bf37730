package gateway_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/persys-dev/compute/internal/agent"
	"github.com/persys-dev/compute/internal/gateway"
	"github.com/persys-dev/compute/internal/hostaccess"
	"github.com/persys-dev/compute/internal/pki"
	"github.com/persys-dev/compute/internal/runtime/sim"
	"github.com/persys-dev/compute/internal/testutil/eventually"
	"github.com/persys-dev/compute/internal/testutil/realsched"
)

const serviceManifest = `kind: Service
metadata: {name: web}
spec:
  replicas: 2
  update: {maxSurge: 1, maxUnavailable: 0}
  template:
    type: container
    container: {image: "good:1"}
    resources: {cpu: 100m, memory: 32Mi}
`

// The service routes against the real scheduler with a sim agent: apply,
// get (until the rollout completes), scale, pause, history, bad input,
// delete.
func TestServiceRoutes(t *testing.T) {
	rc := realsched.Start(t, realsched.Options{Nodes: []string{"n1"}})
	rc.StartAgent(t, "n1", sim.Options{})
	gw := rc.StartGateway(t, nil)
	c := httpClient(t, rc.Bundle.Admin)
	url := gw.Endpoint + "/v1/services"

	if code, body := call(t, c, "POST", url, []byte(serviceManifest)); code != http.StatusCreated {
		t.Fatalf("apply: %d %s", code, body)
	}
	if code, body := call(t, c, "POST", url, []byte(serviceManifest)); code != http.StatusOK || !bytes.Contains(body, []byte(`"result":"unchanged"`)) {
		t.Fatalf("apply again: %d %s", code, body)
	}
	type view struct {
		Progress struct {
			Phase     string `json:"phase"`
			Available int    `json:"available"`
		} `json:"progress"`
		Replicas []string `json:"replicas"`
	}
	waitFor := func(n int) {
		eventually.Eventually(t, fmt.Sprintf("web complete with %d available", n), time.Minute, func() (bool, string) {
			code, body := call(t, c, "GET", url+"/web", nil)
			var v view
			if code != http.StatusOK || json.Unmarshal(body, &v) != nil {
				return false, fmt.Sprintf("%d %s", code, body)
			}
			return v.Progress.Phase == "COMPLETE" && v.Progress.Available == n && len(v.Replicas) == n, string(body)
		})
	}
	waitFor(2)
	if code, body := call(t, c, "POST", url+"/web/scale", []byte(`{"replicas": 3}`)); code != http.StatusOK {
		t.Fatalf("scale: %d %s", code, body)
	}
	waitFor(3)
	if code, body := call(t, c, "POST", url+"/web/pause", nil); code != http.StatusOK || !bytes.Contains(body, []byte(`"paused":true`)) {
		t.Fatalf("pause: %d %s", code, body)
	}
	if code, body := call(t, c, "GET", url+"/web/history", nil); code != http.StatusOK || !bytes.Contains(body, []byte(`"good:1"`)) {
		t.Fatalf("history: %d %s", code, body)
	}
	if code, body := call(t, c, "GET", url, nil); code != http.StatusOK || !bytes.Contains(body, []byte(`"name":"web"`)) {
		t.Fatalf("list: %d %s", code, body)
	}

	for _, tc := range []struct {
		name, method, path, body, field string
		want                            int
	}{
		{"negative replicas", "POST", "", strings.Replace(serviceManifest, "replicas: 2", "replicas: -1", 1), "spec.replicas", 400},
		{"both budgets zero", "POST", "", strings.Replace(serviceManifest, "maxSurge: 1", "maxSurge: 0", 1), "spec.update.maxSurge", 400},
		{"unknown template type", "POST", "", strings.Replace(serviceManifest, "type: container", "type: lambda", 1), "spec.template.type", 400},
		{"scale without replicas", "POST", "/web/scale", `{}`, "replicas", 400},
		{"scale negative", "POST", "/web/scale", `{"replicas": -2}`, "replicas", 400},
		{"scale missing service", "POST", "/nosuch/scale", `{"replicas": 1}`, "", 404},
		{"undo to a revision not kept", "POST", "/web/undo", `{"toRevision": 9}`, "to_revision", 400},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, body := call(t, c, tc.method, url+tc.path, []byte(tc.body))
			if code != tc.want {
				t.Fatalf("code %d, want %d: %s", code, tc.want, body)
			}
			if tc.field == "" {
				return
			}
			for _, f := range decodeErr(t, body).Fields {
				if f.Field == tc.field {
					return
				}
			}
			t.Fatalf("no field %s in %s", tc.field, body)
		})
	}

	if code, body := call(t, c, "DELETE", url+"/web", nil); code != http.StatusAccepted {
		t.Fatalf("delete: %d %s", code, body)
	}
	eventually.Eventually(t, "web gone", time.Minute, func() (bool, string) {
		code, body := call(t, c, "GET", url+"/web", nil)
		return code == http.StatusNotFound, string(body)
	})
}

const endpointsManifest = `kind: Service
metadata: {name: api}
spec:
  replicas: 2
  update: {maxSurge: 1, maxUnavailable: 0, drainDelay: 300ms}
  template:
    type: container
    container:
      image: "good:1"
      ports: [{containerPort: 8080, dynamic: true}]
    resources: {cpu: 100m, memory: 32Mi}
`

// endpointsOf reads GET /v1/services/api/endpoints.
type endpointList struct {
	Revision  string `json:"revision"`
	Endpoints []struct {
		Replica     string `json:"replica"`
		NodeID      string `json:"nodeId"`
		NodeAddress string `json:"nodeAddress"`
		Ports       []struct {
			ContainerPort int `json:"containerPort"`
			HostPort      int `json:"hostPort"`
		} `json:"ports"`
	} `json:"endpoints"`
}

// The endpoints route and its watch against the real scheduler with a
// sim agent: the ready replicas with their dynamic host ports, a watch
// that follows a scale up and down, who may read them, bad input.
func TestServiceEndpointsRoute(t *testing.T) {
	rc := realsched.Start(t, realsched.Options{Nodes: []string{"n1"}})
	rc.StartAgentConfig(t, "n1", sim.Options{}, func(cfg *agent.Config) {
		cfg.DynamicPorts = hostaccess.PortRange{First: 20000, Last: 20009}
		cfg.SkipHostPortScan = true // the test host's own sockets are no concern of this node
	})
	gw := rc.StartGateway(t, nil)
	c := httpClient(t, rc.Bundle.Admin)
	url := gw.Endpoint + "/v1/services"
	if code, body := call(t, c, "POST", url, []byte(endpointsManifest)); code != http.StatusCreated {
		t.Fatalf("apply: %d %s", code, body)
	}
	waitEndpoints(t, c, gw, url)
	checkEndpointsWatch(t, c, url)
	checkEndpointsAccess(t, rc, c, url)
}

// waitEndpoints waits until the service has its 2 ready endpoints, each
// with a dynamic host port on n1.
func waitEndpoints(t *testing.T, c *http.Client, gw *realsched.Gateway, url string) {
	t.Helper()
	eventually.Eventually(t, "2 endpoints", time.Minute, func() (bool, string) {
		code, body := call(t, c, "GET", url+"/api/endpoints", nil)
		var l endpointList
		if code != http.StatusOK || json.Unmarshal(body, &l) != nil || len(l.Endpoints) != 2 {
			_, wl := call(t, c, "GET", gw.Endpoint+"/v1/workloads", nil)
			return false, fmt.Sprintf("%d %s; workloads %s", code, body, wl)
		}
		for _, ep := range l.Endpoints {
			if ep.NodeID != "n1" || ep.NodeAddress == "" || len(ep.Ports) != 1 || ep.Ports[0].ContainerPort != 8080 || ep.Ports[0].HostPort == 0 {
				return false, string(body)
			}
		}
		return true, ""
	})
}

// checkEndpointsWatch: a snapshot of 2, then updates as the service
// scales to 3 and back to 1 (each removed replica leaves the set before
// it goes).
func checkEndpointsWatch(t *testing.T, c *http.Client, url string) {
	t.Helper()
	req, err := http.NewRequest("GET", url+"/api/endpoints?watch=true", nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	resp, err := c.Do(req.WithContext(ctx))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != "application/x-ndjson" {
		b, _ := io.ReadAll(resp.Body)
		t.Fatalf("watch: %d %s %s", resp.StatusCode, resp.Header.Get("Content-Type"), b)
	}
	lines := make(chan gateway.EndpointsEvent, 64)
	go func() {
		defer close(lines)
		sc := bufio.NewScanner(resp.Body)
		for sc.Scan() {
			var ev gateway.EndpointsEvent
			if json.Unmarshal(sc.Bytes(), &ev) == nil {
				lines <- ev
			}
		}
	}()
	next := func(want string) gateway.EndpointsEvent {
		t.Helper()
		select {
		case ev, ok := <-lines:
			if !ok {
				t.Fatalf("watch ended waiting for %s", want)
			}
			return ev
		case <-time.After(time.Minute):
			t.Fatalf("no line within a minute waiting for %s", want)
		}
		return gateway.EndpointsEvent{}
	}
	first := next("the snapshot")
	if first.Type != "SNAPSHOT" || len(first.Endpoints) != 2 || first.Revision <= 0 {
		t.Fatalf("first line: %+v", first)
	}
	until := func(n int) {
		t.Helper()
		last := first.Revision
		for {
			ev := next(fmt.Sprintf("%d endpoints", n))
			if ev.Type != "UPDATE" || ev.Revision <= last {
				t.Fatalf("line after revision %d: type %s revision %d", last, ev.Type, ev.Revision)
			}
			last = ev.Revision
			if len(ev.Endpoints) == n {
				return
			}
		}
	}
	for _, n := range []int{3, 1} {
		if code, body := call(t, c, "POST", url+"/api/scale", []byte(fmt.Sprintf(`{"replicas": %d}`, n))); code != http.StatusOK {
			t.Fatalf("scale: %d %s", code, body)
		}
		until(n)
	}
}

// checkEndpointsAccess: who may read the endpoints, and bad input.
func checkEndpointsAccess(t *testing.T, rc *realsched.Cluster, c *http.Client, url string) {
	t.Helper()
	viewer := httpClient(t, rc.IssueUser(t, "vera", pki.RoleViewer))
	agent := httpClient(t, rc.IssueUser(t, "node-9", pki.RoleAgent))
	for _, tc := range []struct {
		name string
		c    *http.Client
		path string
		want int
	}{
		{"viewer reads", viewer, "/api/endpoints", http.StatusOK},
		{"agent refused", agent, "/api/endpoints", http.StatusForbidden},
		{"agent refused the watch", agent, "/api/endpoints?watch=true", http.StatusForbidden},
		{"missing service", c, "/nosuch/endpoints", http.StatusNotFound},
		{"missing service watched", c, "/nosuch/endpoints?watch=true", http.StatusNotFound},
		{"bad watch", c, "/api/endpoints?watch=often", http.StatusBadRequest},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if code, body := call(t, tc.c, "GET", url+tc.path, nil); code != tc.want {
				t.Fatalf("code %d, want %d: %s", code, tc.want, body)
			}
		})
	}
}
