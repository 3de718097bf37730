package monitor_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/persys-dev/compute/internal/federation/fedapi"
	"github.com/persys-dev/compute/internal/federation/fedtest"
	"github.com/persys-dev/compute/internal/federation/monitor"
	"github.com/persys-dev/compute/internal/testutil/eventually"
)

// clock is a test clock moved by hand.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// TestRound probes a real member through Ready, Unreachable when its
// scheduler stops, Lost after the grace, and Ready again once it is back.
func TestRound(t *testing.T) {
	m := fedtest.StartMember(t)
	fed := fedtest.StartFederation(t, 15*time.Second)
	ctx := context.Background()
	if _, err := fed.Admin.JoinCluster(ctx, m.Join(t, "east")); err != nil {
		t.Fatal(err)
	}
	clk := &clock{t: time.Now()}
	reg := prometheus.NewRegistry()
	mon := monitor.New(monitor.Config{Store: fed.Store, Grace: 15 * time.Second, Timeout: 5 * time.Second, Now: clk.now, Registry: reg})
	step := func(want fedapi.State) fedapi.Health {
		t.Helper()
		if err := mon.Round(ctx); err != nil {
			t.Fatal(err)
		}
		c, err := fed.Admin.GetCluster(ctx, "east")
		if err != nil {
			t.Fatal(err)
		}
		if c.Health.State != want {
			t.Fatalf("state %s (%+v), want %s", c.Health.State, c.Health, want)
		}
		return c.Health
	}
	h := step(fedapi.StateReady)
	if h.NodesReady != 1 || h.CPUCapacityMillis == 0 { // one replica holds no election: no leader named
		t.Fatalf("ready member's figures: %+v", h)
	}
	if got := gauge(t, reg, "persys_federation_member_reachable", "east"); got != 1 {
		t.Fatalf("member_reachable = %v, want 1", got)
	}
	if got := gauge(t, reg, "persys_federation_member_identity_expiry_timestamp_seconds", "east"); got < float64(time.Now().Unix()) {
		t.Fatalf("identity expiry %v, want a time to come", got)
	}
	contact := h.LastContact

	m.Cluster.Stop(0)
	clk.add(5 * time.Second)
	h = step(fedapi.StateUnreachable)
	if h.Reachable || h.LastError == "" || !h.LastContact.Equal(contact) {
		t.Fatalf("unreachable member: %+v", h)
	}
	clk.add(11 * time.Second) // 16 s after the last contact
	step(fedapi.StateLost)

	if got := gauge(t, reg, "persys_federation_member_reachable", "east"); got != 0 {
		t.Fatalf("member_reachable = %v, want 0", got)
	}

	m.Cluster.Restart(t)
	// The member's gateway reconnects to its scheduler in its own time.
	eventually.Eventually(t, "east ready again", 60*time.Second, func() (bool, string) {
		clk.add(time.Second)
		if err := mon.Round(ctx); err != nil {
			return false, err.Error()
		}
		c, err := fed.Admin.GetCluster(ctx, "east")
		if err != nil {
			return false, err.Error()
		}
		return c.Health.State == fedapi.StateReady, string(c.Health.State) + ": " + c.Health.LastError
	})

	evs, err := fed.Admin.ClusterEvents(ctx, "east", 0)
	if err != nil {
		t.Fatal(err)
	}
	var types []string
	for _, e := range evs.Events {
		types = append(types, e.Type)
	}
	want := []string{fedapi.EventJoined, fedapi.EventUnreachable, fedapi.EventLost, fedapi.EventReachable}
	if len(types) != len(want) {
		t.Fatalf("events %v, want %v", types, want)
	}
	for i := range want {
		if types[i] != want[i] {
			t.Fatalf("events %v, want %v", types, want)
		}
	}
}

// gauge reads the gauge name{cluster}.
func gauge(t *testing.T, reg *prometheus.Registry, name, cluster string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			if hasLabel(m, "cluster", cluster) {
				return m.GetGauge().GetValue()
			}
		}
	}
	t.Fatalf("no %s{cluster=%q}", name, cluster)
	return 0
}

func hasLabel(m *dto.Metric, name, value string) bool {
	for _, l := range m.GetLabel() {
		if l.GetName() == name && l.GetValue() == value {
			return true
		}
	}
	return false
}
