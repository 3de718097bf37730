package gateway_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

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
