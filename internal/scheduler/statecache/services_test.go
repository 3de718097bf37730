package statecache

import (
	"slices"
	"testing"

	persysv1 "github.com/persys-dev/compute/api/persys/v1"
	"github.com/persys-dev/compute/internal/servicectl"
)

func replica(name, uid, service string, extra map[string]string) *persysv1.Workload {
	w := workloadNamed(name, uid, 10)
	w.Labels = map[string]string{ServiceLabel: service}
	for k, v := range extra {
		w.Labels[k] = v
	}
	return w
}

// WorkloadNames with the service label answers from the byService index
// exactly what a walk of every workload would, across writes, watch
// events, relabels, deletes and a reload.
func TestWorkloadNamesByService(t *testing.T) {
	if ServiceLabel != servicectl.LabelService {
		t.Fatalf("ServiceLabel %q is not servicectl.LabelService %q", ServiceLabel, servicectl.LabelService)
	}
	c := New(Config{})
	c.WorkloadWritten(replica("web-a-0", "u1", "web", map[string]string{"tier": "front"}), 2)
	c.WorkloadChanged("web-a-1", replica("web-a-1", "u2", "web", nil), 3, false)
	c.WorkloadWritten(replica("db-a-0", "u3", "db", nil), 4)
	c.WorkloadWritten(workloadNamed("plain", "u4", 10), 5)
	check := func(step string, selector map[string]string, want ...string) {
		t.Helper()
		got := c.WorkloadNames(selector)
		if !slices.Equal(got, want) && !(len(got) == 0 && len(want) == 0) {
			t.Fatalf("%s: WorkloadNames(%v) = %v, want %v", step, selector, got, want)
		}
	}
	web := map[string]string{ServiceLabel: "web"}
	check("written", web, "web-a-0", "web-a-1")
	check("with another label", map[string]string{ServiceLabel: "web", "tier": "front"}, "web-a-0")
	check("no service label (a walk)", map[string]string{"tier": "front"}, "web-a-0")
	check("unknown service", map[string]string{ServiceLabel: "nope"})

	// Relabelled by a newer write: it leaves web and joins db.
	c.WorkloadChanged("web-a-1", replica("web-a-1", "u2", "db", nil), 6, false)
	check("relabelled", web, "web-a-0")
	check("relabelled, new service", map[string]string{ServiceLabel: "db"}, "db-a-0", "web-a-1")
	c.WorkloadChanged("web-a-0", nil, 7, true)
	check("deleted", web)
	if _, ok := c.byService["web"]; ok {
		t.Error("the empty index entry of web was kept")
	}
	// A new workload under a deleted name, after a reload.
	c.Load(Snapshot{Workloads: map[string]*persysv1.Workload{"web-b-0": replica("web-b-0", "u5", "web", nil)},
		WorkloadRevs: map[string]int64{"web-b-0": 8}})
	check("reloaded", web, "web-b-0")
	check("reloaded, gone", map[string]string{ServiceLabel: "db"})
}
