package e2e

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/persys-dev/compute/internal/testutil/need"
	"github.com/persys-dev/compute/monitoring"
)

// TestMonitoringOnLiveCluster checks monitoring/ against the real daemons:
// every metric the alert rules and the dashboard name is exported by a
// live component, `promtool check metrics` accepts each component's
// /metrics, and a real Prometheus (Debian's package) scraping the cluster
// sees every component up, counts the placement of an applied workload
// and fires PersysNodeLost once the agent is stopped.
func TestMonitoringOnLiveCluster(t *testing.T) {
	promBin, err := exec.LookPath("prometheus")
	if err != nil {
		need.Missing(t, "prometheus not installed (scripts/install-deps.sh installs it)")
	}
	promtool, err := exec.LookPath("promtool")
	if err != nil {
		need.Missing(t, "promtool not installed (scripts/install-deps.sh installs prometheus)")
	}
	c := newCluster(t)
	prom := startPrometheus(t, c, promBin)

	// A workload that runs and one that fails, so that the series that
	// appear only after a placement or a failed attempt exist.
	good := "mon-" + c.nodeID
	c.mustCtl("apply", "-f", c.writeFile(t, "mon.yaml", c.smallManifest(good, "", "", "10m", "8Mi")), "--wait", "--timeout", "2m")
	bad := "mon-bad-" + c.nodeID
	c.mustCtl("apply", "-f", c.writeFile(t, "mon-bad.yaml", fmt.Sprintf(
		"kind: Workload\nmetadata: {name: %s}\nspec:\n  type: container\n  container: {image: 'persys-does-not-exist:v0'}\n  resources: {cpu: 10m, memory: 8Mi}\n", bad)))
	c.waitFor("a failed apply attempt counted", 2*time.Minute, func() bool {
		body, err := httpGet("http://" + c.metrics["scheduler"] + "/metrics")
		return err == nil && strings.Contains(body, "persys_scheduler_retry_attempts_total{")
	})

	t.Run("every component up", func(t *testing.T) {
		prom.waitQuery(t, c, `count(up{job=~"persys-.*"} == 1)`, func(v float64) bool { return v == 3 })
	})
	t.Run("placements counted", func(t *testing.T) {
		prom.waitQuery(t, c, `sum(persys_scheduler_placements_total)`, func(v float64) bool { return v >= 2 })
	})
	// Label values the rules select on exist as series, not only the names.
	t.Run("rule selectors match series", func(t *testing.T) {
		for _, q := range []string{`persys_scheduler_workloads{state="FAILED"}`, `persys_scheduler_nodes{state="NOT_READY"}`,
			`persys_scheduler_leader == 1`, `persys_certificate_expiry_timestamp_seconds{cert="identity"}`} {
			prom.waitQuery(t, c, "count("+q+")", func(v float64) bool { return v >= 1 })
		}
	})

	exported := map[string]bool{"up": true}
	t.Run("promtool check metrics", func(t *testing.T) {
		for _, comp := range []string{"scheduler", "gateway", "agent"} {
			body, err := httpGet("http://" + c.metrics[comp] + "/metrics")
			if err != nil {
				t.Fatalf("%s /metrics: %v", comp, err)
			}
			for _, n := range metricNames(body) {
				exported[n] = true
			}
			cmd := exec.Command(promtool, "check", "metrics")
			cmd.Stdin = strings.NewReader(body)
			if out, err := cmd.CombinedOutput(); err != nil || len(bytes.TrimSpace(out)) > 0 {
				t.Errorf("promtool check metrics on the %s's /metrics: %v\n%s", comp, err, out)
			}
		}
	})
	t.Run("rules and dashboard name exported metrics", func(t *testing.T) {
		for _, file := range []string{"alerts.yml", "grafana/persys.json"} {
			used := usedMetrics(t, file)
			if len(used) == 0 {
				t.Fatalf("%s names no persys metric", file)
			}
			for _, n := range used {
				if !exported[n] {
					t.Errorf("%s uses %s, which no component exports", file, n)
				}
			}
		}
	})

	// The agent goes away: the scheduler turns its node NotReady after the
	// lease (4 s here) and the rule fires at its next evaluation.
	c.procs["agent"].stop(t)
	t.Run("node lost fires", func(t *testing.T) {
		prom.waitQuery(t, c, `count(ALERTS{alertname="PersysNodeLost", alertstate="firing"})`, func(v float64) bool { return v == 1 })
	})
	// The other alerts stay quiet on this healthy-but-one-node cluster.
	for _, quiet := range []string{"PersysNoLeader", "PersysCertificateExpiringSoon", "PersysEtcdNearQuota"} {
		if v, ok := prom.query(t, `count(ALERTS{alertname="`+quiet+`"})`); ok && v > 0 {
			t.Errorf("%s is active on a healthy cluster", quiet)
		}
	}
}

// metricNames lists the sample names of a text exposition (histograms
// bring their _bucket, _sum and _count).
func metricNames(body string) []string {
	var names []string
	for _, line := range strings.Split(body, "\n") {
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		if i := strings.IndexAny(line, "{ "); i > 0 {
			names = append(names, line[:i])
		}
	}
	return names
}

var persysMetric = regexp.MustCompile(`\bpersys_[a-z0-9_]+\b`)

