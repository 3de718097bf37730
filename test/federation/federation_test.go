package federation

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/persys-dev/compute/internal/client"
	"github.com/persys-dev/compute/internal/federation/fedapi"
	"github.com/persys-dev/compute/internal/testutil/freeport"
	"github.com/persys-dev/compute/internal/testutil/images"
)

// TestMembers joins two real dev clusters to a federation, refuses bad
// joins with the field at fault and nothing stored, shows both members
// reachable through persysctl, and marks a killed member unreachable and
// then lost after the grace while the other stays ready.
func TestMembers(t *testing.T) {
	_ = images.DockerOrSkip(t).Close()
	b := build(t)
	a, bm := startMember(t, b, "a"), startMember(t, b, "b")
	a.waitReady(t)
	bm.waitReady(t)

	fdir, metrics := t.TempDir(), freeport.Addr(t, "127.0.0.1")
	fed := start(t, "persys federation", b.persys, "federation", "--data-dir", fdir, "--listen", freeport.Addr(t, "127.0.0.1"),
		"--metrics-listen", metrics, "--probe-interval", "1s", "--grace", "6s", "--probe-timeout", "2s")
	fcfg := filepath.Join(fdir, "persysctl.yaml")
	ctl := func(args ...string) (string, error) {
		return run(b.persysctl, append([]string{"--config", fcfg}, args...)...)
	}
	waitFor(t, fed, "the federation API", 60*time.Second, func() (bool, string) {
		out, err := ctl("get", "clusters")
		return err == nil && strings.Contains(out, "No clusters."), out
	})

	// The identity each member issues to the federation, through the
	// member's own gateway (its CA signs a request made here).
	ids := map[*member]string{}
	for _, m := range []*member{a, bm} {
		ids[m] = filepath.Join(m.dir, "fedid")
		must(t, b.persysctl, "--config", m.config(), "user", "issue", "federation", "--role", "operator", "--out", ids[m])
	}
	join := func(name string, m *member, extra ...string) (string, error) {
		args := []string{"federation", "join", name, "--config", fcfg, "--gateway", "https://" + m.gateway,
			"--ca", filepath.Join(ids[m], "federation-ca.crt"),
			"--cert", filepath.Join(ids[m], "federation.crt"), "--key", filepath.Join(ids[m], "federation.key")}
		return run(b.persys, append(args, extra...)...)
	}

	// Bad joins: each refused, naming the field; nothing stored.
	expCert, expKey := a.expiredIdentity(t, t.TempDir())
	bad := []struct {
		name  string
		join  func() (string, error)
		wants []string
	}{
		{"wrong CA", func() (string, error) { return join("a", a, "--ca", filepath.Join(ids[bm], "federation-ca.crt")) }, []string{"ca:", "does not verify"}},
		{"expired identity", func() (string, error) { return join("a", a, "--cert", expCert, "--key", expKey) }, []string{"cert:", "expired"}},
		{"identity of another member", func() (string, error) {
			return join("a", a, "--cert", filepath.Join(ids[bm], "federation.crt"), "--key", filepath.Join(ids[bm], "federation.key"))
		}, []string{"cert:", "refused"}},
		{"plain http gateway", func() (string, error) { return join("a", a, "--gateway", "http://"+a.gateway) }, []string{"gateway:", "https://"}},
		{"gateway not listening", func() (string, error) { return join("a", a, "--gateway", "https://"+freeport.Addr(t, "127.0.0.1")) }, []string{"gateway:", "cannot reach"}},
		{"name not a DNS label", func() (string, error) { return join("A_1", a) }, []string{"name:", "DNS label"}},
	}
	for _, tc := range bad {
		out, err := tc.join()
		if err == nil {
			t.Fatalf("%s: join succeeded:\n%s", tc.name, out)
		}
		for _, w := range tc.wants {
			if !strings.Contains(out, w) {
				t.Fatalf("%s: join said %q, want it to contain %q", tc.name, out, w)
			}
		}
		if out, err := ctl("get", "clusters"); err != nil || !strings.Contains(out, "No clusters.") {
			t.Fatalf("%s: after the refused join get clusters says %q (%v), want no clusters", tc.name, out, err)
		}
	}

	for name, m := range map[string]*member{"a": a, "b": bm} {
		if out, err := join(name, m); err != nil || !strings.Contains(out, "cluster "+name+" joined: Ready") {
			t.Fatalf("join %s: %v\n%s", name, err, out)
		}
	}
	if out, err := join("a", a); err == nil || !strings.Contains(out, "name:") || !strings.Contains(out, "already a member") {
		t.Fatalf("second join of a: %v\n%s", err, out)
	}

	// Both reachable, with the member's leader, node and capacity.
	list := clusters(t, ctl)
	if len(list) != 2 {
		t.Fatalf("clusters %+v, want a and b", list)
	}
	for _, c := range list {
		h := c.Health
		if h.State != fedapi.StateReady || !h.Reachable || h.Leader == "" || h.NodesTotal != 1 || h.NodesReady != 1 || h.CPUCapacityMillis == 0 || h.MemoryCapacityBytes == 0 || h.LastContact.IsZero() {
			t.Fatalf("member %s health %+v, want ready with its leader, 1 node and capacity", c.Name, h)
		}
	}
	table, err := ctl("get", "clusters")
	if err != nil {
		t.Fatal(err)
	}
	for _, col := range []string{"NAME", "REACHABLE", "LEADER", "NODES", "CPU", "MEMORY", "LAST CONTACT"} {
		if !strings.Contains(table, col) {
			t.Fatalf("get clusters has no %s column:\n%s", col, table)
		}
	}
	if metricsBody(t, metrics, "/healthz") != "ok\n" {
		t.Fatal("federation /healthz is not ok")
	}
	waitFor(t, fed, "two ready members in /metrics", 30*time.Second, func() (bool, string) {
		body := metricsBody(t, metrics, "/metrics")
		return strings.Contains(body, `persys_federation_members{state="Ready"} 2`), ""
	})

	// Kill b: unreachable, then lost after the grace; a stays ready.
	bm.kill()
	seen := map[fedapi.State]bool{}
	waitFor(t, fed, "b lost", 60*time.Second, func() (bool, string) {
		for _, c := range clusters(t, ctl) {
			if c.Name == "a" && c.Health.State != fedapi.StateReady {
				t.Fatalf("a is %s while b is down: %+v", c.Health.State, c.Health)
			}
			if c.Name == "b" {
				seen[c.Health.State] = true
				return c.Health.State == fedapi.StateLost && !c.Health.Reachable && c.Health.LastError != "", string(c.Health.State)
			}
		}
		return false, "no member b"
	})
	evs := events(t, fcfg, "b")
	want := []string{fedapi.EventJoined, fedapi.EventUnreachable, fedapi.EventLost}
	if len(evs) != len(want) {
		t.Fatalf("events of b %+v, want %v", evs, want)
	}
	for i, e := range evs {
		if e.Type != want[i] {
			t.Fatalf("events of b %+v, want %v", evs, want)
		}
	}
	if out, err := run(b.persys, "federation", "leave", "b", "--config", fcfg); err != nil {
		t.Fatalf("leave b: %v\n%s", err, out)
	}
	if list := clusters(t, ctl); len(list) != 1 || list[0].Name != "a" {
		t.Fatalf("after leave: %+v", list)
	}
}

func clusters(t *testing.T, ctl func(...string) (string, error)) []fedapi.Cluster {
	t.Helper()
	out, err := ctl("get", "clusters", "-o", "json")
	if err != nil {
		t.Fatalf("get clusters: %v\n%s", err, out)
	}
	var l fedapi.ClusterList
	if err := json.Unmarshal([]byte(out), &l); err != nil {
		t.Fatalf("get clusters -o json: %v\n%s", err, out)
	}
	return l.Clusters
}

func events(t *testing.T, cfgPath, cluster string) []fedapi.Event {
	t.Helper()
	cfg, _, err := client.LoadConfig(cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	c, err := client.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	l, err := c.ClusterEvents(context.Background(), cluster, 0)
	if err != nil {
		t.Fatal(err)
	}
	return l.Events
}

func metricsBody(t *testing.T, addr, path string) string {
	t.Helper()
	resp, err := http.Get("http://" + addr + path)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return string(body)
}
