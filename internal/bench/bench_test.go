package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/persys-dev/compute/internal/testutil/need"
)

// TestMain lets the scenarios re-execute this test binary as their
// scheduler process, gateway process or etcd members.
func TestMain(m *testing.M) {
	if len(os.Args) == 3 && os.Args[1] == SchedulerProcessCommand {
		if err := RunSchedulerProcess(os.Args[2], os.Stdin, os.Stdout); err != nil {
			fmt.Fprintln(os.Stderr, "bench scheduler process:", err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	if len(os.Args) == 3 && os.Args[1] == EtcdMemberCommand {
		if err := RunEtcdMember(os.Args[2], os.Stdin, os.Stdout); err != nil {
			fmt.Fprintln(os.Stderr, "bench etcd member:", err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	if len(os.Args) == 3 && os.Args[1] == GatewayProcessCommand {
		if err := RunGatewayProcess(os.Args[2], os.Stdin, os.Stdout); err != nil {
			fmt.Fprintln(os.Stderr, "bench gateway process:", err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	code := m.Run()
	removeBuiltPersys()
	os.Exit(code)
}

func TestChunk(t *testing.T) {
	ids := []string{"a", "b", "c", "d", "e"}
	tests := []struct {
		name string
		ids  []string
		n    int
		want [][]string
	}{
		{"empty", nil, 3, nil},
		{"zero chunks", ids, 0, nil},
		{"one", ids, 1, [][]string{ids}},
		{"uneven", ids, 2, [][]string{{"a", "b", "c"}, {"d", "e"}}},
		{"more chunks than ids", ids[:2], 8, [][]string{{"a"}, {"b"}}},
		{"exact", ids, 5, [][]string{{"a"}, {"b"}, {"c"}, {"d"}, {"e"}}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := chunk(tc.ids, tc.n)
			if !slices.EqualFunc(got, tc.want, slices.Equal[[]string]) {
				t.Fatalf("chunk(%v, %d) = %v, want %v", tc.ids, tc.n, got, tc.want)
			}
		})
	}
}

func TestDistOf(t *testing.T) {
	ms := func(v ...int) []time.Duration {
		out := make([]time.Duration, len(v))
		for i, x := range v {
			out[i] = time.Duration(x) * time.Millisecond
		}
		return out
	}
	hundred := make([]int, 100)
	for i := range hundred {
		hundred[i] = 100 - i // 100 … 1, unsorted on purpose
	}
	tests := []struct {
		name string
		in   []time.Duration
		want Dist
	}{
		{"empty", nil, Dist{}},
		{"one", ms(7), Dist{N: 1, Min: 7, P50: 7, P90: 7, P99: 7, Max: 7, Mean: 7}},
		{"hundred", ms(hundred...), Dist{N: 100, Min: 1, P50: 50, P90: 90, P99: 99, Max: 100, Mean: 50.5}},
		{"two", ms(10, 20), Dist{N: 2, Min: 10, P50: 10, P90: 20, P99: 20, Max: 20, Mean: 15}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := distOf(tc.in); got != tc.want {
				t.Fatalf("distOf = %+v, want %+v", got, tc.want)
			}
		})
	}
}

func TestOptionsValidation(t *testing.T) {
	tests := []struct {
		name    string
		o       Options
		wantErr string
	}{
		{"no workloads", Options{}, "workloads"},
		{"negative rate", Options{Workloads: 1, Rate: -1}, "rate"},
		{"loss fraction one", Options{Workloads: 1, LossFraction: 1}, "loss fraction"},
		{"negative duration", Options{Workloads: 1, Duration: -time.Second}, "duration"},
		{"negative stall-after", Options{Workloads: 1, StallAfter: -time.Second}, "stall-after"},
		{"negative idle sample", Options{Workloads: 1, IdleSample: -time.Second}, "idle-sample"},
		{"negative timeline period", Options{Workloads: 1, TimelineEvery: -time.Second}, "timeline"},
		{"ok", Options{Workloads: 1}, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.o.defaults(ScenarioLatency)
			switch {
			case tc.wantErr == "" && err != nil:
				t.Fatalf("unexpected error: %v", err)
			case tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)):
				t.Fatalf("error %v, want one naming %q", err, tc.wantErr)
			}
		})
	}
	clusterTests := []struct {
		name    string
		o       ClusterOptions
		wantErr string
	}{
		{"no nodes", ClusterOptions{Dir: "x"}, "nodes"},
		{"no dir", ClusterOptions{Nodes: 1}, "data dir"},
		{"short lease", ClusterOptions{Nodes: 1, Dir: "x", LeaseTTL: time.Second}, "lease TTL"},
		{"negative delay", ClusterOptions{Nodes: 1, Dir: "x", ApplyDelay: -1}, "apply delay"},
		{"negative ready delay", ClusterOptions{Nodes: 1, Dir: "x", ReadyDelay: -1}, "ready delay"},
		{"negative node CPU", ClusterOptions{Nodes: 1, Dir: "x", NodeCPUMillis: -1}, "node CPU"},
		{"negative node memory", ClusterOptions{Nodes: 1, Dir: "x", NodeMemoryBytes: -1}, "node memory"},
		{"negative etcd quota", ClusterOptions{Nodes: 1, Dir: "x", EtcdQuotaBytes: -1}, "etcd quota"},
		{"mTLS at 20000 nodes in a scheduler process", ClusterOptions{Nodes: 20000, Dir: "x", MTLS: true, SchedulerProcess: true}, ""},
		{"three mTLS connections per node", ClusterOptions{Nodes: 1, Dir: "x", MTLS: true, MTLSConns: 3}, "mTLS connections"},
		{"scheduler profile in one process", ClusterOptions{Nodes: 1, Dir: "x", SchedulerCPUProfile: "/tmp/x"}, "scheduler process"},
		{"bench gc target in one process", ClusterOptions{Nodes: 1, Dir: "x", BenchGCPercent: 400}, "bench gc percent"},
		{"bench gc target out of range", ClusterOptions{Nodes: 1, Dir: "x", SchedulerProcess: true, BenchGCPercent: 5}, "bench gc percent"},
		{"bench gc target", ClusterOptions{Nodes: 1, Dir: "x", SchedulerProcess: true, BenchGCPercent: 400}, ""},
		{"ok", ClusterOptions{Nodes: 1, Dir: "x"}, ""},
	}
	for _, tc := range clusterTests {
		t.Run("cluster "+tc.name, func(t *testing.T) {
			err := tc.o.defaults()
			switch {
			case tc.wantErr == "" && err != nil:
				t.Fatalf("unexpected error: %v", err)
			case tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)):
				t.Fatalf("error %v, want one naming %q", err, tc.wantErr)
			}
		})
	}
	if _, err := Run(context.Background(), "nope", Options{Workloads: 1}); err == nil || !strings.Contains(err.Error(), "nope") {
		t.Fatalf("unknown scenario: error %v", err)
	}
}

// TestCertificatesReused checks that a second run finds the first run's
// certificates and issues none.
func TestCertificatesReused(t *testing.T) {
	dir := t.TempDir()
	ids := []string{NodeID(0), NodeID(1), NodeID(2)}
	b, st, err := Certificates(context.Background(), dir, ids, 2)
	if err != nil {
		t.Fatal(err)
	}
	if st.Issued != 3 || st.Reused != 0 || len(b.Agents) != 3 {
		t.Fatalf("first run: %+v with %d agents, want 3 issued", st, len(b.Agents))
	}
	before, err := os.ReadFile(b.Agents[NodeID(1)].Cert)
	if err != nil {
		t.Fatal(err)
	}
	_, st, err = Certificates(context.Background(), dir, ids, 2)
	if err != nil {
		t.Fatal(err)
	}
	if st.Issued != 0 || st.Reused != 3 {
		t.Fatalf("second run: %+v, want 3 reused", st)
	}
	after, err := os.ReadFile(filepath.Join(dir, "agent-"+NodeID(1)+".crt"))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(before, after) {
		t.Fatal("second run replaced a valid certificate")
	}
}

// TestScenarios runs every scenario on a tiny hollow cluster: real etcd,
// scheduler, agents and mTLS, so that the wiring is exercised; the figures
// themselves are not checked.
func TestScenarios(t *testing.T) {
	if testing.Short() {
		need.Missing(t, "-short: this test starts etcd and a hollow cluster")
	}
	dir := t.TempDir()
	base := func() Options {
		return Options{
			Cluster: ClusterOptions{Nodes: 4, Dir: dir, HeartbeatInterval: 500 * time.Millisecond,
				LeaseTTL: 2 * time.Second, RescheduleGrace: 500 * time.Millisecond, EtcdNoFsync: true},
			Workloads: 16, Concurrency: 4, Timeout: time.Minute, ProgressEvery: 200 * time.Millisecond,
		}
	}
	tests := []struct {
		name, scenario string
		tweak          func(o *Options)
	}{
		{ScenarioThroughput, ScenarioThroughput, nil},
		{"throughput-mtls", ScenarioThroughput, func(o *Options) { o.Cluster.MTLS = true }},
		{ScenarioLatency, ScenarioLatency, func(o *Options) { o.Rate = 100 }},
		{ScenarioNodeLoss, ScenarioNodeLoss, func(o *Options) { o.LossFraction = 0.25 }},
		{"node-loss-mtls", ScenarioNodeLoss, func(o *Options) { o.LossFraction = 0.25; o.Cluster.MTLS = true }},
		{ScenarioChurn, ScenarioChurn, func(o *Options) { o.Duration = time.Second; o.Rate = 50 }},
		{"throughput-scheduler-process", ScenarioThroughput, func(o *Options) {
			o.Cluster.SchedulerProcess = true
			o.Cluster.SchedulerCPUProfile = filepath.Join(dir, "sched.cpu")
			o.Cluster.SchedulerHeapProfile = filepath.Join(dir, "sched.heap")
			// Enough work for the 100 Hz CPU profile to sample.
			o.Workloads, o.SubmitBatch = 1000, 100
		}},
		{"node-loss-scheduler-process", ScenarioNodeLoss, func(o *Options) { o.LossFraction = 0.25; o.Cluster.SchedulerProcess = true }},
		{"throughput-mtls-scheduler-process", ScenarioThroughput, func(o *Options) {
			o.Cluster.MTLS, o.Cluster.SchedulerProcess, o.Cluster.MTLSConns = true, true, 1
			o.Cluster.SchedulerCPUProfile = filepath.Join(dir, "sched-mtls.cpu")
			o.TimelineEvery = 50 * time.Millisecond
			o.Workloads, o.SubmitBatch = 1000, 100
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			o := base()
			if tc.tweak != nil {
				tc.tweak(&o)
			}
			var progress bytes.Buffer
			o.Progress = &syncWriter{w: &progress}
			profiled := 0
			o.Profile = func() func() { profiled++; return func() { profiled-- } }
			rep, err := Run(context.Background(), tc.scenario, o)
			if err != nil {
				t.Fatalf("run: %v\nprogress:\n%s", err, progress.String())
			}
			if profiled != 0 {
				t.Fatalf("profile started %d more times than stopped", profiled)
			}
			checkEndFigures(t, rep, &o)
			if o.Cluster.SchedulerProcess {
				checkSchedulerProcess(t, rep, &o)
			} else if rep.SchedulerProcess != nil {
				t.Fatalf("scheduler process figures %+v without a scheduler process", rep.SchedulerProcess)
			}
			var table bytes.Buffer
			if err := rep.WriteTable(&table); err != nil {
				t.Fatal(err)
			}
			if !strings.Contains(table.String(), "METRIC") || len(rep.Table) == 0 {
				t.Fatalf("table:\n%s", table.String())
			}
			data, err := json.Marshal(rep)
			if err != nil {
				t.Fatal(err)
			}
			var back map[string]any
			if err := json.Unmarshal(data, &back); err != nil || back["scenario"] != tc.scenario {
				t.Fatalf("json %s: %v", data, err)
			}
			switch r := rep.Result.(type) {
			case ThroughputResult:
				checkThroughput(t, rep, &o, r)
			case NodeLossResult:
				if r.Duplicates != 0 || r.MaxDuplicates != 0 || r.Recovered != r.Affected {
					t.Fatalf("node-loss: %+v", r)
				}
			case LatencyResult:
				if r.Failed != 0 || r.SubmitToRun.N != o.Workloads {
					t.Fatalf("latency: %+v", r)
				}
			case ChurnResult:
				if r.Errors != 0 {
					t.Fatalf("churn: %+v", r)
				}
			default:
				t.Fatalf("result of type %T", rep.Result)
			}
		})
	}
}

// checkEndFigures checks the processes' figures and etcd's database size
// at the end of a run, and the top functions of the scheduler's profile.
func checkEndFigures(t *testing.T, rep *Report, o *Options) {
	t.Helper()
	want := []string{"bench"}
	if o.Cluster.SchedulerProcess {
		want = append(want, "scheduler")
	}
	var got []string
	for _, p := range rep.Processes {
		got = append(got, p.Name)
		if p.PeakRSSMiB <= 0 || p.FDs <= 0 {
			t.Fatalf("process %s: %+v", p.Name, p.SchedProcStats)
		}
		// With mTLS each node holds its own connections in both processes.
		if o.Cluster.MTLS && p.FDs < o.Cluster.MTLSConns*o.Cluster.Nodes {
			t.Fatalf("process %s holds %d descriptors, fewer than %d per mTLS node of %d", p.Name, p.FDs, o.Cluster.MTLSConns, o.Cluster.Nodes)
		}
	}
	if !slices.Equal(got, want) {
		t.Fatalf("processes %v, want %v", got, want)
	}
	if e := rep.Etcd; e == nil || e.DBSize <= 0 || e.DBSizeInUse <= 0 || e.QuotaBytes != 2<<30 {
		t.Fatalf("etcd database: %+v", rep.Etcd)
	}
	if o.Cluster.SchedulerCPUProfile == "" {
		return
	}
	if len(rep.CPUTop) != 1 || rep.CPUTop[0].Process != "scheduler" || len(rep.CPUTop[0].Cum) == 0 {
		t.Fatalf("top of the scheduler's CPU profile: %+v", rep.CPUTop)
	}
}

// checkThroughput checks a throughput run that converged.
func checkThroughput(t *testing.T, rep *Report, o *Options, r ThroughputResult) {
	t.Helper()
	if r.NotRunning != 0 || r.Duplicates != 0 {
		t.Fatalf("throughput: %+v", r)
	}
	// The timeline ends with every workload placed and RUNNING.
	if n := len(rep.Timeline); n == 0 || rep.Timeline[n-1].Placed < o.Workloads || rep.Timeline[n-1].Running != o.Workloads {
		t.Fatalf("throughput timeline %+v, want it to end at %d RUNNING", rep.Timeline, o.Workloads)
	}
	var table bytes.Buffer
	// Nodes registered at the configured lease need no longer one.
	if r.LeaseMoves != 0 {
		t.Fatalf("%d lease moves in a run whose nodes all fit the configured lease", r.LeaseMoves)
	}
	if err := rep.WriteTable(&table); err != nil || !strings.Contains(table.String(), "PLACEMENTS/S") || !strings.Contains(table.String(), "node lease moves") {
		t.Fatalf("table without the timeline or the lease moves (%v):\n%s", err, table.String())
	}
	// Equal nodes, equal workloads, spread: concurrent workers
	// see each other's choices, so none piles onto one node.
	if r.PerNodeMin != r.PerNodeMax {
		t.Fatalf("throughput: %d to %d workloads per node, want an even spread", r.PerNodeMin, r.PerNodeMax)
	}
	// The bench times every agent call itself where it can.
	if exact := !o.Cluster.SchedulerProcess; exact != (r.AgentApplies.N == o.Workloads) {
		t.Fatalf("throughput: %d exact agent call samples of %d workloads (exact expected: %v)", r.AgentApplies.N, o.Workloads, exact)
	}
	// No goal is set for 4 nodes and 16 workloads.
	for _, row := range rep.Table {
		if (row.Metric == "placements/s" || row.Metric == "all RUNNING after") && row.Goal != "" {
			t.Fatalf("throughput: goal %q beside a run of 4 nodes", row.Goal)
		}
	}
}

// checkSchedulerProcess checks that the scheduler ran in a child process
// that reported its own figures and profiles, and that it is gone.
func checkSchedulerProcess(t *testing.T, rep *Report, o *Options) {
	t.Helper()
	sp := rep.SchedulerProcess
	if sp == nil || sp.PID == os.Getpid() || sp.PID <= 0 || sp.PeakRSSMiB <= 0 {
		t.Fatalf("scheduler process figures: %+v", sp)
	}
	if !rep.Params.SchedulerProcess {
		t.Fatal("report params do not show the scheduler process")
	}
	if err := syscall.Kill(sp.PID, 0); !errors.Is(err, syscall.ESRCH) {
		t.Fatalf("scheduler process %d still there after the run (signal 0: %v)", sp.PID, err)
	}
	for _, p := range []string{o.Cluster.SchedulerCPUProfile, o.Cluster.SchedulerHeapProfile} {
		if p == "" {
			continue
		}
		if fi, err := os.Stat(p); err != nil || fi.Size() == 0 {
			t.Fatalf("profile %s of the scheduler process: %v", p, err)
		}
	}
}

func TestSchedProcConfigValidate(t *testing.T) {
	ok := schedProcConfig{EtcdEndpoints: []string{"https://127.0.0.1:2379"},
		EtcdCA: "/pki/ca.crt", EtcdCert: "/pki/scheduler.crt", EtcdKey: "/pki/scheduler.key"}
	if err := ok.validate(); err != nil {
		t.Fatalf("valid config: %v", err)
	}
	tests := []struct {
		name    string
		tweak   func(c *schedProcConfig)
		wantErr string
	}{
		{"no etcd", func(c *schedProcConfig) { c.EtcdEndpoints = nil }, "etcd_endpoints"},
		{"gc target out of range", func(c *schedProcConfig) { c.GCPercent = 5 }, "gc_percent"},
		{"negative memory limit", func(c *schedProcConfig) { c.MemoryLimit = -1 }, "memory_limit"},
		{"etcd off loopback", func(c *schedProcConfig) { c.EtcdEndpoints = []string{"https://10.0.0.1:2379"} }, "etcd_endpoints"},
		{"etcd plaintext", func(c *schedProcConfig) { c.EtcdEndpoints = []string{"http://127.0.0.1:2379"} }, "etcd_endpoints"},
		{"etcd without client key", func(c *schedProcConfig) { c.EtcdKey = "" }, "etcd_key"},
		{"negative workers", func(c *schedProcConfig) { c.Workers = -1 }, "workers"},
		{"relative profile", func(c *schedProcConfig) { c.CPUProfile = "cpu.prof" }, "cpu_profile"},
		{"client identity without key", func(c *schedProcConfig) { c.ClientCA, c.ClientCert = "/pki/ca.crt", "/pki/scheduler.crt" }, "client_key"},
		{"relative client certificate", func(c *schedProcConfig) {
			c.ClientCA, c.ClientCert, c.ClientKey = "/pki/ca.crt", "scheduler.crt", "/pki/scheduler.key"
		}, "client_cert"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := ok
			tc.tweak(&c)
			if err := c.validate(); err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("error %v, want one naming %q", err, tc.wantErr)
			}
		})
	}
	if err := runSchedulerProcess(`{"etcd_endpoints":["http://127.0.0.1:1"],"surprise":1}`, strings.NewReader(""), io.Discard); err == nil || !strings.Contains(err.Error(), "surprise") {
		t.Fatalf("unknown field: error %v", err)
	}
}

