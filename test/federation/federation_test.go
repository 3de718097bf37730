package federation

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	dockerclient "github.com/moby/moby/client"

	persysv1 "github.com/persys-dev/compute/api/persys/v1"
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
	docker, _ := images.HelloImage(t) // built before the clusters start
	b := build(t)
	a, bm := startMember(t, b, "a", docker), startMember(t, b, "b", docker)
	a.waitReady(t)
	bm.waitReady(t)

	fdir, metrics := t.TempDir(), freeport.Addr(t, "127.0.0.1")
	e := &env{t: t, b: b, a: a, bm: bm, fdir: fdir, fcfg: filepath.Join(fdir, "persysctl.yaml"), ids: map[*member]string{}}
	e.fedArgs = []string{"federation", "--data-dir", fdir, "--listen", freeport.Addr(t, "127.0.0.1"),
		"--metrics-listen", metrics, "--probe-interval", "1s", "--grace", "6s", "--probe-timeout", "2s"}
	e.fed = start(t, "persys federation", b.persys, e.fedArgs...)
	waitFor(t, e.fed, "the federation API", 60*time.Second, func() (bool, string) {
		out, err := e.ctl("get", "clusters")
		return err == nil && strings.Contains(out, "No clusters."), out
	})

	// The identity each member issues to the federation, through the
	// member's own gateway (its CA signs a request made here).
	for _, m := range []*member{a, bm} {
		e.ids[m] = filepath.Join(m.dir, "fedid")
		must(t, b.persysctl, "--config", m.config(), "user", "issue", "federation", "--role", "operator", "--out", e.ids[m])
	}
	e.badJoins()
	for name, m := range map[string]*member{"a": a, "b": bm} {
		if out, err := e.join(name, m); err != nil || !strings.Contains(out, "cluster "+name+" joined: Ready") {
			t.Fatalf("join %s: %v\n%s", name, err, out)
		}
	}
	if out, err := e.join("a", a); err == nil || !strings.Contains(out, "name:") || !strings.Contains(out, "already a member") {
		t.Fatalf("second join of a: %v\n%s", err, out)
	}
	list := e.checkReady(metrics)
	offload(t, b, fdir, e.ctl, list)
	w3 := e.applyOnB()
	e.crashFederation(w3)
	e.killB()
	e.failover(w3)
}

// env is one federation in front of members a and b.
type env struct {
	t       *testing.T
	b       bins
	a, bm   *member
	fed     *proc
	fdir    string
	fcfg    string
	ids     map[*member]string
	fedArgs []string
	// killedAt is when b was killed.
	killedAt time.Time
}

func (e *env) ctl(args ...string) (string, error) {
	return run(e.b.persysctl, append([]string{"--config", e.fcfg}, args...)...)
}

func (e *env) join(name string, m *member, extra ...string) (string, error) {
	args := []string{"federation", "join", name, "--config", e.fcfg, "--gateway", "https://" + m.gateway,
		"--ca", filepath.Join(e.ids[m], "federation-ca.crt"),
		"--cert", filepath.Join(e.ids[m], "federation.crt"), "--key", filepath.Join(e.ids[m], "federation.key")}
	return run(e.b.persys, append(args, extra...)...)
}

// badJoins: each refused, naming the field; nothing stored.
func (e *env) badJoins() {
	t, a, bm := e.t, e.a, e.bm
	expCert, expKey := a.expiredIdentity(t, t.TempDir())
	bad := []struct {
		name  string
		extra []string
		as    string
		wants []string
	}{
		{"wrong CA", []string{"--ca", filepath.Join(e.ids[bm], "federation-ca.crt")}, "a", []string{"ca:", "does not verify"}},
		{"expired identity", []string{"--cert", expCert, "--key", expKey}, "a", []string{"cert:", "expired"}},
		{"identity of another member", []string{"--cert", filepath.Join(e.ids[bm], "federation.crt"), "--key", filepath.Join(e.ids[bm], "federation.key")}, "a", []string{"cert:", "refused"}},
		{"plain http gateway", []string{"--gateway", "http://" + a.gateway}, "a", []string{"gateway:", "https://"}},
		{"gateway not listening", []string{"--gateway", "https://" + freeport.Addr(t, "127.0.0.1")}, "a", []string{"gateway:", "cannot reach"}},
		{"name not a DNS label", nil, "A_1", []string{"name:", "DNS label"}},
	}
	for _, tc := range bad {
		out, err := e.join(tc.as, a, tc.extra...)
		if err == nil {
			t.Fatalf("%s: join succeeded:\n%s", tc.name, out)
		}
		for _, w := range tc.wants {
			if !strings.Contains(out, w) {
				t.Fatalf("%s: join said %q, want it to contain %q", tc.name, out, w)
			}
		}
		if out, err := e.ctl("get", "clusters"); err != nil || !strings.Contains(out, "No clusters.") {
			t.Fatalf("%s: after the refused join get clusters says %q (%v), want no clusters", tc.name, out, err)
		}
	}
}

