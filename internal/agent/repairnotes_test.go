package agent_test

import (
	"context"
	"strings"
	"sync"
	"testing"

	persysv1 "github.com/persys-dev/compute/api/persys/v1"
	"github.com/persys-dev/compute/internal/agent"
	"github.com/persys-dev/compute/internal/runtime"
	"github.com/persys-dev/compute/internal/runtime/sim"
	"github.com/persys-dev/compute/internal/testutil/eventually"
)

// leftoverRuntime is the sim runtime with one crash leftover to repair,
// found by the first Repair (as a restarted agent finds a container
// created but never started).
type leftoverRuntime struct {
	*sim.Runtime
	once sync.Once
}

func (r *leftoverRuntime) Repair(context.Context) ([]runtime.Repair, error) {
	var out []runtime.Repair
	r.once.Do(func() {
		out = []runtime.Repair{{Workload: "leftover", Action: "started created container", Detail: "container 0123abcd"}}
	})
	return out, nil
}

// TestRepairsAreToldAsEvents: a repair the agent makes reaches the real
// scheduler in a heartbeat and is recorded as a Repaired event naming the
// workload, the node, the runtime and what was done, once.
func TestRepairsAreToldAsEvents(t *testing.T) {
	e, s := newRealEnv(t)
	simRT, err := sim.New(sim.Options{Seed: 1})
	if err != nil {
		t.Fatal(err)
	}
	rt := &leftoverRuntime{Runtime: simRT}
	e.startAgent(t, "", func(c *agent.Config) { c.Runtimes = []runtime.Runtime{rt} })
	admin := s.Admin(t)
	waitNodeReady(t, admin, waitFor)
	var got []*persysv1.Event
	eventually.Eventually(t, "a Repaired event", waitFor, func() (bool, string) {
		resp, err := admin.ListEvents(context.Background(), &persysv1.ListEventsRequest{Type: "Repaired"})
		if err != nil {
			return false, err.Error()
		}
		got = resp.GetEvents()
		return len(got) > 0, "none yet"
	})
	ev := got[0]
	if len(got) != 1 || ev.GetWorkload() != "leftover" || ev.GetNodeId() != nodeID ||
		!strings.Contains(ev.GetMessage(), "container: started created container") || !strings.Contains(ev.GetMessage(), "0123abcd") {
		t.Fatalf("Repaired events %v, want one for leftover on %s naming the runtime, the action and the detail", got, nodeID)
	}
}
