package bench

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/persys-dev/compute/internal/testutil/need"
)

func TestStartEtcdClusterRefuses(t *testing.T) {
	dir := t.TempDir()
	for _, tc := range []struct {
		name    string
		o       EtcdClusterOptions
		wantErr string
	}{
		{"no members", EtcdClusterOptions{Dir: dir}, "etcd members 0"},
		{"even", EtcdClusterOptions{Members: 2, Dir: dir}, "etcd members 2"},
		{"too many", EtcdClusterOptions{Members: 9, Dir: dir}, "etcd members 9"},
		{"no dir", EtcdClusterOptions{Members: 3}, "data dir"},
		{"relative profile dir", EtcdClusterOptions{Members: 3, Dir: dir, CPUProfileDir: "prof"}, "profile dir"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := StartEtcdCluster(context.Background(), tc.o)
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("cluster %v, error %v: want one naming %q", c, err, tc.wantErr)
			}
		})
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 0 {
		t.Errorf("refused options left %d entries in the data dir", len(entries))
	}
	if err := (&ClusterOptions{Nodes: 1, Dir: dir, SchedulerProcess: true, Etcd: &EtcdCluster{}}).defaults(); err == nil {
		t.Error("an external etcd with a scheduler process was accepted")
	}
}

// TestThroughputOnEtcdCluster runs the throughput scenario with its
// scheduler on three etcd member processes over TLS (real fsync), reads
// the members' share of the measured phase, and checks that Close stops
// every member and removes the cluster's folder.
func TestThroughputOnEtcdCluster(t *testing.T) {
	if testing.Short() {
		need.Missing(t, "-short: this test starts three etcd member processes and a hollow cluster")
	}
	dir := t.TempDir()
	prof := t.TempDir()
	var progress bytes.Buffer
	pw := &syncWriter{w: &progress}
	etcd, err := StartEtcdCluster(context.Background(), EtcdClusterOptions{Members: 3, Dir: dir, CPUProfileDir: prof, Progress: pw})
	if err != nil {
		t.Fatal(err)
	}
	defer etcd.Close()
	if len(etcd.Endpoints) != 3 {
		t.Fatalf("endpoints %v, want 3", etcd.Endpoints)
	}
	meter := etcd.Meter(true)
	var end func()
	o := Options{
		Cluster:   ClusterOptions{Nodes: 4, Dir: dir, Etcd: etcd, HeartbeatInterval: 500 * time.Millisecond},
		Workloads: 40, Concurrency: 4, Timeout: time.Minute, Progress: pw,
		Profile: func() func() { end = meter.Begin(); return func() { end() } },
	}
	rep, err := Run(context.Background(), ScenarioThroughput, o)
	if err != nil {
		t.Fatalf("run: %v\n%s", err, progress.String())
	}
	if end == nil {
		t.Fatal("the measured phase never began")
	}
	var table bytes.Buffer
	if err := rep.WriteTable(&table); err != nil || !strings.Contains(table.String(), "placements/s") {
		t.Fatalf("table (%v):\n%s", err, table.String())
	}
	phase, err := meter.Result(context.Background())
	if err != nil || phase == nil {
		t.Fatalf("phase %v: %v", phase, err)
	}
	leaders := 0
	for i, st := range phase.Stats {
		if st.Leader {
			leaders++
		}
		if st.DBSize <= 0 {
			t.Errorf("member %s: database size %d", st.Name, st.DBSize)
		}
		// The workloads went through raft to every member, each fsynced.
		if m := phase.Members[i]; m.ProposalsPerSec <= 0 || m.FsyncsPerSec <= 0 {
			t.Errorf("member %s over the phase: %+v", m.Name, m)
		}
		if fi, err := os.Stat(filepath.Join(prof, st.Name+".cpu.pprof")); err != nil || fi.Size() == 0 {
			t.Errorf("member %s: CPU profile: %v", st.Name, err)
		}
	}
	if len(phase.Stats) != 3 || leaders != 1 {
		t.Errorf("stats %+v: want 3 members, one leader", phase.Stats)
	}
	if err := phase.WriteTable(&table); err != nil {
		t.Fatal(err)
	}
	t.Logf("\n%s", table.String())

	pids := make([]int, 0, 3)
	for _, m := range etcd.members {
		pids = append(pids, m.cmd.Process.Pid)
	}
	etcd.Close()
	for _, pid := range pids {
		// Reaped by Close: the pid is gone (or reused by an unrelated
		// process, which a signal 0 to our own child would not find).
		if err := syscall.Kill(pid, 0); err == nil {
			if data, _ := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "cmdline")); strings.Contains(string(data), EtcdMemberCommand) {
				t.Errorf("etcd member %d still runs after Close", pid)
			}
		}
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 0 {
		for _, e := range entries {
			t.Errorf("left in the data dir: %s", e.Name())
		}
	}
}