// checkReady: both reachable, with the member's leader, node and
// capacity, in get clusters and in the federation's metrics.
func (e *env) checkReady(metrics string) []fedapi.Cluster {
	t := e.t
	list := clusters(t, e.ctl)
	if len(list) != 2 {
		t.Fatalf("clusters %+v, want a and b", list)
	}
	for _, c := range list {
		h := c.Health
		if h.State != fedapi.StateReady || !h.Reachable || h.Leader == "" || h.NodesTotal != 1 || h.NodesReady != 1 || h.CPUCapacityMillis == 0 || h.MemoryCapacityBytes == 0 || h.LastContact.IsZero() {
			t.Fatalf("member %s health %+v, want ready with its leader, 1 node and capacity", c.Name, h)
		}
	}
	table, err := e.ctl("get", "clusters")
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
	waitFor(t, e.fed, "two ready members in /metrics", 30*time.Second, func() (bool, string) {
		body := metricsBody(t, metrics, "/metrics")
		return strings.Contains(body, `persys_federation_members{state="Ready"} 2`), ""
	})
	return list
}

// killB: b unreachable, then lost after the grace, with an event each;
// a stays ready.
func (e *env) killB() {
	t := e.t
	e.bm.kill()
	e.killedAt = time.Now()
	waitFor(t, e.fed, "b lost", 60*time.Second, func() (bool, string) {
		for _, c := range clusters(t, e.ctl) {
			if c.Name == "a" && c.Health.State != fedapi.StateReady {
				t.Fatalf("a is %s while b is down: %+v", c.Health.State, c.Health)
			}
			if c.Name == "b" {
				return c.Health.State == fedapi.StateLost && !c.Health.Reachable && c.Health.LastError != "", string(c.Health.State)
			}
		}
		return false, "no member b"
	})
	var types []string
	for _, ev := range events(t, e.fcfg, "b") {
		if ev.Workload == "" { // the member's own events, not its workloads'
			types = append(types, ev.Type)
		}
	}
	if want := []string{fedapi.EventJoined, fedapi.EventUnreachable, fedapi.EventLost}; !slices.Equal(types, want) {
		t.Fatalf("events of b %v, want %v", types, want)
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
	c := fedClient(t, cfgPath)
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

// offload applies, through the federation, two workloads that each take
// 60% of a member's CPU: the first runs on a, the second does not fit
// there and runs on b, each with exactly one container on the engine;
// then both are deleted through the federation.
func offload(t *testing.T, b bins, fdir string, ctl func(...string) (string, error), members []fedapi.Cluster) {
	t.Helper()
	_, image := images.HelloImage(t)
	cpu := members[0].Health.CPUCapacityMillis * 6 / 10
	dir := t.TempDir()
	// Names of this process only: other tests may share the engine.
	w1, w2 := fmt.Sprintf("fed1-%d", os.Getpid()), fmt.Sprintf("fed2-%d", os.Getpid())
	for _, name := range []string{w1, w2} {
		file := filepath.Join(dir, name+".yaml")
		body := fmt.Sprintf("apiVersion: persys/v1\nkind: Workload\nmetadata:\n  name: %s\nspec:\n  type: container\n  desiredState: running\n"+
			"  container:\n    image: %s\n  resources:\n    cpu: %dm\n    memory: 16Mi\nplacement:\n  clusters: [a, b]\n  offload: true\n", name, image, cpu)
		if err := os.WriteFile(file, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
		if out, err := ctl("apply", "-f", file); err != nil || !strings.Contains(out, "workload/"+name+" created") {
			t.Fatalf("apply %s through the federation: %v\n%s", name, err, out)
		}
		if name == w1 {
			waitWorkload(t, fdir, w1, "a")
		}
	}
	waitWorkload(t, fdir, w2, "b")
	table, err := ctl("get", "workloads")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(table, "CLUSTER") || !rowHas(table, w1, " a ") || !rowHas(table, w2, " b ") {
		t.Fatalf("get workloads through the federation:\n%s", table)
	}
	out, err := ctl("describe", "workload", w2)
	if err != nil || !strings.Contains(out, "offloaded from a") {
		t.Fatalf("describe w2 does not say why it runs on b: %v\n%s", err, out)
	}
	for _, name := range []string{w1, w2} {
		if n := containers(t, name); n != 1 {
			t.Fatalf("%d containers of %s on the engine, want 1", n, name)
		}
		if out, err := ctl("delete", "workload", name); err != nil {
			t.Fatalf("delete %s: %v\n%s", name, err, out)
		}
	}
	waitFor(t, nil, "no containers of the two workloads", 60*time.Second, func() (bool, string) {
		n1, n2 := containers(t, w1), containers(t, w2)
		return n1+n2 == 0, fmt.Sprintf("%d and %d", n1, n2)
	})
}

// waitWorkload waits until the federation shows name running on cluster.
func waitWorkload(t *testing.T, fcfg, name, cluster string) {
	t.Helper()
	c := fedClient(t, filepath.Join(fcfg, "persysctl.yaml"))
	waitFor(t, nil, name+" running on "+cluster, 90*time.Second, func() (bool, string) {
		v, err := c.GetWorkload(context.Background(), name, false)
		if err != nil {
			return false, err.Error()
		}
		got := v.GetWorkload().GetLabels()[fedapi.LabelCluster]
		st := v.GetStatus().GetState()
		return got == cluster && st == persysv1.ActualState_ACTUAL_STATE_RUNNING, got + " " + st.String() + " " + v.GetStatus().GetMessage()
	})
}

func rowHas(table, name, cell string) bool {
	for _, l := range strings.Split(table, "\n") {
		if strings.HasPrefix(l, name+" ") && strings.Contains(l, cell) {
			return true
		}
	}
	return false
}

// containers counts the engine's containers of a workload, of any cluster.
func containers(t *testing.T, name string) int {
	t.Helper()
	cli := images.DockerOrSkip(t)
	defer cli.Close()
	res, err := cli.ContainerList(context.Background(), dockerclient.ContainerListOptions{All: true,
		Filters: make(dockerclient.Filters).Add("label", "persys.workload="+name)})
	if err != nil {
		t.Fatal(err)
	}
	return len(res.Items)
}

func fedClient(t *testing.T, cfgPath string) *client.Client {
	t.Helper()
	cfg, _, err := client.LoadConfig(cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	c, err := client.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return c
}

// applyOnB applies, through the federation, a workload that prefers b
// with a failover grace, and waits until it runs there.
func (e *env) applyOnB() string {
	t := e.t
	_, image := images.HelloImage(t)
	name := fmt.Sprintf("fed3-%d", os.Getpid())
	file := filepath.Join(t.TempDir(), "w3.yaml")
	body := fmt.Sprintf("apiVersion: persys/v1\nkind: Workload\nmetadata:\n  name: %s\nspec:\n  type: container\n  desiredState: running\n"+
		"  container:\n    image: %s\n  resources:\n    cpu: 100m\n    memory: 16Mi\nplacement:\n  clusters: [b, a]\n  failover:\n    grace: 4s\n", name, image)
	if err := os.WriteFile(file, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	if out, err := e.ctl("apply", "-f", file); err != nil {
		t.Fatalf("apply %s: %v\n%s", name, err, out)
	}
	waitWorkload(t, e.fdir, name, "b")
	return name
}

// failover: with b lost, the workload runs on a; once b is back, the
// copy b's agent kept running is deleted: one container on the engine.
// b then leaves.
func (e *env) failover(name string) {
	t := e.t
	waitWorkload(t, e.fdir, name, "a")
	t.Logf("%s running on a %s after b was killed (failover grace 4s, probes every 1s)", name, time.Since(e.killedAt).Round(100*time.Millisecond))
	// b's agent died with its process; its container still runs.
	if n := containers(t, name); n != 2 {
		t.Fatalf("%d containers of %s while b is down, want 2 (a's and the one b left)", n, name)
	}
	out, err := e.ctl("describe", "workload", name)
	if err != nil || !strings.Contains(out, "failover from b") {
		t.Fatalf("describe %s does not say it failed over: %v\n%s", name, err, out)
	}
	e.bm.restart(t)
	e.bm.waitReady(t)
	waitFor(t, e.fed, "one container of "+name+" once b is back", 90*time.Second, func() (bool, string) {
		n := containers(t, name)
		return n == 1, fmt.Sprintf("%d containers", n)
	})
	waitWorkload(t, e.fdir, name, "a")
	if out, err := e.ctl("delete", "workload", name); err != nil {
		t.Fatalf("delete %s: %v\n%s", name, err, out)
	}
	waitFor(t, nil, "no container of "+name, 60*time.Second, func() (bool, string) {
		n := containers(t, name)
		return n == 0, fmt.Sprintf("%d containers", n)
	})
	if out, err := run(e.b.persys, "federation", "leave", "b", "--config", e.fcfg); err != nil {
		t.Fatalf("leave b: %v\n%s", err, out)
	}
	if list := clusters(t, e.ctl); len(list) != 1 || list[0].Name != "a" {
		t.Fatalf("after leave: %+v", list)
	}
}

// crashFederation kills the federation and starts it again on its data
// dir: members and the workload's decision are read back from its etcd,
// and the workload is not placed again.
func (e *env) crashFederation(name string) {
	t := e.t
	e.fed.kill()
	e.fed = start(t, "persys federation (restarted)", e.b.persys, e.fedArgs...)
	waitFor(t, e.fed, "both members ready after the restart", 60*time.Second, func() (bool, string) {
		out, err := e.ctl("get", "clusters")
		return err == nil && strings.Count(out, " Ready ") == 2, out
	})
	waitWorkload(t, e.fdir, name, "b")
	v, err := fedClient(t, e.fcfg).GetWorkload(context.Background(), name, true)
	if err != nil {
		t.Fatal(err)
	}
	placed := 0
	for _, ev := range v.GetEvents() {
		if ev.GetType() == "FederationPlaced" {
			placed++
		}
	}
	if placed != 1 {
		t.Fatalf("%s has %d federation decisions after the restart, want the one made before", name, placed)
	}
}
