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
	"github.com/persys-dev/compute/internal/testutil/devproc"
	"github.com/persys-dev/compute/internal/testutil/freeport"
	"github.com/persys-dev/compute/internal/testutil/images"
)

// TestMembers joins three real dev clusters to a federation, refuses bad
// joins with the field at fault and nothing stored, shows the members
// reachable through persysctl, refuses a placement naming an unknown
// cluster with nothing stored, places by label selector, offloads, spreads
// a federated service 2/2/2 (scaled to 3/3/3 and back with persysctl
// scale), and, with b's process killed, marks b
// unreachable then lost, moves its workload to c and its service share to
// a and c; once b is back its stale copies go: no duplicates on the
// engine.
func TestMembers(t *testing.T) {
	docker, _ := images.HelloImage(t) // built before the clusters start
	b := devproc.Build(t)
	a, bm, c := startMember(t, b, "a", docker), startMember(t, b, "b", docker), startMember(t, b, "c", docker)
	a.WaitReady(t)
	bm.WaitReady(t)
	c.WaitReady(t)

	fdir, metrics := t.TempDir(), freeport.Addr(t, "127.0.0.1")
	e := &env{t: t, b: b, a: a, bm: bm, c: c, fdir: fdir, fcfg: filepath.Join(fdir, "persysctl.yaml"), ids: map[*member]string{}}
	e.fedArgs = []string{"federation", "--data-dir", fdir, "--listen", freeport.Addr(t, "127.0.0.1"),
		"--metrics-listen", metrics, "--probe-interval", "1s", "--grace", "6s", "--probe-timeout", "2s"}
	e.fed = devproc.Start(t, "persys federation", b.Persys, e.fedArgs...)
	devproc.WaitFor(t, e.fed, "the federation API", 60*time.Second, func() (bool, string) {
		out, err := e.ctl("get", "clusters")
		return err == nil && strings.Contains(out, "No clusters."), out
	})

	// The identity each member issues to the federation, through the
	// member's own gateway (its CA signs a request made here).
	for _, m := range []*member{a, bm, c} {
		e.ids[m] = filepath.Join(m.Dir, "fedid")
		must(t, b.Persysctl, "--config", m.Config(), "user", "issue", "federation", "--role", "operator", "--out", e.ids[m])
	}
	e.badJoins()
	for _, j := range []struct {
		name, region string
		m            *member
	}{{"a", "eu", a}, {"b", "eu", bm}, {"c", "us", c}} {
		if out, err := e.join(j.name, j.m, "--label", "region="+j.region); err != nil || !strings.Contains(out, "cluster "+j.name+" joined: Ready") {
			t.Fatalf("join %s: %v\n%s", j.name, err, out)
		}
	}
	if out, err := e.join("a", a); err == nil || !strings.Contains(out, "name:") || !strings.Contains(out, "already a member") {
		t.Fatalf("second join of a: %v\n%s", err, out)
	}
	list := e.checkReady(metrics)
	e.nodes()
	e.badPlacements()
	e.selector()
	offload(t, b, fdir, e.ctl, list)
	svc := e.applyService()
	e.scaleService(svc)
	w3 := e.applyOnB()
	e.crashFederation(w3)
	e.killB()
	e.failover(w3, svc)
}

// env is one federation in front of members a, b and c.
type env struct {
	t        *testing.T
	b        devproc.Bins
	a, bm, c *member
	fed      *devproc.Proc
	fdir     string
	fcfg     string
	ids      map[*member]string
	fedArgs  []string
	// killedAt is when b was killed.
	killedAt time.Time
}

func (e *env) ctl(args ...string) (string, error) {
	return devproc.Run(e.b.Persysctl, append([]string{"--config", e.fcfg}, args...)...)
}

