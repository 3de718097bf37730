package bench

import (
	"bytes"
	"context"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/persys-dev/compute/internal/testutil/need"
)

// TestAccount feeds the exactly-once ledger what two watchers read and
// checks its verdict: the accounting must catch a repeat, a loss, a
// reordering, a change on the wrong workload and watchers that disagree.
func TestAccount(t *testing.T) {
	names := []string{"a", "b", "c"}
	type item struct {
		watcher int
		name    string
		marker  string
		rev     int64
		idx     int32
	}
	// good is what both watchers see when all goes well: changes 0-2
	// (markers 10-12 with k0 10), an unrelated write and a later write to
	// a changed workload in between.
	good := func(w int) []item {
		return []item{
			{w, "b", "10", 5, 0}, {w, "zz", "", 6, 0}, {w, "c", "11", 7, 0}, {w, "b", "10", 7, 1}, {w, "a", "12", 9, 0},
		}
	}
	tests := []struct {
		name    string
		items   []item
		wantOK  int
		wantErr string
	}{
		{"all seen once, in order", append(good(0), good(1)...), 2, ""},
		{"repeated item", append(good(0), append(good(1), item{1, "a", "12", 9, 0})...), 0, "repeated or out of order"},
		{"lost change", append(good(0), item{1, "b", "10", 5, 0}, item{1, "a", "12", 9, 0}), 0, "before change 1"},
		{"older position", append(good(0), item{1, "b", "10", 5, 0}, item{1, "c", "11", 7, 0}, item{1, "zz", "", 6, 0}), 0, "repeated or out of order"},
		{"wrong workload", append(good(0), item{1, "a", "10", 5, 0}), 0, `want "b"`},
		{"marker beyond the changes", append(good(0), item{1, "b", "13", 5, 0}), 0, "made only 3"},
		{"watcher short of changes", append(good(0), good(1)[:3]...), 1, "watcher 1 saw 2 of 3"},
		{"other positions", append(good(0), item{1, "b", "10", 5, 0}, item{1, "c", "11", 8, 0}, item{1, "a", "12", 9, 0}), 1, "other positions"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			a := newAccount(2, 3, 10, names)
			now := time.Unix(100, 0)
			for j := range 3 {
				a.submitted[j].Store(now.UnixNano())
			}
			for i, it := range tc.items {
				a.observe(a.watchers[it.watcher], it.name, it.marker, watchPos{it.rev, it.idx}, now.Add(time.Duration(i)*time.Millisecond))
			}
			ok, err := a.check()
			switch {
			case tc.wantErr == "" && err != nil:
				t.Fatalf("check: %v", err)
			case tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)):
				t.Fatalf("check: error %v, want one containing %q", err, tc.wantErr)
			case ok != tc.wantOK:
				t.Fatalf("check: %d watchers passed, want %d", ok, tc.wantOK)
			}
			if tc.wantErr != "" {
				return
			}
			changes, other := a.deliveries()
			if changes != 6 || other != 4 {
				t.Fatalf("deliveries: %d changes, %d other, want 6 and 4", changes, other)
			}
			if len(a.complete) != 3 {
				t.Fatalf("%d changes complete, want 3", len(a.complete))
			}
			all, last := a.latencies()
			if len(all) != 6 || len(last) != 3 || last[2] != 9*time.Millisecond {
				t.Fatalf("latencies: %v, last %v", all, last)
			}
		})
	}
}

func TestGatewayProcConfigValidate(t *testing.T) {
	ok := gwProcConfig{Scheduler: "127.0.0.1:9443", CA: "/pki/ca.crt", Cert: "/pki/gateway.crt", Key: "/pki/gateway.key"}
	if err := ok.validate(); err != nil {
		t.Fatalf("valid config: %v", err)
	}
	tests := []struct {
		name    string
		tweak   func(c *gwProcConfig)
		wantErr string
	}{
		{"scheduler off loopback", func(c *gwProcConfig) { c.Scheduler = "10.0.0.1:9443" }, "scheduler"},
		{"scheduler by name", func(c *gwProcConfig) { c.Scheduler = "localhost:9443" }, "scheduler"},
		{"relative key", func(c *gwProcConfig) { c.Key = "gateway.key" }, "key"},
		{"no CA", func(c *gwProcConfig) { c.CA = "" }, "ca"},
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
	if err := RunGatewayProcess(`{"scheduler":"127.0.0.1:1","surprise":1}`, strings.NewReader(""), io.Discard); err == nil || !strings.Contains(err.Error(), "surprise") {
		t.Fatalf("unknown field: error %v", err)
	}
}

func TestWatchersOptions(t *testing.T) {
	tests := []struct {
		name    string
		o       Options
		wantErr string
	}{
		{"no watchers", Options{Workloads: 1, Changes: 1}, "watchers"},
		{"too many watchers", Options{Workloads: 1, Changes: 1, Watchers: maxBenchWatchers + 1}, "watchers"},
		{"no changes", Options{Workloads: 1, Watchers: 1}, "changes"},
		{"negative conns", Options{Workloads: 1, Watchers: 1, Changes: 1, WatchConns: -1}, "conns"},
		{"unknown transport", Options{Workloads: 1, Watchers: 1, Changes: 1, WatchTransport: "smoke"}, "transport"},
		{"ok", Options{Workloads: 1, Watchers: 1, Changes: 1}, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.o.defaults(ScenarioWatchers)
			switch {
			case tc.wantErr == "" && (err != nil || tc.o.WatchTransport != WatchBoth || !tc.o.Cluster.ClientTLS):
				t.Fatalf("error %v, transport %q, client TLS %v; want none, both, true", err, tc.o.WatchTransport, tc.o.Cluster.ClientTLS)
			case tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)):
				t.Fatalf("error %v, want one naming %q", err, tc.wantErr)
			}
		})
	}
}