// usedMetrics lists the persys_ metric names a monitoring file's
// expressions name.
func usedMetrics(t *testing.T, file string) []string {
	t.Helper()
	data, err := monitoring.Files.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	var exprs []string
	if strings.HasSuffix(file, ".json") {
		var d struct {
			Panels []struct {
				Targets []struct{ Expr string } `json:"targets"`
			} `json:"panels"`
		}
		if err := json.Unmarshal(data, &d); err != nil {
			t.Fatal(err)
		}
		for _, p := range d.Panels {
			for _, tg := range p.Targets {
				exprs = append(exprs, tg.Expr)
			}
		}
	} else {
		// Only expressions: descriptions mention metrics in prose.
		in := false
		for _, line := range strings.Split(string(data), "\n") {
			trimmed := strings.TrimSpace(line)
			switch {
			case strings.HasPrefix(trimmed, "expr:"):
				in = true
				exprs = append(exprs, strings.TrimPrefix(trimmed, "expr:"))
			case in && (strings.HasPrefix(trimmed, "for:") || strings.HasPrefix(trimmed, "labels:")):
				in = false
			case in:
				exprs = append(exprs, trimmed)
			}
		}
	}
	seen := map[string]bool{}
	var out []string
	for _, e := range exprs {
		for _, n := range persysMetric.FindAllString(e, -1) {
			if !seen[n] {
				seen[n] = true
				out = append(out, n)
			}
		}
	}
	sort.Strings(out)
	return out
}

// promServer is a Prometheus the test started.
type promServer struct {
	addr string
	log  *bytes.Buffer
	mu   sync.Mutex
	done chan struct{}
}

// startPrometheus runs Prometheus on loopback with its own data dir,
// scraping the cluster's three metrics listeners every second and
// evaluating monitoring/alerts.yml every second.
func startPrometheus(t *testing.T, c *cluster, bin string) *promServer {
	t.Helper()
	dir := filepath.Join(c.dir, "prometheus")
	if err := os.MkdirAll(filepath.Join(dir, "data"), 0o755); err != nil {
		t.Fatal(err)
	}
	rules, err := monitoring.Files.ReadFile("alerts.yml")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "alerts.yml"), rules, 0o644); err != nil {
		t.Fatal(err)
	}
	cfg := "global: {scrape_interval: 1s, evaluation_interval: 1s, scrape_timeout: 1s}\nrule_files: [alerts.yml]\nscrape_configs:\n"
	for _, comp := range []string{"scheduler", "gateway", "agent"} {
		cfg += fmt.Sprintf("  - job_name: persys-%s\n    static_configs: [{targets: ['%s']}]\n", comp, c.metrics[comp])
	}
	if err := os.WriteFile(filepath.Join(dir, "prometheus.yml"), []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	p := &promServer{addr: fmt.Sprintf("127.0.0.1:%d", freePort(t)), log: &bytes.Buffer{}, done: make(chan struct{})}
	cmd := exec.Command(bin, "--config.file="+filepath.Join(dir, "prometheus.yml"),
		"--storage.tsdb.path="+filepath.Join(dir, "data"), "--web.listen-address="+p.addr)
	cmd.Stdout = lockedWriter{&p.mu, p.log}
	cmd.Stderr = lockedWriter{&p.mu, p.log}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { _ = cmd.Wait(); close(p.done) }()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-p.done
		if t.Failed() {
			p.mu.Lock()
			t.Logf("---- prometheus log ----\n%s", tail(p.log.String(), 40))
			p.mu.Unlock()
		}
	})
	c.waitFor("prometheus ready", time.Minute, func() bool {
		select {
		case <-p.done:
			t.Fatalf("prometheus exited:\n%s", p.log.String())
		default:
		}
		_, err := httpGet("http://" + p.addr + "/-/ready")
		return err == nil
	})
	return p
}

// query runs an instant query and returns the first sample's value; ok is
// false when the result is empty.
func (p *promServer) query(t *testing.T, q string) (float64, bool) {
	t.Helper()
	body, err := httpGet("http://" + p.addr + "/api/v1/query?query=" + url.QueryEscape(q))
	if err != nil {
		t.Fatalf("query %s: %v\n%s", q, err, body)
	}
	var r struct {
		Status string
		Data   struct {
			Result []struct {
				Value [2]any
			}
		}
	}
	if err := json.Unmarshal([]byte(body), &r); err != nil || r.Status != "success" {
		t.Fatalf("query %s: %v\n%s", q, err, body)
	}
	if len(r.Data.Result) == 0 {
		return 0, false
	}
	s, _ := r.Data.Result[0].Value[1].(string)
	v, err := strconv.ParseFloat(s, 64)
	if err != nil {
		t.Fatalf("query %s: value %q", q, s)
	}
	return v, true
}

// waitQuery waits until the query has a value that ok accepts.
func (p *promServer) waitQuery(t *testing.T, c *cluster, q string, ok func(float64) bool) {
	t.Helper()
	last := "no result"
	deadline := time.Now().Add(90 * time.Second)
	for {
		if v, found := p.query(t, q); found {
			if ok(v) {
				return
			}
			last = strconv.FormatFloat(v, 'g', -1, 64)
		}
		if time.Now().After(deadline) {
			t.Fatalf("prometheus: %s is %s after 90 s", q, last)
		}
		select {
		case <-p.done:
			t.Fatal("prometheus exited")
		case <-time.After(250 * time.Millisecond):
		}
	}
}
