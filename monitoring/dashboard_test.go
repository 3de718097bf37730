package monitoring

import (
	"encoding/json"
	"testing"
)

// TestDashboardShape checks the dashboard without a cluster: it parses,
// has the four sections operators look for, every panel queries something
// through the datasource variable. Which metrics the queries name is
// checked against live daemons in test/e2e (TestMonitoringOnLiveCluster).
func TestDashboardShape(t *testing.T) {
	data, err := Files.ReadFile("grafana/persys.json")
	if err != nil {
		t.Fatal(err)
	}
	var d struct {
		UID    string `json:"uid"`
		Panels []struct {
			Type       string `json:"type"`
			Title      string `json:"title"`
			Datasource struct {
				UID string `json:"uid"`
			} `json:"datasource"`
			Targets []struct {
				Expr string `json:"expr"`
			} `json:"targets"`
		} `json:"panels"`
	}
	if err := json.Unmarshal(data, &d); err != nil {
		t.Fatal(err)
	}
	rows := map[string]bool{}
	panels := 0
	for _, p := range d.Panels {
		if p.Type == "row" {
			rows[p.Title] = true
			continue
		}
		panels++
		if p.Datasource.UID != "${datasource}" || len(p.Targets) == 0 {
			t.Errorf("panel %q: datasource %q, %d queries", p.Title, p.Datasource.UID, len(p.Targets))
		}
		for _, tg := range p.Targets {
			if tg.Expr == "" {
				t.Errorf("panel %q has an empty query", p.Title)
			}
		}
	}
	for _, r := range []string{"Cluster", "Scheduler", "Agents", "etcd"} {
		if !rows[r] {
			t.Errorf("dashboard has no %q row", r)
		}
	}
	if d.UID == "" || panels < 10 {
		t.Errorf("dashboard uid %q with %d panels", d.UID, panels)
	}
}