// TestWatchersScenario runs the watchers scenario small over both
// transports, with the scheduler and the gateway in processes of their
// own, and over gRPC with the scheduler in this process and watchers
// that list first and share three connections: every watcher must see every change once, and each
// process must report its own figures.
func TestWatchersScenario(t *testing.T) {
	if testing.Short() {
		need.Missing(t, "-short: this test starts etcd, a hollow cluster, a scheduler and a gateway process")
	}
	const watchers, changes = 20, 15
	tests := []struct {
		name      string
		apart     bool
		transport string
		list      bool
		conns     int
		want      []string
	}{
		{"both, scheduler process", true, WatchBoth, false, 0, []string{WatchGRPC, WatchGateway}},
		{"grpc in one process, listing first, 3 connections", false, WatchGRPC, true, 3, []string{WatchGRPC}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			o := Options{
				Cluster: ClusterOptions{Nodes: 4, Dir: t.TempDir(), HeartbeatInterval: 500 * time.Millisecond,
					EtcdNoFsync: true, SchedulerProcess: tc.apart},
				Workloads: 200, SubmitBatch: 50, Concurrency: 4, Watchers: watchers, Changes: changes,
				WatchTransport: tc.transport, WatchList: tc.list, WatchConns: tc.conns, Timeout: 2 * time.Minute, ProgressEvery: time.Second,
			}
			var progress bytes.Buffer
			o.Progress = &syncWriter{w: &progress}
			rep, err := Run(context.Background(), ScenarioWatchers, o)
			if err != nil {
				t.Fatalf("run: %v\nprogress:\n%s", err, progress.String())
			}
			var table bytes.Buffer
			if err := rep.WriteTable(&table); err != nil {
				t.Fatal(err)
			}
			t.Log("\n" + table.String())
			r, ok := rep.Result.(WatchersResult)
			if !ok {
				t.Fatalf("result of type %T", rep.Result)
			}
			if len(r.Phases) != len(tc.want) {
				t.Fatalf("%d phases, want %v", len(r.Phases), tc.want)
			}
			for i, ph := range r.Phases {
				if ph.Transport != tc.want[i] {
					t.Fatalf("phase %d: %s, want %s", i, ph.Transport, tc.want[i])
				}
				checkWatchPhase(t, ph, tc.apart, tc.list, watchers, changes)
			}
		})
	}
}

// checkWatchPhase checks one phase's accounting and figures.
func checkWatchPhase(t *testing.T, ph WatchPhase, apart, list bool, watchers, changes int) {
	t.Helper()
	if ph.ExactlyOnce != watchers || ph.Deliveries != int64(watchers*changes) || ph.Delivery.N != watchers*changes || ph.Fanout.N != changes {
		t.Fatalf("%s: %d watchers exactly once, %d deliveries (%d latencies, %d per change), want %d, %d",
			ph.Transport, ph.ExactlyOnce, ph.Deliveries, ph.Delivery.N, ph.Fanout.N, watchers, watchers*changes)
	}
	if (ph.Since > 0) == list {
		t.Fatalf("%s: since revision %d with list %v", ph.Transport, ph.Since, list)
	}
	sched := ph.Scheduler
	if (sched.Process == "scheduler process") != apart || sched.Opened.Goroutines <= sched.Before.Goroutines || sched.After.HeapAllocBytes <= 0 {
		t.Fatalf("%s: scheduler figures %+v", ph.Transport, sched)
	}
	if gw := ph.Gateway; (ph.Transport == WatchGateway) != (gw != nil) || gw != nil && gw.Opened.Goroutines <= gw.Before.Goroutines {
		t.Fatalf("%s: gateway figures %+v", ph.Transport, gw)
	}
}