// syncWriter serializes writes from the progress goroutines.
type syncWriter struct {
	mu sync.Mutex
	w  *bytes.Buffer
}

func (s *syncWriter) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.w.Write(p)
}

func TestServicesOptions(t *testing.T) {
	tests := []struct {
		name    string
		o       Options
		wantErr string
	}{
		{"no services", Options{Replicas: 1}, "services"},
		{"too many services", Options{Services: maxBenchServices + 1, Replicas: 1}, "services"},
		{"no replicas", Options{Services: 1}, "replicas"},
		{"too many replicas", Options{Services: 1, Replicas: maxBenchReplicas + 1}, "replicas"},
		{"ok", Options{Services: 3, Replicas: 4}, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.o.defaults(ScenarioServices)
			switch {
			case tc.wantErr == "" && (err != nil || tc.o.Workloads != 12):
				t.Fatalf("error %v, workloads %d; want none and 12", err, tc.o.Workloads)
			case tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)):
				t.Fatalf("error %v, want one naming %q", err, tc.wantErr)
			}
		})
	}
}

// TestServicesScenario runs the services scenario small: every service
// must turn available, roll to the new revision and leave no old replica.
func TestServicesScenario(t *testing.T) {
	if testing.Short() {
		need.Missing(t, "-short: this test starts etcd and a hollow cluster")
	}
	for _, apart := range []bool{false, true} {
		t.Run(fmt.Sprintf("scheduler-process=%v", apart), func(t *testing.T) {
			o := Options{
				Cluster: ClusterOptions{Nodes: 20, Dir: t.TempDir(), HeartbeatInterval: 500 * time.Millisecond,
					ReadyDelay: 200 * time.Millisecond, EtcdNoFsync: true, SchedulerProcess: apart},
				Services: 20, Replicas: 3, Concurrency: 8, Timeout: 2 * time.Minute, ProgressEvery: time.Second,
			}
			var progress bytes.Buffer
			o.Progress = &syncWriter{w: &progress}
			rep, err := Run(context.Background(), ScenarioServices, o)
			if err != nil {
				t.Fatalf("run: %v\nprogress:\n%s", err, progress.String())
			}
			var table bytes.Buffer
			if err := rep.WriteTable(&table); err != nil {
				t.Fatal(err)
			}
			t.Log("\n" + table.String())
			r, ok := rep.Result.(ServicesResult)
			if !ok {
				t.Fatalf("result of type %T", rep.Result)
			}
			if r.Replaced != 60 || r.WorkloadsAtEnd != 60 || r.AvailableSec <= 0 || r.UpdatedSec <= 0 || r.UpdateCPUSec <= 0 {
				t.Fatalf("services: %+v", r)
			}
			if apart && (r.SchedulerPeakRSSMiB <= 0 || rep.SchedulerProcess == nil) {
				t.Fatalf("no scheduler process figures: %+v", r)
			}
			// Seen apart from the controller's own progress: every
			// workload runs the new template and is ready.
			if r.OldAtEnd != 0 || r.NotReadyAtEnd != 0 {
				t.Fatalf("at the end: %d replicas of the old template, %d not ready", r.OldAtEnd, r.NotReadyAtEnd)
			}
		})
	}
}