func (e *env) join(name string, m *member, extra ...string) (string, error) {
	args := []string{"federation", "join", name, "--config", e.fcfg, "--gateway", "https://" + m.Gateway,
		"--ca", filepath.Join(e.ids[m], "federation-ca.crt"),
		"--cert", filepath.Join(e.ids[m], "federation.crt"), "--key", filepath.Join(e.ids[m], "federation.key")}
	return devproc.Run(e.b.Persys, append(args, extra...)...)
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
		{"plain http gateway", []string{"--gateway", "http://" + a.Gateway}, "a", []string{"gateway:", "https://"}},
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
	if len(list) != 3 {
		t.Fatalf("clusters %+v, want a, b and c", list)
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
	devproc.WaitFor(t, e.fed, "three ready members in /metrics", 30*time.Second, func() (bool, string) {
		body := metricsBody(t, metrics, "/metrics")
		return strings.Contains(body, `persys_federation_members{state="Ready"} 3`), ""
	})
	return list
}

// killB: b unreachable, then lost after the grace, with an event each;
// a stays ready.
func (e *env) killB() {
	t := e.t
	e.bm.Kill()
	e.killedAt = time.Now()
	devproc.WaitFor(t, e.fed, "b lost", 60*time.Second, func() (bool, string) {
		for _, c := range clusters(t, e.ctl) {
			if c.Name != "b" && c.Health.State != fedapi.StateReady {
				t.Fatalf("%s is %s while b is down: %+v", c.Name, c.Health.State, c.Health)
			}
			if c.Name == "b" {
				return c.Health.State == fedapi.StateLost && !c.Health.Reachable && c.Health.LastError != "", string(c.Health.State)
			}
		}
		return false, "no member b"
	})
	var types []string
	for _, ev := range events(t, e.fcfg, "b") {
		if strings.HasPrefix(ev.Type, "Cluster") { // the member's health, not its relayed events
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
func offload(t *testing.T, b devproc.Bins, fdir string, ctl func(...string) (string, error), members []fedapi.Cluster) {
	t.Helper()
	_, image := images.HelloImage(t)
	cpu := members[0].Health.CPUCapacityMillis * 6 / 10
	dir := t.TempDir()
	// Names of this process only: other tests may share the engine.
	w1, w2 := fmt.Sprintf("fed1-%d", os.Getpid()), fmt.Sprintf("fed2-%d", os.Getpid())
	var applied time.Time
	for _, name := range []string{w1, w2} {
		file := filepath.Join(dir, name+".yaml")
		body := fmt.Sprintf("apiVersion: persys/v1\nkind: Workload\nmetadata:\n  name: %s\nspec:\n  type: container\n  desiredState: running\n"+
			"  container:\n    image: %s\n  resources:\n    cpu: %dm\n    memory: 16Mi\nplacement:\n  clusters: [a, b]\n  offload: true\n", name, image, cpu)
		if err := os.WriteFile(file, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
		applied = time.Now()
		if out, err := ctl("apply", "-f", file); err != nil || !strings.Contains(out, "workload/"+name+" created") {
			t.Fatalf("apply %s through the federation: %v\n%s", name, err, out)
		}
		if name == w1 {
			waitWorkload(t, fdir, w1, "a")
		}
	}
	waitWorkload(t, fdir, w2, "b")
	t.Logf("%s offloaded: running on b %s after its apply", w2, time.Since(applied).Round(100*time.Millisecond))
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
	devproc.WaitFor(t, nil, "no containers of the two workloads", 60*time.Second, func() (bool, string) {
		n1, n2 := containers(t, w1), containers(t, w2)
		return n1+n2 == 0, fmt.Sprintf("%d and %d", n1, n2)
	})
}

// waitWorkload waits until the federation shows name running on cluster.
func waitWorkload(t *testing.T, fcfg, name, cluster string) {
	t.Helper()
	c := fedClient(t, filepath.Join(fcfg, "persysctl.yaml"))
	devproc.WaitFor(t, nil, name+" running on "+cluster, 90*time.Second, func() (bool, string) {
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
		"  container:\n    image: %s\n  resources:\n    cpu: 100m\n    memory: 16Mi\nplacement:\n  clusters: [b, c]\n  failover:\n    grace: 4s\n", name, image)
	if err := os.WriteFile(file, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	if out, err := e.ctl("apply", "-f", file); err != nil {
		t.Fatalf("apply %s: %v\n%s", name, err, out)
	}
	waitWorkload(t, e.fdir, name, "b")
	return name
}

// failover: with b lost, the workload runs on c and b's share of the
// service on a and c (3 each); once b is back, the copy b's agent kept
// running is deleted and the service is 2/2/2 again: one container of
// the workload and six of the service on the engine. b then leaves.
func (e *env) failover(name, svc string) {
	t := e.t
	devproc.WaitFor(t, e.fed, "b's share of "+svc+" running on a and c", 90*time.Second, func() (bool, string) {
		got := e.serviceContainers(svc)
		return got["a"] == 3 && got["c"] == 3, fmt.Sprint(got)
	})
	t.Logf("service %s: b's share running on a and c (3 each) %s after b was killed (failover grace 4s, probes every 1s)", svc, time.Since(e.killedAt).Round(100*time.Millisecond))
	waitWorkload(t, e.fdir, name, "c")
	t.Logf("%s running on c %s after b was killed (failover grace 4s, probes every 1s)", name, time.Since(e.killedAt).Round(100*time.Millisecond))
	// b's agent died with its process; its containers still run.
	if n := containers(t, name); n != 2 {
		t.Fatalf("%d containers of %s while b is down, want 2 (c's and the one b left)", n, name)
	}
	out, err := e.ctl("describe", "workload", name)
	if err != nil || !strings.Contains(out, "failover from b") {
		t.Fatalf("describe %s does not say it failed over: %v\n%s", name, err, out)
	}
	out, err = e.ctl("describe", "service", svc)
	if err != nil || !strings.Contains(out, "FederationSpread") || !strings.Contains(out, "past the failover grace") || !strings.Contains(out, "shares a=3,c=3") {
		t.Fatalf("describe service %s does not say where its replicas went and why: %v\n%s", svc, err, out)
	}
	e.bm.Restart(t)
	e.bm.WaitReady(t)
	devproc.WaitFor(t, e.fed, "one container of "+name+" once b is back", 90*time.Second, func() (bool, string) {
		n := containers(t, name)
		return n == 1, fmt.Sprintf("%d containers", n)
	})
	waitWorkload(t, e.fdir, name, "c")
	devproc.WaitFor(t, e.fed, svc+" back to 2/2/2 once b is back", 90*time.Second, func() (bool, string) {
		got := e.serviceContainers(svc)
		return got["a"] == 2 && got["b"] == 2 && got["c"] == 2 && got["all"] == 6, fmt.Sprint(got)
	})
	if out, err := e.ctl("delete", "workload", name); err != nil {
		t.Fatalf("delete %s: %v\n%s", name, err, out)
	}
	if out, err := e.ctl("delete", "service", svc); err != nil {
		t.Fatalf("delete service %s: %v\n%s", svc, err, out)
	}
	devproc.WaitFor(t, nil, "no container of "+name+" or "+svc, 60*time.Second, func() (bool, string) {
		n, got := containers(t, name), e.serviceContainers(svc)
		return n == 0 && got["all"] == 0, fmt.Sprintf("%d containers, service %v", n, got)
	})
	if out, err := devproc.Run(e.b.Persys, "federation", "leave", "b", "--config", e.fcfg); err != nil {
		t.Fatalf("leave b: %v\n%s", err, out)
	}
	if list := clusters(t, e.ctl); len(list) != 2 || list[0].Name != "a" || list[1].Name != "c" {
		t.Fatalf("after leave: %+v", list)
	}
}

// crashFederation kills the federation and starts it again on its data
// dir: members and the workload's decision are read back from its etcd,
// and the workload is not placed again.
func (e *env) crashFederation(name string) {
	t := e.t
	e.fed.Kill()
	e.fed = devproc.Start(t, "persys federation (restarted)", e.b.Persys, e.fedArgs...)
	devproc.WaitFor(t, e.fed, "the three members ready after the restart", 60*time.Second, func() (bool, string) {
		out, err := e.ctl("get", "clusters")
		return err == nil && strings.Count(out, " Ready ") == 3, out
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

// nodes: get nodes through the federation lists each member's node with
// its cluster.
func (e *env) nodes() {
	t := e.t
	out, err := e.ctl("get", "nodes")
	if err != nil {
		t.Fatalf("get nodes through the federation: %v\n%s", err, out)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 4 || !strings.HasPrefix(lines[0], "CLUSTER") {
		t.Fatalf("get nodes through the federation, want a header and three nodes:\n%s", out)
	}
	for i, name := range []string{"a", "b", "c"} {
		if !strings.HasPrefix(lines[i+1], name+" ") || !strings.Contains(lines[i+1], fmt.Sprintf("fed-%s-%d", name, os.Getpid())) {
			t.Fatalf("node row %d is not %s's node:\n%s", i+1, name, out)
		}
	}
}

// badPlacements: a workload and a service naming a cluster that is no
// member, each refused with the field named; nothing stored.
func (e *env) badPlacements() {
	t := e.t
	_, image := images.HelloImage(t)
	dir := t.TempDir()
	docs := map[string]string{
		"workload": fmt.Sprintf("apiVersion: persys/v1\nkind: Workload\nmetadata:\n  name: bad-%d\nspec:\n  type: container\n  container:\n    image: %s\nplacement:\n  clusters: [a, nowhere]\n", os.Getpid(), image),
		"service":  fmt.Sprintf("apiVersion: persys/v1\nkind: Service\nmetadata:\n  name: bad-%d\nspec:\n  replicas: 2\n  template:\n    type: container\n    container:\n      image: %s\nplacement:\n  clusters: [nowhere]\n", os.Getpid(), image),
	}
	wants := map[string]string{"workload": "placement.clusters[1]", "service": "placement.clusters[0]"}
	for kind, body := range docs {
		file := filepath.Join(dir, kind+".yaml")
		if err := os.WriteFile(file, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
		out, err := e.ctl("apply", "-f", file)
		if err == nil || !strings.Contains(out, wants[kind]) || !strings.Contains(out, "not a member cluster") {
			t.Fatalf("apply of a %s placed on an unknown cluster: %v\n%s", kind, err, out)
		}
	}
	for _, kind := range []string{"workloads", "services"} {
		out, err := e.ctl("get", kind, "-o", "name")
		if err != nil || strings.TrimSpace(out) != "" {
			t.Fatalf("get %s after the refused applies: %v\n%q, want nothing", kind, err, out)
		}
	}
}

// selector: c is labelled tier=gold after its join; a workload placed by
// clusterSelector region=us, tier=gold runs on c, the one member
// labelled so.
func (e *env) selector() {
	t := e.t
	if out, err := devproc.Run(e.b.Persys, "federation", "label", "c", "tier=gold", "--config", e.fcfg); err != nil || !strings.Contains(out, "region=us,tier=gold") {
		t.Fatalf("label c: %v\n%s", err, out)
	}
	_, image := images.HelloImage(t)
	name := fmt.Sprintf("fedsel-%d", os.Getpid())
	file := filepath.Join(t.TempDir(), "sel.yaml")
	body := fmt.Sprintf("apiVersion: persys/v1\nkind: Workload\nmetadata:\n  name: %s\nspec:\n  type: container\n  desiredState: running\n"+
		"  container:\n    image: %s\n  resources:\n    cpu: 100m\n    memory: 16Mi\nplacement:\n  clusterSelector:\n    region: us\n    tier: gold\n", name, image)
	if err := os.WriteFile(file, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	if out, err := e.ctl("apply", "-f", file); err != nil {
		t.Fatalf("apply %s: %v\n%s", name, err, out)
	}
	waitWorkload(t, e.fdir, name, "c")
	if out, err := e.ctl("delete", "workload", name); err != nil {
		t.Fatalf("delete %s: %v\n%s", name, err, out)
	}
}

// applyService applies, through the federation, a service of 6
// replicas spread over a, b and c with a failover grace, and waits for
// 2 running containers of it on each member's node.
func (e *env) applyService() string {
	t := e.t
	_, image := images.HelloImage(t)
	name := fmt.Sprintf("fedsvc-%d", os.Getpid())
	file := filepath.Join(t.TempDir(), "svc.yaml")
	body := fmt.Sprintf("apiVersion: persys/v1\nkind: Service\nmetadata:\n  name: %s\nspec:\n  replicas: 6\n  template:\n    type: container\n    desiredState: running\n"+
		"    container:\n      image: %s\n      labels:\n        fedtest: %s\n    resources:\n      cpu: 50m\n      memory: 16Mi\n"+
		"placement:\n  clusters: [a, b, c]\n  strategy: spread\n  failover:\n    grace: 4s\n", name, image, name)
	if err := os.WriteFile(file, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	if out, err := e.ctl("apply", "-f", file); err != nil || !strings.Contains(out, "service/"+name+" created") {
		t.Fatalf("apply service %s through the federation: %v\n%s", name, err, out)
	}
	devproc.WaitFor(t, e.fed, name+" spread 2/2/2", 90*time.Second, func() (bool, string) {
		got := e.serviceContainers(name)
		return got["a"] == 2 && got["b"] == 2 && got["c"] == 2 && got["all"] == 6, fmt.Sprint(got)
	})
	out, err := e.ctl("get", "services")
	if err != nil || !rowHas(out, name, " 6 ") {
		t.Fatalf("get services through the federation: %v\n%s", err, out)
	}
	// The members' events come through the federation with their cluster.
	devproc.WaitFor(t, e.fed, "member events relayed with the cluster named", 30*time.Second, func() (bool, string) {
		out, err := e.ctl("events")
		return err == nil && strings.Contains(out, fmt.Sprintf("c/fed-c-%d", os.Getpid())), devproc.Tail(out, 5)
	})
	return name
}

// scaleService scales the federated service to 9 with persysctl (3 on
// each member, counted on the engine), pauses and resumes its update,
// and scales it back to 6 (2 each).
func (e *env) scaleService(name string) {
	t := e.t
	for _, step := range []struct {
		replicas string
		each     int
	}{{"9", 3}, {"6", 2}} {
		if out, err := e.ctl("scale", "service", name, "--replicas", step.replicas); err != nil || !strings.Contains(out, "scaled to "+step.replicas) {
			t.Fatalf("scale service %s --replicas %s through the federation: %v\n%s", name, step.replicas, err, out)
		}
		devproc.WaitFor(t, e.fed, fmt.Sprintf("%s at %d on each member", name, step.each), 90*time.Second, func() (bool, string) {
			got := e.serviceContainers(name)
			return got["a"] == step.each && got["b"] == step.each && got["c"] == step.each && got["all"] == 3*step.each, fmt.Sprint(got)
		})
		if step.replicas == "9" {
			for _, verb := range []string{"pause", "resume"} {
				if out, err := e.ctl("rollout", verb, name); err != nil || !strings.Contains(out, "service/"+name) {
					t.Fatalf("rollout %s %s through the federation: %v\n%s", verb, name, err, out)
				}
			}
		}
	}
	if out, err := e.ctl("rollout", "status", name); err != nil || !strings.Contains(out, "service/"+name) {
		t.Fatalf("rollout status %s through the federation: %v\n%s", name, err, out)
	}
}

// serviceContainers counts the running containers of a service per
// member ("all": on the whole engine).
func (e *env) serviceContainers(name string) map[string]int {
	t := e.t
	cli := images.DockerOrSkip(t)
	defer cli.Close()
	res, err := cli.ContainerList(context.Background(), dockerclient.ContainerListOptions{
		Filters: make(dockerclient.Filters).Add("label", "fedtest="+name)})
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]int{"all": len(res.Items)}
	for _, c := range res.Items {
		for _, m := range []string{"a", "b", "c"} {
			if c.Labels["persys.node"] == fmt.Sprintf("fed-%s-%d", m, os.Getpid()) {
				got[m]++
			}
		}
	}
	return got
}
